//! Problems found while loading a config tree, with the place and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Part of the tree that a problem invalidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Scope {
    /// The master config: nothing can run.
    Master,
    /// One sandbox (its sandbox file or its processes file).
    Sandbox(String),
    /// One entry of a processes file: `(sandbox, process)`.
    Entry(String, String),
}

/// One problem of a config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File the problem is in.
    pub file: PathBuf,
    /// One-based line, when known.
    pub line: Option<usize>,
    /// One-based column, when known.
    pub column: Option<usize>,
    /// Key path such as `volumes./tmp.size`; empty for the whole file.
    pub key: String,
    /// Description of the problem, with the bad value and the fix.
    pub message: String,
    /// Part of the tree that the problem invalidates.
    pub scope: Scope,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// A list of problems, printed one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Returns true when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends a problem.
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// Appends every problem of `other`.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Self {
        Problems(vec![problem])
    }
}

/// Marks the start of a key that a message adds to the error's path.
const KEY_START: char = '\u{1}';
/// Marks the end of that key.
const KEY_END: char = '\u{2}';

/// Formats a deserializer message that names a key below the current path.
///
/// serde_yaml reports a mapping key's error at the mapping's path, so the key travels in
/// the message and [`from_yaml_error`] appends it to the path.
pub(crate) fn keyed_message(key: &str, message: &str) -> String {
    format!("{KEY_START}{key}{KEY_END}{message}")
}

/// Collects problems of one file, with its path, text and scope.
#[derive(Clone, Debug)]
pub(crate) struct FileContext<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub scope: Scope,
}

impl FileContext<'_> {
    /// Builds a semantic problem at `key`, locating the key in the text.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        let (line, column) = match locate_key(self.text, key) {
            Some((line, column)) => (Some(line), Some(column)),
            None => (None, None),
        };
        Problem {
            file: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
            scope: self.scope.clone(),
        }
    }

    /// Builds a problem that concerns the whole file.
    pub fn file_problem(&self, message: impl Into<String>) -> Problem {
        Problem {
            file: self.path.to_path_buf(),
            line: None,
            column: None,
            key: String::new(),
            message: message.into(),
            scope: self.scope.clone(),
        }
    }

    /// Converts a serde_yaml error of this file into a problem.
    pub fn yaml_problem(&self, error: &serde_yaml::Error) -> Problem {
        from_yaml_error(self.path, &self.scope, error)
    }
}

/// Converts a serde_yaml error into a problem, splitting the path from the message.
pub(crate) fn from_yaml_error(file: &Path, scope: &Scope, error: &serde_yaml::Error) -> Problem {
    let mut text = error.to_string();
    let location = error.location();
    if let Some(at) = text.rfind(" at line ") {
        if location.is_some() {
            text.truncate(at);
        }
    }
    let (mut key, mut message) = match text.find(KEY_START) {
        Some(start) => (
            text[..start].trim_end_matches(": ").to_string(),
            text[start..].to_string(),
        ),
        None => split_path(&text),
    };
    if let Some(rest) = message.strip_prefix(KEY_START) {
        if let Some((sub, msg)) = rest.split_once(KEY_END) {
            key = join_key(&key, sub);
            message = msg.to_string();
        }
    }
    if key == "." {
        key.clear();
    }
    Problem {
        file: file.to_path_buf(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        key,
        message,
        scope: scope.clone(),
    }
}

/// Splits serde_yaml's `PATH: MESSAGE` form; messages without a path keep an empty key.
fn split_path(text: &str) -> (String, String) {
    if let Some((path, message)) = text.split_once(": ") {
        let looks_like_path = !path.contains(' ') || path.starts_with('/');
        if looks_like_path && !path.is_empty() {
            return (path.to_string(), message.to_string());
        }
    }
    (String::new(), text.to_string())
}

/// Joins a parent key path and a child key.
pub(crate) fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// Finds the line and column of a key path such as `volumes./tmp.size` in YAML text.
///
/// This is a heuristic over block-style YAML: each component is looked up as a mapping
/// key indented deeper than its parent. It returns the deepest component found, so a
/// problem still points near its cause when the text uses flow style.
pub(crate) fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    let mut rest = key;
    while !rest.is_empty() {
        let (component, tail) = next_component(rest);
        rest = tail;
        let component = component.split('[').next().unwrap_or(component);
        let mut hit = None;
        for (index, line) in lines.iter().enumerate().skip(start) {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start().trim_start_matches("- ");
            if let Some(parent) = parent_indent {
                if indent <= parent && !line.trim().is_empty() && !trimmed.starts_with('#') {
                    break;
                }
            }
            if key_matches(trimmed, component) {
                hit = Some((index, indent + (line.trim_start().len() - trimmed.len())));
                break;
            }
        }
        match hit {
            Some((index, column)) => {
                found = Some((index + 1, column + 1));
                start = index + 1;
                parent_indent = Some(column);
            }
            None => break,
        }
    }
    found
}

/// Splits the first component off a key path; mount points like `/tmp` contain no dots
/// that matter, but a component may itself contain dots, so try the longest known form.
fn next_component(path: &str) -> (&str, &str) {
    match path.find('.') {
        Some(dot) => (&path[..dot], &path[dot + 1..]),
        None => (path, ""),
    }
}

/// Returns true when a trimmed line starts with `component:` in any quoting or spelling.
fn key_matches(line: &str, component: &str) -> bool {
    let Some((head, _)) = line.split_once(':') else {
        return false;
    };
    let head = head.trim().trim_matches(|c| c == '"' || c == '\'');
    head == component || head.replace('_', "-") == component.replace('_', "-")
}

/// Suggests the closest known key for an unknown one.
pub(crate) fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.replace('_', "-");
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&unknown, k), *k))
        .filter(|(distance, k)| *distance <= 2.max(k.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_nested_key() {
        let text = "a: 1\nvolumes:\n  /tmp: !Tmpfs\n    size: 100m\n";
        assert_eq!(locate_key(text, "volumes./tmp.size"), Some((4, 5)));
        assert_eq!(locate_key(text, "volumes"), Some((2, 1)));
    }

    #[test]
    fn suggest_close_key() {
        let known = ["memory-limit", "workdir", "user-id"];
        assert_eq!(suggest("memory-limt", &known), Some("memory-limit"));
        assert_eq!(suggest("work-dir", &known), Some("workdir"));
        assert_eq!(suggest("zzzzzz", &known), None);
    }
}
