//! Loading one config file alone, by kind: what `lithos_check --check-container` and tests
//! over documentation snippets use.

use std::collections::BTreeMap;
use std::path::Path;

use super::container::ContainerConfig;
use super::container_check::{parse_container_text, parse_secret_file};
use super::master::absolute;
use super::problems::{FileContext, Problems, Scope};
use super::process::{parse_processes, ProcessEntry};
use super::read::{parse_text, read_text};
use super::sandbox::SandboxConfig;

/// The kinds of lithos config files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `master.yaml`.
    Master,
    /// `sandboxes/NAME.yaml`.
    Sandbox,
    /// `processes/NAME.yaml`.
    Processes,
    /// A container config inside an image.
    Container,
    /// A file named by `secret-environ-file`.
    SecretEnviron,
}

/// Problems whose message starts with this text report a missing required key.
pub const MISSING_KEY: &str = "missing key";

fn read(path: &Path, scope: &Scope) -> Result<String, Problems> {
    read_text(path).map_err(|message| {
        Problems::from(
            FileContext {
                path,
                text: "",
                scope: scope.clone(),
            }
            .file_problem(message),
        )
    })
}

/// Loads and checks one file of the given kind; returns every problem found.
pub fn check_file(path: &Path, kind: FileKind) -> Problems {
    let path = absolute(path);
    let result = match kind {
        FileKind::Master => super::master::load_master(&path).map(|_| ()),
        FileKind::Sandbox => check_sandbox_file(&path).map(|_| ()),
        FileKind::Processes => check_processes_file(&path).map(|_| ()),
        FileKind::Container => check_container_file(&path).map(|_| ()),
        FileKind::SecretEnviron => check_secret_environ_file(&path).map(|_| ()),
    };
    result.err().unwrap_or_default()
}

/// Loads and checks config text of the given kind as if read from `path`.
pub fn check_text(path: &Path, text: &str, kind: FileKind) -> Problems {
    let result = match kind {
        FileKind::Master => super::master::parse_master(path, text).map(|_| ()),
        FileKind::Sandbox => sandbox_from_text(path, text).map(|_| ()),
        FileKind::Processes => processes_from_text(path, text).map(|_| ()),
        FileKind::Container => container_from_text(path, text).map(|_| ()),
        FileKind::SecretEnviron => parse_secret_file(&FileContext {
            path,
            text,
            scope: Scope::Master,
        })
        .map(|_| ()),
    };
    result.err().unwrap_or_default()
}

fn stem_scope(path: &Path) -> (String, Scope) {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_string();
    (name.clone(), Scope::Sandbox(name))
}

/// Loads a sandbox config alone.
pub fn check_sandbox_file(path: &Path) -> Result<SandboxConfig, Problems> {
    let text = read(path, &stem_scope(path).1)?;
    sandbox_from_text(path, &text)
}

fn sandbox_from_text(path: &Path, text: &str) -> Result<SandboxConfig, Problems> {
    let context = FileContext {
        path,
        text,
        scope: stem_scope(path).1,
    };
    let sandbox: SandboxConfig = parse_text(&context, text).map_err(Problems::from)?;
    let problems = sandbox.check(&context, true);
    if problems.is_empty() {
        Ok(sandbox)
    } else {
        Err(problems)
    }
}

/// Loads a processes file alone: every entry is parsed and checked for its own keys.
pub fn check_processes_file(path: &Path) -> Result<BTreeMap<String, ProcessEntry>, Problems> {
    let text = read(path, &stem_scope(path).1)?;
    processes_from_text(path, &text)
}

fn processes_from_text(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<String, ProcessEntry>, Problems> {
    let (name, scope) = stem_scope(path);
    let context = FileContext { path, text, scope };
    let parsed = parse_processes(&context, &name).map_err(Problems::from)?;
    let mut problems = Problems::default();
    let mut entries = BTreeMap::new();
    for (entry_name, entry) in parsed {
        match entry {
            Ok(entry) => {
                let entry_context = FileContext {
                    scope: Scope::Entry(name.clone(), entry_name.clone()),
                    ..context.clone()
                };
                problems.extend(check_entry_keys(&entry_context, &entry_name, &entry));
                entries.insert(entry_name, entry);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// Checks the keys of one entry that need nothing else: the required `image` and `config`,
/// an absolute config path, and the names in `extra-secrets-namespaces`.
pub(crate) fn check_entry_keys(
    context: &FileContext,
    name: &str,
    entry: &ProcessEntry,
) -> Problems {
    let mut problems = Problems::default();
    if entry.image.is_empty() {
        problems.push(context.problem(
            name,
            format!("{MISSING_KEY} \"image\": write image: NAME (a directory in image-dir)"),
        ));
    }
    if entry.config.as_os_str().is_empty() {
        problems.push(context.problem(
            name,
            format!("{MISSING_KEY} \"config\": write config: /config/NAME.yaml"),
        ));
    } else if !entry.config.is_absolute() {
        problems.push(context.problem(
            &format!("{name}.config"),
            format!(
                "{:?} is relative: config is an absolute path inside the image",
                entry.config.display().to_string()
            ),
        ));
    }
    for namespace in &entry.extra_secrets_namespaces {
        if !super::sandbox::valid_namespace(namespace) {
            problems.push(context.problem(
                &format!("{name}.extra-secrets-namespaces"),
                format!("{namespace:?} is not a namespace: use only letters, digits, _ . and -"),
            ));
        }
    }
    problems
}

/// Loads a container config alone, as `lithos_check --check-container` does: every use of
/// a variable must be declared or built in, but no values are needed.
pub fn check_container_file(path: &Path) -> Result<ContainerConfig, Problems> {
    let text = read(path, &Scope::Master)?;
    container_from_text(path, &text)
}

fn container_from_text(path: &Path, text: &str) -> Result<ContainerConfig, Problems> {
    parse_container_text(
        &FileContext {
            path,
            text,
            scope: Scope::Master,
        },
        true,
    )
}

/// Loads a secret-environ-file alone.
pub fn check_secret_environ_file(path: &Path) -> Result<BTreeMap<String, Vec<String>>, Problems> {
    let scope = Scope::Master;
    let text = read(path, &scope)?;
    parse_secret_file(&FileContext {
        path,
        text: &text,
        scope,
    })
}
