//! Cross-file checks of one process entry and the [`LaunchSpec`] of each of its instances.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::container::ContainerConfig;
use super::master::MasterConfig;
use super::problems::{FileContext, Problems};
use super::process::ProcessEntry;
use super::sandbox::SandboxConfig;
use super::spec::{
    CgroupSpec, ContainerSpec, EntryKind, HostsFileSpec, LaunchSpec, NetworkSpec, ResolvConfSpec,
    TcpPortSpec, LAUNCH_SPEC_VERSION,
};
use super::tags::{Activation, VariableType};
use super::vars::{is_pid_value, substitute, BUILTIN_CONFIG_FILENAME, BUILTIN_NAME};

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
    pub(crate) fn entry_key(&self, key: &str) -> String {
        format!("{}.{key}", self.entry_name)
    }

    /// Returns the allowed secret namespaces: the sandbox's plus the entry's extra ones.
    pub(crate) fn namespaces(&self) -> Vec<String> {
        merged_namespaces(self.sandbox, self.entry)
    }

    /// Returns true when a port of this entry binds inside the bridged network.
    pub(crate) fn internal_port(&self, external: bool) -> bool {
        self.sandbox.bridged_network.is_some() && !external
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

/// The fields of a container config that variables are substituted in.
struct Substituted {
    arguments: Vec<String>,
    environ: BTreeMap<String, String>,
    pid_environ: Vec<String>,
    tcp_ports: BTreeMap<i32, TcpPortSpec>,
}

/// Substitutes variables in arguments, environ values and tcp-ports keys, and expands the
/// systemd activation shortcut.
fn substitute_fields(input: &EntryInput, name: &str) -> Result<Substituted, Problems> {
    let c = input.container;
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
    let mut result = Substituted {
        arguments: Vec::new(),
        environ: BTreeMap::new(),
        pid_environ: Vec::new(),
        tcp_ports: BTreeMap::new(),
    };
    for (i, argument) in c.arguments.iter().enumerate() {
        result
            .arguments
            .push(sub(&format!("arguments[{i}]"), argument, &mut problems));
    }
    for (key, value) in &c.environ {
        if is_pid_value(value) {
            result.pid_environ.push(key.clone());
        } else {
            let value = sub(&format!("environ.{key}"), value, &mut problems);
            result.environ.insert(key.clone(), value);
        }
    }
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
        let spec = TcpPortSpec {
            port,
            host: settings.host,
            fd,
            listen_backlog: settings.listen_backlog,
            reuse_addr: settings.reuse_addr,
            reuse_port: settings.reuse_port,
            set_non_block: settings.set_non_block,
            external: settings.external,
        };
        result.tcp_ports.insert(fd, spec);
    }
    add_systemd_ports(
        input,
        &mut result.tcp_ports,
        &mut result.environ,
        &mut result.pid_environ,
        &mut problems,
    );
    if problems.is_empty() {
        Ok(result)
    } else {
        Err(problems)
    }
}

fn instantiate_container(input: &EntryInput, name: &str) -> Result<ContainerSpec, Problems> {
    let c = input.container;
    let sandbox = input.sandbox;
    let Substituted {
        arguments,
        environ,
        pid_environ,
        tcp_ports,
    } = substitute_fields(input, name)?;
    let hosts = &c.hosts_file;
    Ok(ContainerSpec {
        kind: c.kind,
        user_id: c.user_id.or(sandbox.default_user).unwrap_or_default(),
        group_id: c.group_id.or(sandbox.default_group).unwrap_or(0),
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
