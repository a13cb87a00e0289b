//! Checks that need the sandbox, the process entry and the container config together.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::instantiate::EntryInput;
use super::problems::{FileContext, Problem, Problems, Scope};
use super::process::ProcessEntry;
use super::sandbox::valid_namespace;
use super::secrets_check::check_entry_secrets;
use super::spec::{ContainerKind, EntryKind, IdMap, LaunchSpec, Volume};
use super::tags::{Activation, VariableType};
use super::units::{format_ranges, in_ranges, IdRange};
use super::vars::check_value;

/// Runs every check that needs the sandbox, the entry and the container together.
pub(crate) fn check_entry(input: &EntryInput) -> Problems {
    let mut problems = Problems::default();
    check_kind(input, &mut problems);
    check_variables(input, &mut problems);
    check_ids(input, &mut problems);
    check_network(input, &mut problems);
    check_volumes(input, &mut problems);
    for namespace in &input.entry.extra_secrets_namespaces {
        if !valid_namespace(namespace) {
            problems.push(input.processes.problem(
                &input.entry_key("extra-secrets-namespaces"),
                format!("{namespace:?} is not a namespace: use only letters, digits, _ . and -"),
            ));
        }
    }
    let mut secret_problems = Problems::default();
    check_entry_secrets(input, &input.namespaces(), &mut secret_problems);
    problems.extend(secret_problems);
    problems
}

fn check_kind(input: &EntryInput, problems: &mut Problems) {
    let matches = matches!(
        (input.container.kind, input.entry.kind),
        (ContainerKind::CommandOrDaemon, _)
            | (ContainerKind::Daemon, EntryKind::Daemon)
            | (ContainerKind::Command, EntryKind::Command)
    );
    if !matches {
        problems.push(input.processes.problem(
            &input.entry_key("kind"),
            format!(
                "the entry is a {:?} but its container config {} is of kind {:?}: make the kinds agree",
                input.entry.kind,
                input.entry.config.display(),
                input.container.kind
            ),
        ));
    }
}

fn check_variables(input: &EntryInput, problems: &mut Problems) {
    for (name, kind) in &input.container.variables {
        let key = input.entry_key(&format!("variables.{name}"));
        let Some(value) = input.entry.variables.get(name) else {
            problems.push(input.processes.problem(
                &input.entry_key("variables"),
                format!(
                    "variable {name:?} is declared in {} but has no value: add {name}: VALUE under variables",
                    input.entry.config.display()
                ),
            ));
            continue;
        };
        let allowed = match kind {
            VariableType::TcpPort {
                activation: Activation::None,
            } => {
                let uses_internal = input.container.tcp_ports.iter().any(|(port, settings)| {
                    port.contains(&format!("@{{{name}}}")) && input.internal_port(settings.external)
                });
                (!uses_internal).then_some(input.sandbox.allow_tcp_ports.as_slice())
            }
            VariableType::TcpPort {
                activation: Activation::Systemd,
            } => (!input.internal_port(false)).then_some(input.sandbox.allow_tcp_ports.as_slice()),
            _ => None,
        };
        if let Err(message) = check_value(name, kind, value, allowed) {
            problems.push(input.processes.problem(&key, message));
        }
    }
}

fn check_ids(input: &EntryInput, problems: &mut Problems) {
    let container = input.container;
    let sandbox = input.sandbox;
    let mut both = false;
    for (key, in_sandbox, in_container) in [
        ("uid-map", &sandbox.uid_map, &container.uid_map),
        ("gid-map", &sandbox.gid_map, &container.gid_map),
    ] {
        if !in_sandbox.is_empty() && !in_container.is_empty() {
            both = true;
            problems.push(input.config.problem(
                key,
                format!("{key} is set in both the sandbox and the container: keep one"),
            ));
        }
    }
    if both {
        // Which ids are valid depends on which map stays, so checking them now misleads.
        return;
    }
    let user = match container.user_id.or(sandbox.default_user) {
        Some(user) => user,
        None => {
            problems.push(input.config.file_problem(
                "missing key \"user-id\": set user-id here or default-user in the sandbox config",
            ));
            return;
        }
    };
    let group = container.group_id.or(sandbox.default_group).unwrap_or(0);
    check_id(
        input,
        "user-id",
        "allow-users",
        user,
        &container.uid_map,
        &sandbox.allow_users,
        problems,
    );
    check_id(
        input,
        "group-id",
        "allow-groups",
        group,
        &container.gid_map,
        &sandbox.allow_groups,
        problems,
    );
}

fn check_id(
    input: &EntryInput,
    key: &str,
    allow_key: &str,
    id: u32,
    container_map: &[IdMap],
    allowed: &[IdRange],
    problems: &mut Problems,
) {
    if container_map.is_empty() {
        let sandbox_map = if key == "user-id" {
            &input.sandbox.uid_map
        } else {
            &input.sandbox.gid_map
        };
        if !sandbox_map.is_empty() && !maps(sandbox_map, id) {
            problems.push(input.config.problem(
                key,
                format!("{id} is not mapped by the sandbox's id map: use an id inside the map"),
            ));
        }
        if !in_ranges(allowed, id.into()) {
            problems.push(input.config.problem(
                key,
                format!("{id} is not in the sandbox's {allow_key} {}: use an allowed id or extend {allow_key}", format_ranges(allowed)),
            ));
        }
        return;
    }
    // With a container map, the sandbox limits the outside ids the map may use.
    if !maps(container_map, id) {
        problems.push(input.config.problem(
            key,
            format!("{id} is not mapped by the container's id map: add it to the map"),
        ));
    }
    for line in container_map {
        let last = u64::from(line.outside) + u64::from(line.count).saturating_sub(1);
        let covered = allowed
            .iter()
            .any(|r| r.start <= u64::from(line.outside) && last <= r.end);
        if !covered {
            problems.push(input.config.problem(
                if key == "user-id" {
                    "uid-map"
                } else {
                    "gid-map"
                },
                format!(
                    "outside ids {}-{last} are not in the sandbox's {allow_key} {}",
                    line.outside,
                    format_ranges(allowed)
                ),
            ));
        }
    }
}

/// Returns true when an id map line maps the inside id `id`.
fn maps(map: &[IdMap], id: u32) -> bool {
    map.iter()
        .any(|m| m.inside <= id && u64::from(id) < u64::from(m.inside) + u64::from(m.count))
}

fn check_network(input: &EntryInput, problems: &mut Problems) {
    let entry = input.entry;
    let key = input.entry_key("ip-addresses");
    let Some(bridged) = &input.sandbox.bridged_network else {
        if !entry.ip_addresses.is_empty() {
            problems.push(input.processes.problem(
                &key,
                "ip-addresses need a bridged-network in the sandbox config",
            ));
        }
        return;
    };
    let network: ipnetwork::IpNetwork = match bridged.network.parse() {
        Ok(network) => network,
        Err(_) => return,
    };
    if entry.kind == EntryKind::Daemon && entry.ip_addresses.len() != entry.instances as usize {
        problems.push(input.processes.problem(
            &key,
            format!(
                "{} address(es) for {} instance(s): a bridged sandbox needs one ip address per instance",
                entry.ip_addresses.len(),
                entry.instances
            ),
        ));
    }
    if entry.kind == EntryKind::Command && entry.ip_addresses.len() > 1 {
        problems.push(input.processes.problem(
            &key,
            format!(
                "{} addresses for a command: a command runs one container, so give it one address, or none for loopback only",
                entry.ip_addresses.len()
            ),
        ));
    }
    for address in &entry.ip_addresses {
        if !network.contains(*address) {
            problems.push(input.processes.problem(
                &key,
                format!("{address} lies outside the sandbox's bridged network {network}: use an address inside it"),
            ));
        }
    }
}

fn check_volumes(input: &EntryInput, problems: &mut Problems) {
    let sandbox = input.sandbox;
    for (mount_point, volume) in &input.container.volumes {
        let key = format!("volumes.{}", mount_point.display());
        let (path, writable) = match volume {
            Volume::Readonly { path } => (path, false),
            Volume::Persistent { path, .. } => (path, true),
            _ => continue,
        };
        let under = |paths: &BTreeMap<PathBuf, PathBuf>| {
            paths.keys().any(|prefix| path.starts_with(prefix))
        };
        let allowed =
            under(&sandbox.writable_paths) || (!writable && under(&sandbox.readonly_paths));
        if !allowed {
            let list = if writable {
                "writable-paths"
            } else {
                "readonly-paths or writable-paths"
            };
            problems.push(input.config.problem(
                &key,
                format!(
                    "{} is not under any of the sandbox's {list}: add a virtual path for it there",
                    path.display()
                ),
            ));
        }
    }
}

/// Checks the ports of an instantiated spec: port numbers are known only after substitution.
pub(crate) fn check_ports(input: &EntryInput, spec: &LaunchSpec, problems: &mut Problems) {
    let allowed = &input.sandbox.allow_tcp_ports;
    let mut bound = BTreeMap::new();
    for port in spec.container.tcp_ports.values() {
        if let Some(fd) = bound.insert((port.port, port.host), port.fd) {
            problems.push(input.config.problem(
                "tcp-ports",
                format!(
                    "port {} on {} is given twice (fds {fd} and {}): bind each port once",
                    port.port, port.host, port.fd
                ),
            ));
        }
        if input.internal_port(port.external) {
            continue;
        }
        if !in_ranges(allowed, port.port.into()) {
            problems.push(input.config.problem(
                "tcp-ports",
                format!("port {} is not in the sandbox's allow-tcp-ports {}: add it there or use another port", port.port, format_ranges(allowed)),
            ));
        }
    }
}

/// Reports an ip address given to more than one instance of the sandbox; both entries that
/// use it fail, since neither can be started safely.
pub(crate) fn duplicate_addresses(
    parsed: &BTreeMap<String, Result<ProcessEntry, Problem>>,
    processes: &FileContext,
) -> Vec<Problem> {
    let mut owners: BTreeMap<std::net::IpAddr, Vec<&str>> = BTreeMap::new();
    for (name, entry) in parsed {
        if let Ok(entry) = entry {
            for address in &entry.ip_addresses {
                owners.entry(*address).or_default().push(name);
            }
        }
    }
    let Scope::Sandbox(sandbox) = &processes.scope else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (address, names) in owners.iter().filter(|(_, names)| names.len() > 1) {
        let mut unique = names.clone();
        unique.dedup();
        for name in unique {
            let context = FileContext {
                scope: Scope::Entry(sandbox.clone(), name.to_string()),
                ..processes.clone()
            };
            found.push(context.problem(
                &format!("{name}.ip-addresses"),
                format!("{address} is given {} times in this sandbox: give each instance its own address", names.len()),
            ));
        }
    }
    found
}
