//! Reading config files and parsing their text into typed structures.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::problems::{locate_key, FileContext, Problem};

/// Largest config file read; a bigger file is a mistake, not a config.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file as UTF-8 text; the error is a message naming the path.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;

    use std::os::unix::fs::OpenOptionsExt;

    // O_NONBLOCK keeps the open from waiting for a writer when the path is a FIFO; only a
    // regular file is read at all, so a device or FIFO cannot stall the loader.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file: a config must be a plain file",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))
}

/// Parses YAML text into `T`, keeping the line, column and key path of the first error.
///
/// Only text that contains a merge key (`<<`) goes through `serde_yaml::Value`, because
/// applying merges needs the whole tree. Errors in such a file are placed by their key path.
pub(crate) fn parse_text<T: DeserializeOwned>(
    context: &FileContext,
    text: &str,
) -> Result<T, Problem> {
    if text.contains("<<") {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| context.yaml_problem(&e))?;
        value.apply_merge().map_err(|e| context.yaml_problem(&e))?;
        // Parsing the merged tree as text again keeps one code path for every file. Its
        // positions refer to the regenerated text, so errors are placed by key path.
        let merged = serde_yaml::to_string(&value).map_err(|e| context.yaml_problem(&e))?;
        return serde_yaml::from_str(&merged).map_err(|error| {
            let mut problem = context.yaml_problem(&error);
            let position = locate_key(text, &problem.key);
            problem.line = position.map(|(line, _)| line);
            problem.column = position.map(|(_, column)| column);
            problem
        });
    }
    serde_yaml::from_str(text).map_err(|e| context.yaml_problem(&e))
}
