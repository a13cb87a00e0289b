//! Cross-file checks of one process entry and the [`LaunchSpec`] of each of its instances.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::container::ContainerConfig;
use super::master::MasterConfig;
use super::problems::{FileContext, Problems};
use super::process::ProcessEntry;
use super::sandbox::{valid_namespace, SandboxConfig};
use super::spec::{
    CgroupSpec, ContainerKind, ContainerSpec, EntryKind, HostsFileSpec, IdMap, LaunchSpec,
    NetworkSpec, ResolvConfSpec, TcpPortSpec, Volume, LAUNCH_SPEC_VERSION,
};
use super::tags::{Activation, VariableType};
use super::units::{format_ranges, in_ranges};
use super::vars::{check_value, is_pid_value, substitute, BUILTIN_CONFIG_FILENAME, BUILTIN_NAME};

/// Everything one process entry is built from.
pub(crate) struct EntryInput<'a> {
    pub master: &'a MasterConfig,
    pub sandbox_name: &'a str,
    pub sandbox: &'a SandboxConfig,
    pub entry_name: &'a str,
    pub entry: &'a ProcessEntry,
    pub container: &'a ContainerConfig,
    /// Secrets from secret-environ or secret-environ-file.
    pub secrets: BTreeMap<String, Vec<String>>,
    pub image_root: PathBuf,
    /// The processes file, for problems of the entry.
    pub processes: &'a FileContext<'a>,
    /// The container config, for problems of the container.
    pub config: &'a FileContext<'a>,
}

impl EntryInput<'_> {
    fn entry_key(&self, key: &str) -> String {
        format!("{}.{key}", self.entry_name)
    }

    /// Returns true when a port of this entry binds inside the bridged network.
    fn internal_port(&self, external: bool) -> bool {
        self.sandbox.bridged_network.is_some() && !external
    }
}

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
    if !input.secrets.is_empty() && input.sandbox.secrets_private_key.is_none() {
        problems.push(input.config.problem(
            "secret-environ",
            "secrets need a key: set secrets-private-key in the sandbox config",
        ));
    }
    if problems.is_empty() {
        // Port numbers come from substitution, so check them on an instantiated spec.
        match instantiate(input, 0) {
            Ok(spec) => check_ports(input, &spec, &mut problems),
            Err(more) => problems.extend(more),
        }
    }
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
    if !sandbox.uid_map.is_empty() && !container.uid_map.is_empty() {
        problems.push(input.config.problem(
            "uid-map",
            "uid-map is set in both the sandbox and the container: keep one",
        ));
    }
    if !sandbox.gid_map.is_empty() && !container.gid_map.is_empty() {
        problems.push(input.config.problem(
            "gid-map",
            "gid-map is set in both the sandbox and the container: keep one",
        ));
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
    let group = container.group_id.unwrap_or(sandbox.default_group);
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
    allowed: &[super::units::IdRange],
    problems: &mut Problems,
) {
    if container_map.is_empty() {
        if !in_ranges(allowed, id.into()) {
            problems.push(input.config.problem(
                key,
                format!("{id} is not in the sandbox's {allow_key} {}: use an allowed id or extend {allow_key}", format_ranges(allowed)),
            ));
        }
        return;
    }
    // With a container map, the sandbox limits the outside ids the map may use.
    if !container_map
        .iter()
        .any(|m| m.inside <= id && u64::from(id) < u64::from(m.inside) + u64::from(m.count))
    {
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

fn check_ports(input: &EntryInput, spec: &LaunchSpec, problems: &mut Problems) {
    let allowed = &input.sandbox.allow_tcp_ports;
    for port in spec.container.tcp_ports.values() {
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

/// Builds the spec of instance `index` (a command gets index 0 and a `cmd.` name).
pub(crate) fn instantiate(input: &EntryInput, index: u32) -> Result<LaunchSpec, Problems> {
    let master = input.master;
    let sandbox = input.sandbox;
    let process = match input.entry.kind {
        EntryKind::Daemon => input.entry_name.to_string(),
        EntryKind::Command => format!("cmd.{}", input.entry_name),
    };
    let name = format!("{}/{process}.{index}", input.sandbox_name);
    let leaf = format!("{}:{process}.{index}.scope", input.sandbox_name);
    let container = instantiate_container(input, &name)?;
    Ok(LaunchSpec {
        version: LAUNCH_SPEC_VERSION,
        name,
        sandbox: input.sandbox_name.to_string(),
        process: input.entry_name.to_string(),
        entry_kind: input.entry.kind,
        image: input.entry.image.clone(),
        image_root: input.image_root.clone(),
        config_path: input.entry.config.clone(),
        container,
        readonly_paths: sandbox.readonly_paths.clone(),
        writable_paths: sandbox.writable_paths.clone(),
        network: sandbox.bridged_network.as_ref().map(|bridged| NetworkSpec {
            bridge: bridged.bridge.clone(),
            network: bridged.network.clone(),
            default_gateway: bridged.default_gateway,
            after_setup_command: bridged.after_setup_command.clone(),
            ip_address: input.entry.ip_addresses.get(index as usize).copied(),
        }),
        secrets_private_key: sandbox.secrets_private_key.clone(),
        secrets_namespaces: merged_namespaces(sandbox, input.entry),
        devfs_dir: master.devfs_dir.clone(),
        mount_dir: master.mount_dir.clone(),
        state_dir: master
            .state_dir
            .join(input.sandbox_name)
            .join(format!("{process}.{index}")),
        stdio_log: master
            .stdio_log_dir
            .join(format!("{}.log", input.sandbox_name)),
        log_file: sandbox_log_file(master, input.sandbox_name, sandbox),
        log_level: sandbox.log_level.clone(),
        syslog: master.syslog_facility.as_ref().map(|facility| {
            (
                facility.clone(),
                format!("{}-{}", master.syslog_name, input.sandbox_name),
            )
        }),
        cgroup: master.cgroup_name.as_ref().map(|parent| CgroupSpec {
            parent: parent.clone(),
            controllers: master.cgroup_controllers.clone(),
            leaf,
        }),
    })
}

/// Returns the sandbox's log file: `log-file` relative to default-log-dir, or
/// `default-log-dir/SANDBOX.log`.
pub(crate) fn sandbox_log_file(
    master: &MasterConfig,
    name: &str,
    sandbox: &SandboxConfig,
) -> PathBuf {
    match &sandbox.log_file {
        Some(file) => master.default_log_dir.join(file),
        None => master.default_log_dir.join(format!("{name}.log")),
    }
}

fn merged_namespaces(sandbox: &SandboxConfig, entry: &ProcessEntry) -> Vec<String> {
    let mut namespaces = sandbox.secrets_namespaces.clone();
    for extra in &entry.extra_secrets_namespaces {
        if !namespaces.contains(extra) {
            namespaces.push(extra.clone());
        }
    }
    namespaces
}

fn instantiate_container(input: &EntryInput, name: &str) -> Result<ContainerSpec, Problems> {
    let c = input.container;
    let sandbox = input.sandbox;
    let mut problems = Problems::default();
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for declared in c.variables.keys() {
        if let Some(value) = input.entry.variables.get(declared) {
            values.insert(declared, value.clone());
        }
    }
    values.insert(BUILTIN_NAME, name.to_string());
    values.insert(
        BUILTIN_CONFIG_FILENAME,
        input.entry.config.display().to_string(),
    );

    let sub = |key: &str, text: &str, problems: &mut Problems| -> String {
        substitute(text, &values).unwrap_or_else(|message| {
            problems.push(input.config.problem(key, message));
            String::new()
        })
    };
    let arguments = c
        .arguments
        .iter()
        .enumerate()
        .map(|(i, argument)| sub(&format!("arguments[{i}]"), argument, &mut problems))
        .collect();
    let mut environ = BTreeMap::new();
    let mut pid_environ = Vec::new();
    for (key, value) in &c.environ {
        if is_pid_value(value) {
            pid_environ.push(key.clone());
        } else {
            environ.insert(
                key.clone(),
                sub(&format!("environ.{key}"), value, &mut problems),
            );
        }
    }
    let mut tcp_ports = BTreeMap::new();
    for (written, settings) in &c.tcp_ports {
        let key = format!("tcp-ports.{written}");
        let text = sub(&key, written, &mut problems);
        let (Ok(port), Some(fd)) = (text.parse::<u16>(), settings.fd) else {
            problems.push(input.config.problem(
                &key,
                format!("{text:?} is not a TCP port: the value must be a number from 1 to 65535"),
            ));
            continue;
        };
        tcp_ports.insert(
            fd,
            TcpPortSpec {
                port,
                host: settings.host,
                fd,
                listen_backlog: settings.listen_backlog,
                reuse_addr: settings.reuse_addr,
                reuse_port: settings.reuse_port,
                set_non_block: settings.set_non_block,
                external: settings.external,
            },
        );
    }
    add_systemd_ports(
        input,
        &mut tcp_ports,
        &mut environ,
        &mut pid_environ,
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let hosts = &c.hosts_file;
    Ok(ContainerSpec {
        kind: c.kind,
        user_id: c.user_id.or(sandbox.default_user).unwrap_or_default(),
        group_id: c.group_id.unwrap_or(sandbox.default_group),
        memory_limit: c.memory_limit,
        cpu_shares: c.cpu_shares,
        fileno_limit: c
            .fileno_limit
            .unwrap_or(super::container::DEFAULT_FILENO_LIMIT),
        restart_timeout: c
            .restart_timeout
            .unwrap_or(super::container::DEFAULT_RESTART_TIMEOUT),
        kill_timeout: c
            .kill_timeout
            .unwrap_or(super::container::DEFAULT_KILL_TIMEOUT),
        executable: c.executable.clone().unwrap_or_default(),
        arguments,
        environ,
        pid_environ,
        secret_environ: input.secrets.clone(),
        workdir: c.workdir.clone().unwrap_or_else(|| PathBuf::from("/")),
        resolv_conf: ResolvConfSpec {
            mount: c.resolv_conf.mount,
            copy_from_host: c.resolv_conf.copy_from_host,
            host_file: sandbox.resolv_conf.clone(),
        },
        hosts_file: HostsFileSpec {
            mount: hosts.mount,
            localhost: hosts.localhost.unwrap_or(!hosts.copy_from_host),
            public_hostname: hosts.public_hostname.unwrap_or(!hosts.copy_from_host),
            copy_from_host: hosts.copy_from_host,
            host_file: sandbox.hosts_file.clone(),
            additional_hosts: sandbox.additional_hosts.clone(),
        },
        uid_map: if c.uid_map.is_empty() {
            sandbox.uid_map.clone()
        } else {
            c.uid_map.clone()
        },
        gid_map: if c.gid_map.is_empty() {
            sandbox.gid_map.clone()
        } else {
            c.gid_map.clone()
        },
        stdout_stderr_file: c.stdout_stderr_file.clone(),
        interactive: c.interactive,
        restart_process_only: c.restart_process_only,
        volumes: c.volumes.clone(),
        tcp_ports,
        normal_exit_codes: c.normal_exit_codes.clone(),
    })
}

/// Expands `!TcpPort {activation: systemd}` variables: fds 3, 4, ... in name order and the
/// `LISTEN_*` variables of the systemd socket activation protocol.
fn add_systemd_ports(
    input: &EntryInput,
    tcp_ports: &mut BTreeMap<i32, TcpPortSpec>,
    environ: &mut BTreeMap<String, String>,
    pid_environ: &mut Vec<String>,
    problems: &mut Problems,
) {
    let mut names = Vec::new();
    for (name, kind) in &input.container.variables {
        if !matches!(
            kind,
            VariableType::TcpPort {
                activation: Activation::Systemd
            }
        ) {
            continue;
        }
        let fd = 3 + names.len() as i32;
        names.push(name.as_str());
        let value = input
            .entry
            .variables
            .get(name)
            .map(String::as_str)
            .unwrap_or("");
        let Ok(port) = value.parse::<u16>() else {
            problems.push(input.processes.problem(
                &input.entry_key(&format!("variables.{name}")),
                format!("{value:?} is not a TCP port: write a number from 1 to 65535"),
            ));
            continue;
        };
        tcp_ports.insert(
            fd,
            TcpPortSpec {
                port,
                host: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                fd,
                listen_backlog: 128,
                reuse_addr: true,
                reuse_port: false,
                set_non_block: false,
                external: false,
            },
        );
    }
    if !names.is_empty() {
        environ.insert("LISTEN_FDS".to_string(), names.len().to_string());
        environ.insert("LISTEN_FDNAMES".to_string(), names.join(":"));
        pid_environ.push("LISTEN_PID".to_string());
    }
}
