//! Loading a whole config tree: master, sandboxes, processes files and container configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::container::ContainerConfig;
use super::container_check::check_container;
use super::entry_check::{check_entry, check_ports, duplicate_addresses};
use super::files::check_entry_keys;
use super::fingerprint::fingerprint;
use super::image::{check_image_name, resolve_in_root};
use super::instantiate::{instantiate, EntryInput};
use super::master::{absolute, load_master, MasterConfig};
use super::problems::{FileContext, Problems, Scope};
use super::process::{parse_processes, ProcessEntry};
use super::read::{parse_text, read_text};
use super::sandbox::SandboxConfig;
use super::secrets_check::read_secrets;
use super::spec::{DesiredInstance, EntryKind, LaunchSpec};

/// Options of [`load_tree`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Read this processes file for this sandbox instead of its configured one.
    pub alternate: Option<(String, PathBuf)>,
}

/// A loaded config tree.
#[derive(Clone, Debug)]
pub struct ConfigTree {
    /// Absolute path of the master config.
    pub master_path: PathBuf,
    /// The master config, paths absolute and defaults applied.
    pub master: MasterConfig,
    /// Every sandbox by name.
    pub sandboxes: BTreeMap<String, SandboxLoad>,
    /// Every problem of the tree, in file order.
    pub problems: Problems,
}

/// Result of loading one sandbox.
#[derive(Clone, Debug)]
pub enum SandboxLoad {
    /// The sandbox and its processes file loaded; entries may still have failed.
    Loaded {
        /// Entries by name.
        entries: BTreeMap<String, EntryLoad>,
    },
    /// The sandbox file or its processes file is invalid or unreadable.
    Failed,
}

/// Result of loading one process entry.
#[derive(Clone, Debug)]
pub enum EntryLoad {
    /// A daemon and its instances (none when `instances: 0`).
    Daemon {
        /// The desired instances.
        instances: Vec<DesiredInstance>,
    },
    /// A command, instantiated with the name `SANDBOX/cmd.NAME.0`.
    Command {
        /// Its spec.
        spec: Arc<LaunchSpec>,
    },
    /// The entry or its container config is invalid.
    Failed,
}

impl ConfigTree {
    /// Iterates over every desired daemon instance of the tree.
    pub fn desired_instances(&self) -> impl Iterator<Item = &DesiredInstance> {
        self.sandboxes.values().flat_map(|sandbox| match sandbox {
            SandboxLoad::Loaded { entries } => entries
                .values()
                .flat_map(|entry| match entry {
                    EntryLoad::Daemon { instances } => instances.iter(),
                    _ => [].iter(),
                })
                .collect::<Vec<_>>(),
            SandboxLoad::Failed => Vec::new(),
        })
    }
}

/// Loads the tree of `master_path`. It fails only when the master config cannot be
/// loaded; every other problem is listed in the returned tree.
pub fn load_tree(master_path: &Path, options: &LoadOptions) -> Result<ConfigTree, Problems> {
    let master_path = absolute(master_path);
    let master = load_master(&master_path)?;
    let mut problems = Problems::default();
    let mut sandboxes = BTreeMap::new();
    for (name, path) in sandbox_files(&master, &master_path, &mut problems) {
        let load = load_sandbox(&master, &name, &path, options, &mut problems);
        sandboxes.insert(name, load);
    }
    sort_in_file_order(&mut problems);
    Ok(ConfigTree {
        master_path,
        master,
        sandboxes,
        problems,
    })
}

/// Orders problems by file (in the order files were first reported) and by line within a
/// file, because checks run by concept rather than by position.
fn sort_in_file_order(problems: &mut Problems) {
    let mut first_seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for (index, problem) in problems.0.iter().enumerate() {
        first_seen.entry(problem.file.clone()).or_insert(index);
    }
    problems.0.sort_by_key(|problem| {
        (
            first_seen[&problem.file],
            problem.line.unwrap_or(0),
            problem.column.unwrap_or(0),
        )
    });
}

/// Lists `sandboxes-dir/*.yaml` sorted by name.
fn sandbox_files(
    master: &MasterConfig,
    master_path: &Path,
    problems: &mut Problems,
) -> Vec<(String, PathBuf)> {
    let dir = match std::fs::read_dir(&master.sandboxes_dir) {
        Ok(dir) => dir,
        Err(error) => {
            let context = FileContext {
                path: master_path,
                text: "",
                scope: Scope::Master,
            };
            problems.push(context.problem(
                "sandboxes-dir",
                format!("cannot read {}: {error}", master.sandboxes_dir.display()),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<(String, PathBuf)> = dir
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_string();
            (!name.starts_with('.')).then_some((name, path))
        })
        .collect();
    files.sort();
    files
}

fn load_sandbox(
    master: &MasterConfig,
    name: &str,
    path: &Path,
    options: &LoadOptions,
    problems: &mut Problems,
) -> SandboxLoad {
    let scope = Scope::Sandbox(name.to_string());
    let Some((sandbox, sandbox_valid)) = read_sandbox(name, path, problems) else {
        return SandboxLoad::Failed;
    };
    let processes_path = match &options.alternate {
        Some((sandbox_name, alternate)) if sandbox_name == name => absolute(alternate),
        _ => match &sandbox.config_file {
            Some(file) => path.parent().unwrap_or(Path::new("/")).join(file),
            None => master.processes_dir.join(format!("{name}.yaml")),
        },
    };
    let Some(processes_text) = read_or_report(&processes_path, &scope, problems) else {
        return SandboxLoad::Failed;
    };
    let processes = FileContext {
        path: &processes_path,
        text: &processes_text,
        scope,
    };
    let parsed = match parse_processes(&processes, name) {
        Ok(parsed) => parsed,
        Err(problem) => {
            problems.push(problem);
            return SandboxLoad::Failed;
        }
    };
    let duplicates = duplicate_addresses(&parsed, &processes);
    let mut entries = BTreeMap::new();
    for (entry_name, entry) in parsed {
        if duplicates
            .iter()
            .any(|problem| problem.scope == Scope::Entry(name.to_string(), entry_name.clone()))
        {
            entries.insert(entry_name, EntryLoad::Failed);
            continue;
        }
        let load = match entry {
            Ok(entry) => load_entry(
                master,
                name,
                &sandbox,
                &entry_name,
                &entry,
                &processes,
                problems,
            ),
            Err(problem) => {
                problems.push(problem);
                EntryLoad::Failed
            }
        };
        entries.insert(entry_name, load);
    }
    problems.extend(Problems(duplicates));
    if sandbox_valid {
        SandboxLoad::Loaded { entries }
    } else {
        SandboxLoad::Failed
    }
}

/// Reads and checks a sandbox file; returns the sandbox with `image-dir` resolved and
/// whether it is valid. A sandbox with problems is still returned when it names an
/// image-dir, so its entries are checked too and one run reports everything.
fn read_sandbox(name: &str, path: &Path, problems: &mut Problems) -> Option<(SandboxConfig, bool)> {
    let scope = Scope::Sandbox(name.to_string());
    let text = read_or_report(path, &scope, problems)?;
    let context = FileContext {
        path,
        text: &text,
        scope,
    };
    if name.contains(':') || name.contains(char::is_whitespace) {
        problems.push(context.file_problem(format!(
            "{name:?} is not a sandbox name: rename the file without ':' or spaces"
        )));
        return None;
    }
    let mut sandbox: SandboxConfig = match parse_text(&context, &text) {
        Ok(sandbox) => sandbox,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let own = sandbox.check(&context, true);
    let valid = own.is_empty();
    problems.extend(own);
    let base = path.parent().unwrap_or(Path::new("/"));
    let image_dir = sandbox.image_dir.take()?;
    sandbox.image_dir = Some(base.join(image_dir));
    Some((sandbox, valid))
}

pub(crate) fn read_or_report(
    path: &Path,
    scope: &Scope,
    problems: &mut Problems,
) -> Option<String> {
    match read_text(path) {
        Ok(text) => Some(text),
        Err(message) => {
            problems.push(
                FileContext {
                    path,
                    text: "",
                    scope: scope.clone(),
                }
                .file_problem(message),
            );
            None
        }
    }
}

fn load_entry(
    master: &MasterConfig,
    sandbox_name: &str,
    sandbox: &SandboxConfig,
    entry_name: &str,
    entry: &ProcessEntry,
    processes: &FileContext,
    problems: &mut Problems,
) -> EntryLoad {
    let scope = Scope::Entry(sandbox_name.to_string(), entry_name.to_string());
    let processes = FileContext {
        scope: scope.clone(),
        ..processes.clone()
    };
    let Some((image_root, config_path, text)) =
        read_entry_config(sandbox, entry_name, entry, &processes, problems)
    else {
        return EntryLoad::Failed;
    };
    let config = FileContext {
        path: &config_path,
        text: &text,
        scope: scope.clone(),
    };
    let container: ContainerConfig = match parse_text(&config, &text) {
        Ok(container) => container,
        Err(problem) => {
            problems.push(problem);
            return EntryLoad::Failed;
        }
    };
    // Semantic problems of the container do not stop the cross-file checks, so one run
    // reports everything wrong with the entry.
    let mut entry_problems = check_container(&container, &config, true);
    let secrets = match read_secrets(&container, &image_root, entry, &scope) {
        Ok(secrets) => secrets,
        Err(more) => {
            entry_problems.extend(more);
            BTreeMap::new()
        }
    };
    let input = EntryInput {
        master,
        sandbox_name,
        sandbox,
        entry_name,
        entry,
        container: &container,
        secrets,
        image_root,
        processes: &processes,
        config: &config,
    };
    entry_problems.extend(check_entry(&input));
    if entry_problems.is_empty() {
        match instantiate(&input, 0) {
            Ok(spec) => check_ports(&input, &spec, &mut entry_problems),
            Err(more) => entry_problems.extend(more),
        }
    }
    if !entry_problems.is_empty() {
        problems.extend(entry_problems);
        return EntryLoad::Failed;
    }
    build_entry(&input, problems)
}

/// Checks the entry's own keys and reads its container config from the image; returns the
/// image root, the config's host path and its text.
fn read_entry_config(
    sandbox: &SandboxConfig,
    entry_name: &str,
    entry: &ProcessEntry,
    processes: &FileContext,
    problems: &mut Problems,
) -> Option<(PathBuf, PathBuf, String)> {
    let mut own = check_entry_keys(processes, entry_name, entry);
    if entry_name.is_empty()
        || entry_name.contains(['/', ':'])
        || entry_name.contains(char::is_whitespace)
    {
        // '/' and ':' separate the parts of instance names and cgroup leaves.
        own.push(processes.problem(
            entry_name,
            format!("{entry_name:?} is not a process name: use no '/', ':' or spaces"),
        ));
    }
    if !entry.image.is_empty() {
        if let Err(message) = check_image_name(&entry.image, sandbox.image_dir_levels) {
            own.push(processes.problem(&format!("{entry_name}.image"), message));
        }
    }
    if !own.is_empty() {
        problems.extend(own);
        return None;
    }
    let image_root = sandbox
        .image_dir
        .clone()
        .unwrap_or_default()
        .join(&entry.image);
    if let Err(message) = check_image_inside(sandbox, &image_root) {
        problems.push(processes.problem(&format!("{entry_name}.image"), message));
        return None;
    }
    let config_path = match resolve_in_root(&image_root, &entry.config) {
        Ok(path) => path,
        Err(message) => {
            problems.push(processes.problem(&format!("{entry_name}.config"), message));
            return None;
        }
    };
    let text = read_or_report(&config_path, &processes.scope, problems)?;
    Some((image_root, config_path, text))
}

/// Rejects an image whose directory is a symlink leading out of image-dir. A missing
/// image is left to the read of its config, which reports it.
fn check_image_inside(sandbox: &SandboxConfig, image_root: &Path) -> Result<(), String> {
    let Some(image_dir) = &sandbox.image_dir else {
        return Ok(());
    };
    let (Ok(dir), Ok(root)) = (image_dir.canonicalize(), image_root.canonicalize()) else {
        return Ok(());
    };
    if root.starts_with(&dir) {
        Ok(())
    } else {
        Err(format!(
            "{} resolves to {}, outside image-dir {}: images must be directories inside image-dir",
            image_root.display(),
            root.display(),
            dir.display()
        ))
    }
}

fn build_entry(input: &EntryInput, problems: &mut Problems) -> EntryLoad {
    let count = match input.entry.kind {
        EntryKind::Daemon => input.entry.instances,
        EntryKind::Command => 1,
    };
    let mut specs = Vec::new();
    for index in 0..count {
        match instantiate(input, index) {
            Ok(spec) => specs.push(spec),
            Err(more) => {
                problems.extend(more);
                return EntryLoad::Failed;
            }
        }
    }
    if input.entry.kind == EntryKind::Command {
        return match specs.pop() {
            Some(spec) => EntryLoad::Command {
                spec: Arc::new(spec),
            },
            None => EntryLoad::Failed,
        };
    }
    let instances = specs
        .into_iter()
        .enumerate()
        .map(|(index, spec)| DesiredInstance {
            name: super::spec::InstanceName::new(
                input.sandbox_name,
                input.entry_name,
                index as u32,
            ),
            fingerprint: fingerprint(&spec),
            restart_timeout: spec.container.restart_timeout,
            kill_timeout: spec.container.kill_timeout,
            spec: Arc::new(spec),
        })
        .collect();
    EntryLoad::Daemon { instances }
}
