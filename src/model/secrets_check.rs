//! Checks of encrypted secrets: format, namespace and, when the key is readable, that each
//! variable decrypts as the knot will decrypt it.

use std::collections::BTreeMap;

use crate::secrets::{decrypt_environ_with_keys, load_private_keys, short_hash, EncryptedValue};

use super::instantiate::EntryInput;
use std::path::Path;

use super::container::ContainerConfig;
use super::container_check::parse_secret_file;
use super::image::resolve_in_root;
use super::problems::{FileContext, Problem, Problems, Scope};
use super::process::ProcessEntry;
use super::tree::read_or_report;

/// Formats an error with its chain of causes, because the secrets errors put the reason
/// (a missing file, a wrong owner) in the source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks that every value is a well-formed `v2:` encrypted value; messages never quote a
/// value, since a plain-text secret may have been pasted there.
pub(crate) fn check_secret_values(
    secrets: &BTreeMap<String, Vec<String>>,
    context: &FileContext,
    prefix: &str,
    problems: &mut Problems,
) {
    for (name, values) in secrets {
        let key = format!("{prefix}{name}");
        if values.is_empty() {
            problems
                .push(context.problem(&key, "an empty list: write at least one encrypted value"));
        }
        for (index, value) in values.iter().enumerate() {
            if let Err(error) = value.trim().parse::<EncryptedValue>() {
                problems.push(context.problem(
                    &key,
                    format!(
                        "value {} is not an encrypted value ({}): encrypt it with lithos_crypt encrypt",
                        index + 1,
                        error_chain(&error)
                    ),
                ));
            }
        }
    }
}

/// Checks the secrets of an entry against the sandbox: each variable needs a value
/// encrypted for an allowed namespace, and with a readable key it must decrypt.
pub(crate) fn check_entry_secrets(
    input: &EntryInput,
    namespaces: &[String],
    problems: &mut Problems,
) {
    if input.secrets.is_empty() {
        return;
    }
    let key = if input.container.secret_environ_file.is_some() {
        "secret-environ-file"
    } else {
        "secret-environ"
    };
    let Some(key_file) = &input.sandbox.secrets_private_key else {
        problems.push(input.config.problem(
            key,
            "secrets need a key: set secrets-private-key in the sandbox config",
        ));
        return;
    };
    let allowed: Vec<_> = namespaces
        .iter()
        .map(|n| short_hash(n.as_bytes()))
        .collect();
    let mut well_formed = true;
    for (name, values) in &input.secrets {
        let parsed: Vec<EncryptedValue> = values
            .iter()
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        well_formed &= parsed.len() == values.len();
        if !parsed.is_empty() && !parsed.iter().any(|v| allowed.contains(&v.namespace_hash)) {
            problems.push(input.config.problem(
                &format!("{key}.{name}"),
                format!(
                    "no value of {name} is encrypted for an allowed namespace ({}): encrypt it with lithos_crypt encrypt -n NAMESPACE, or allow its namespace in secrets-namespaces or extra-secrets-namespaces",
                    namespaces.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if !well_formed || !problems.is_empty() {
        return;
    }
    match load_private_keys(key_file) {
        Err(error) => problems.push(input.config.problem(
            key,
            format!(
                "cannot load the sandbox's secrets-private-key: {}",
                error_chain(&error)
            ),
        )),
        Ok(keys) => {
            if let Err(error) = decrypt_environ_with_keys(&input.secrets, &keys, namespaces) {
                problems.push(
                    input
                        .config
                        .problem(key, format!("cannot decrypt: {}", error_chain(&error))),
                );
            }
        }
    }
}

/// Returns the secrets of a container: inline, or read from secret-environ-file inside the
/// image (absolute paths from the image root, relative ones from the config's directory).
pub(crate) fn read_secrets(
    container: &ContainerConfig,
    image_root: &Path,
    entry: &ProcessEntry,
    scope: &Scope,
) -> Result<BTreeMap<String, Vec<String>>, Problems> {
    if let Some(secrets) = &container.secret_environ {
        return Ok(secrets.clone());
    }
    let Some(file) = &container.secret_environ_file else {
        return Ok(BTreeMap::new());
    };
    let inside = if file.is_absolute() {
        file.clone()
    } else {
        entry.config.parent().unwrap_or(Path::new("/")).join(file)
    };
    let path = resolve_in_root(image_root, &inside).map_err(|message| {
        Problems::from(Problem {
            file: inside.clone(),
            line: None,
            column: None,
            key: "secret-environ-file".into(),
            message,
            scope: scope.clone(),
        })
    })?;
    let mut problems = Problems::default();
    let Some(text) = read_or_report(&path, scope, &mut problems) else {
        return Err(problems);
    };
    parse_secret_file(&FileContext {
        path: &path,
        text: &text,
        scope: scope.clone(),
    })
}
