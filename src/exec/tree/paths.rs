//! The path of a sandbox's processes file, for `lithos_switch` and the config log.

use std::path::{Path, PathBuf};

use crate::model::MasterConfig;

/// Returns the processes file of `sandbox`: the sandbox's `config-file` resolved against
/// the sandbox file's directory, or `processes-dir/SANDBOX.yaml`.
pub fn processes_file(master: &MasterConfig, sandbox: &str) -> PathBuf {
    let sandbox_file = master.sandboxes_dir.join(format!("{sandbox}.yaml"));
    match config_file_key(&sandbox_file) {
        Some(file) => sandbox_file.parent().unwrap_or(Path::new("/")).join(file),
        None => master.processes_dir.join(format!("{sandbox}.yaml")),
    }
}

/// Reads `config-file` (or `config_file`) from a sandbox file; `None` when unset or null.
fn config_file_key(sandbox_file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(sandbox_file).ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let mapping = value.as_mapping()?;
    ["config-file", "config_file"]
        .iter()
        .find_map(|key| mapping.get(*key)?.as_str().map(PathBuf::from))
}
