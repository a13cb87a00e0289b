//! The processes config (`processes/NAME.yaml`): which images run in a sandbox, how many
//! instances, and with which variables.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::{self, MapAccess};
use serde::Serialize;

use super::collections::{struct_deserialize, List, UniqueMap};
use super::problems::{join_key, locate_key, FileContext, Problem, Scope};
use super::read::parse_text;
use super::scalar::{next_key, SeenKeys, P};
use super::spec::EntryKind;

/// One entry of a processes file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessEntry {
    /// Daemon (default) or Command (`kind`).
    pub kind: EntryKind,
    /// Image name relative to the sandbox's image-dir (`image`).
    pub image: String,
    /// Path of the container config inside the image (`config`).
    pub config: PathBuf,
    /// Number of instances of a daemon (`instances`, default 1).
    pub instances: u32,
    /// One address per instance in a bridged sandbox (`ip-addresses`).
    pub ip_addresses: Vec<IpAddr>,
    /// Values of the container config's variables (`variables`).
    pub variables: BTreeMap<String, String>,
    /// Secret namespaces allowed in addition to the sandbox's (`extra-secrets-namespaces`).
    pub extra_secrets_namespaces: Vec<String>,
}

impl Default for ProcessEntry {
    fn default() -> Self {
        ProcessEntry {
            kind: EntryKind::Daemon,
            image: String::new(),
            config: PathBuf::new(),
            instances: 1,
            ip_addresses: Vec::new(),
            variables: BTreeMap::new(),
            extra_secrets_namespaces: Vec::new(),
        }
    }
}

/// Keys of a processes entry.
pub(crate) const ENTRY_KEYS: &[&str] = &[
    "kind",
    "image",
    "config",
    "instances",
    "ip-addresses",
    "variables",
    "extra-secrets-namespaces",
];

fn visit_entry<'de, A: MapAccess<'de>>(mut map: A) -> Result<ProcessEntry, A::Error> {
    let mut e = ProcessEntry::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, ENTRY_KEYS, &mut seen)? {
        match key {
            "kind" => {
                let P(kind): P<String> = map.next_value()?;
                e.kind = match kind.as_str() {
                    "Daemon" => EntryKind::Daemon,
                    "Command" => EntryKind::Command,
                    other => {
                        return Err(de::Error::custom(super::problems::keyed_message(
                            "kind",
                            &format!("{other:?} is not a process kind: write Daemon or Command"),
                        )))
                    }
                };
            }
            "image" => e.image = map.next_value::<P<_>>()?.0,
            "config" => e.config = map.next_value::<P<_>>()?.0,
            "instances" => e.instances = map.next_value::<P<_>>()?.0,
            "ip-addresses" => e.ip_addresses = map.next_value::<List<_>>()?.0,
            "variables" => {
                e.variables = map
                    .next_value::<UniqueMap<String, P<String>>>()?
                    .0
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }
            "extra-secrets-namespaces" => {
                e.extra_secrets_namespaces = map.next_value::<List<_>>()?.0
            }
            _ => unreachable!("key {key} is in ENTRY_KEYS"),
        }
    }
    Ok(e)
}

struct_deserialize!(ProcessEntry, "a process entry (a mapping)", visit_entry);

/// Parses a processes file; each entry parses on its own so one bad entry keeps the others.
///
/// The outer error is a problem of the whole file (bad YAML, not a mapping, a duplicate
/// name). The first error inside an entry keeps serde_yaml's line and column. Errors of
/// further entries are found by parsing each entry alone, so they are placed by key.
pub(crate) fn parse_processes(
    context: &FileContext,
    sandbox: &str,
) -> Result<BTreeMap<String, Result<ProcessEntry, Problem>>, Problem> {
    let entry_scope = |name: &str| Scope::Entry(sandbox.to_string(), name.to_string());
    let first_error =
        match parse_text::<Option<UniqueMap<String, ProcessEntry>>>(context, context.text) {
            Ok(map) => {
                let map = map.map(|m| m.0).unwrap_or_default();
                return Ok(map.into_iter().map(|(k, v)| (k, Ok(v))).collect());
            }
            Err(problem) => problem,
        };
    let value: serde_yaml::Value = match serde_yaml::from_str(context.text) {
        Ok(value) => value,
        Err(_) => return Err(first_error),
    };
    let mapping = match value {
        serde_yaml::Value::Mapping(mapping) => mapping,
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        _ => return Err(first_error),
    };
    // Names may contain dots, so match whole names against the start of the key path.
    let failed_name = mapping
        .keys()
        .filter_map(|key| match key {
            serde_yaml::Value::String(name) => Some(name.clone()),
            serde_yaml::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .filter(|name| first_error.key == *name || first_error.key.starts_with(&format!("{name}.")))
        .max_by_key(String::len)
        .unwrap_or_default();
    let mut entries = BTreeMap::new();
    for (name, entry) in mapping {
        let name = match name {
            serde_yaml::Value::String(name) => name,
            serde_yaml::Value::Number(number) => number.to_string(),
            serde_yaml::Value::Bool(value) => value.to_string(),
            _ => return Err(first_error),
        };
        if entries.contains_key(&name) {
            return Err(first_error);
        }
        let result = if name == failed_name {
            let mut problem = first_error.clone();
            problem.scope = entry_scope(&name);
            Err(problem)
        } else {
            // The entry goes through text again, so it parses exactly like the first pass.
            let text = serde_yaml::to_string(&entry).unwrap_or_default();
            serde_yaml::from_str::<ProcessEntry>(&text).map_err(|error| {
                let mut problem = context.yaml_problem(&error);
                problem.key = join_key(&name, &problem.key);
                let position = locate_key(context.text, &problem.key);
                problem.line = position.map(|(line, _)| line);
                problem.column = position.map(|(_, column)| column);
                problem.scope = entry_scope(&name);
                problem
            })
        };
        entries.insert(name, result);
    }
    if !entries.contains_key(&failed_name) {
        return Err(first_error);
    }
    Ok(entries)
}
