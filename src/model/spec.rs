//! The instantiated configuration of one container.
//!
//! A [`LaunchSpec`] is everything a knot needs to build and run one container, with every
//! variable substituted and every default applied. The tree builds it from the config tree,
//! fingerprints it, and hands it to `lithos_knot` on a file descriptor, so the knot never
//! reads a config file that may have changed since. Secrets stay encrypted here; only the
//! knot decrypts them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Version of the [`LaunchSpec`] wire format; bumped when a field changes meaning.
pub const LAUNCH_SPEC_VERSION: u32 = 1;

/// How a container config may be used, as written in its `kind` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ContainerKind {
    /// A long-running process kept alive by `lithos_tree`.
    #[default]
    Daemon,
    /// A one-off task run by `lithos_cmd`.
    Command,
    /// Either of the above, as the process entry decides.
    CommandOrDaemon,
}

/// How a process entry runs its container, as written in the processes file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum EntryKind {
    /// Supervised instances started by `lithos_tree`.
    #[default]
    Daemon,
    /// Started on demand by `lithos_cmd`.
    Command,
}

/// Name of one daemon instance, written `SANDBOX/PROCESS.N`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceName {
    /// Sandbox name (the sandbox file's stem).
    pub sandbox: String,
    /// Process entry name in the sandbox's processes file.
    pub process: String,
    /// Zero-based instance number.
    pub index: u32,
}

impl InstanceName {
    /// Builds an instance name from its parts.
    pub fn new(sandbox: impl Into<String>, process: impl Into<String>, index: u32) -> Self {
        InstanceName {
            sandbox: sandbox.into(),
            process: process.into(),
            index,
        }
    }

    /// Returns the leaf cgroup name, `SANDBOX:PROCESS.N.scope`.
    pub fn cgroup_leaf(&self) -> String {
        format!("{}:{}.{}.scope", self.sandbox, self.process, self.index)
    }

    /// Returns the state directory path relative to `state-dir`: `SANDBOX/PROCESS.N`.
    pub fn state_subdir(&self) -> PathBuf {
        PathBuf::from(&self.sandbox).join(format!("{}.{}", self.process, self.index))
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.sandbox, self.process, self.index)
    }
}

/// Error returned when a string is not of the form `SANDBOX/PROCESS.N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid instance name {0:?}: expected SANDBOX/PROCESS.N")]
pub struct InvalidInstanceName(pub String);

impl FromStr for InstanceName {
    type Err = InvalidInstanceName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidInstanceName(text.to_string());
        let (sandbox, rest) = text.split_once('/').ok_or_else(invalid)?;
        let (process, index) = rest.rsplit_once('.').ok_or_else(invalid)?;
        if sandbox.is_empty() || process.is_empty() || process.contains('/') {
            return Err(invalid());
        }
        let index = index.parse::<u32>().map_err(|_| invalid())?;
        Ok(InstanceName::new(sandbox, process, index))
    }
}

/// A uid or gid mapping line of a user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdMap {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id outside the namespace.
    pub outside: u32,
    /// Number of ids mapped.
    pub count: u32,
}

/// A volume as written in the container config; host paths are resolved by the knot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Volume {
    /// Read-only bind mount of a virtual path from `readonly-paths` or `writable-paths`.
    Readonly {
        /// Virtual path, mapped through the sandbox's path prefixes.
        path: PathBuf,
    },
    /// Writable bind mount of a virtual path from `writable-paths`.
    Persistent {
        /// Virtual path, mapped through the sandbox's `writable-paths`.
        path: PathBuf,
        /// Create the host directory when it is missing.
        mkdir: bool,
        /// Mode of a directory created by `mkdir`.
        mode: u32,
        /// Owner of a directory created by `mkdir`.
        user: u32,
        /// Group of a directory created by `mkdir`.
        group: u32,
    },
    /// A subdirectory of the instance's state directory, created fresh at each start.
    Statedir {
        /// Path inside the state directory (`/` is the state directory itself).
        path: PathBuf,
        /// Mode of the directory.
        mode: u32,
        /// Owner of the directory.
        user: u32,
        /// Group of the directory.
        group: u32,
    },
    /// A tmpfs of the given size in bytes (0 means the kernel's default) and mode.
    Tmpfs {
        /// Size in bytes.
        size: u64,
        /// Mode of the tmpfs root.
        mode: u32,
    },
}

/// A listening TCP socket passed to the program at a fixed file descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpPortSpec {
    /// Port number.
    pub port: u16,
    /// Address to bind.
    pub host: IpAddr,
    /// File descriptor number in the program.
    pub fd: i32,
    /// Backlog passed to `listen()`.
    pub listen_backlog: u32,
    /// Set `SO_REUSEADDR`.
    pub reuse_addr: bool,
    /// Bind a separate socket for each start with `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// Put the socket into non-blocking mode.
    pub set_non_block: bool,
    /// In a bridged sandbox, bind in the host's network namespace.
    pub external: bool,
}

/// What to do with `/etc/resolv.conf` in the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResolvConfSpec {
    /// `None` mounts only over a regular file, `Some(true)` requires one, `Some(false)` never mounts.
    pub mount: Option<bool>,
    /// Copy the host's file (the sandbox's `resolv-conf`).
    pub copy_from_host: bool,
    /// Host file to copy from.
    pub host_file: PathBuf,
}

/// What to do with `/etc/hosts` in the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostsFileSpec {
    /// `None` mounts only over a regular file, `Some(true)` requires one, `Some(false)` never mounts.
    pub mount: Option<bool>,
    /// Add a `127.0.0.1 localhost` line.
    pub localhost: bool,
    /// Add the host name and the address it resolves to.
    pub public_hostname: bool,
    /// Copy the host's file (the sandbox's `hosts-file`).
    pub copy_from_host: bool,
    /// Host file to copy from.
    pub host_file: PathBuf,
    /// Extra `hostname: ip` lines from the sandbox's `additional-hosts`.
    pub additional_hosts: BTreeMap<String, String>,
}

/// The sandbox's bridged network, with this instance's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Host bridge interface.
    pub bridge: String,
    /// Network in CIDR notation, for example `10.0.0.0/24`.
    pub network: String,
    /// Default route, if any.
    pub default_gateway: Option<IpAddr>,
    /// Command run in the container's network namespace, `@{container_ip}` not yet replaced.
    pub after_setup_command: Vec<String>,
    /// This instance's address; `None` for a command with loopback only.
    pub ip_address: Option<IpAddr>,
}

/// Cgroup placement of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// `cgroup-name` of the master config, for example `lithos.slice`.
    pub parent: String,
    /// v1 hierarchies to use; never empty (the default list is filled in).
    pub controllers: Vec<String>,
    /// Leaf group, for example `sandbox:process.0.scope`.
    pub leaf: String,
}

/// The container config with every variable substituted and every default applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Kind written in the container config.
    pub kind: ContainerKind,
    /// User the program runs as (inside the user namespace when one is used).
    pub user_id: u32,
    /// Group the program runs as.
    pub group_id: u32,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU shares (cgroup v1 scale, 2..=262144).
    pub cpu_shares: Option<u64>,
    /// `RLIMIT_NOFILE` of the program.
    pub fileno_limit: u64,
    /// Minimum time between two starts.
    pub restart_timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_timeout: Duration,
    /// Absolute path of the program.
    pub executable: String,
    /// Arguments after argument zero.
    pub arguments: Vec<String>,
    /// Environment, substituted; names listed in `pid_environ` are not here.
    pub environ: BTreeMap<String, String>,
    /// Variables whose value is the program's pid as seen in the container (`@{lithos:pid}`).
    pub pid_environ: Vec<String>,
    /// Encrypted variables: each name has one or more `v2:` alternatives.
    pub secret_environ: BTreeMap<String, Vec<String>>,
    /// Working directory, absolute.
    pub workdir: PathBuf,
    /// `/etc/resolv.conf` handling.
    pub resolv_conf: ResolvConfSpec,
    /// `/etc/hosts` handling.
    pub hosts_file: HostsFileSpec,
    /// uid map from the container or the sandbox (they are exclusive); empty means no user namespace.
    pub uid_map: Vec<IdMap>,
    /// gid map from the container or the sandbox.
    pub gid_map: Vec<IdMap>,
    /// File inside the container receiving stdout and stderr instead of the stdio log.
    pub stdout_stderr_file: Option<PathBuf>,
    /// Keep stdin, stdout and stderr of `lithos_cmd` attached.
    pub interactive: bool,
    /// Restart only the program, not the whole container.
    pub restart_process_only: bool,
    /// Mount points, sorted by path so a parent comes before what is inside it.
    pub volumes: BTreeMap<PathBuf, Volume>,
    /// Listening sockets, keyed by file descriptor number in the program.
    pub tcp_ports: BTreeMap<i32, TcpPortSpec>,
    /// Exit codes that are not failures.
    pub normal_exit_codes: Vec<i32>,
}

/// Everything a knot needs to build and run one container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Wire format version, [`LAUNCH_SPEC_VERSION`].
    pub version: u32,
    /// Instance name: `SANDBOX/PROCESS.N`, or `SANDBOX/cmd.NAME.PID` for a command.
    pub name: String,
    /// Sandbox name.
    pub sandbox: String,
    /// Process entry name.
    pub process: String,
    /// How the entry is run.
    pub entry_kind: EntryKind,
    /// Image name relative to `image-dir`.
    pub image: String,
    /// Absolute path of the image directory on the host.
    pub image_root: PathBuf,
    /// Path of the container config inside the image.
    pub config_path: PathBuf,
    /// The instantiated container config.
    pub container: ContainerSpec,
    /// Virtual path to host path, read-only (`readonly-paths`).
    pub readonly_paths: BTreeMap<PathBuf, PathBuf>,
    /// Virtual path to host path, writable (`writable-paths`).
    pub writable_paths: BTreeMap<PathBuf, PathBuf>,
    /// Bridged network, when the sandbox has one.
    pub network: Option<NetworkSpec>,
    /// Private key file(s) for `secret_environ`.
    pub secrets_private_key: Option<PathBuf>,
    /// Allowed secret namespaces: the sandbox's plus the entry's extra ones.
    pub secrets_namespaces: Vec<String>,
    /// Host directory mounted as the container's `/dev`.
    pub devfs_dir: PathBuf,
    /// Empty host directory used as the mount point of the new root.
    pub mount_dir: PathBuf,
    /// This instance's state directory on the host.
    pub state_dir: PathBuf,
    /// Host file receiving stdout and stderr (`stdio-log-dir/SANDBOX.log`).
    pub stdio_log: PathBuf,
    /// The knot's own log file (the sandbox's `log-file`).
    pub log_file: PathBuf,
    /// The knot's log level (the sandbox's `log-level`).
    pub log_level: String,
    /// Syslog facility and application name when the master config logs to syslog.
    pub syslog: Option<(String, String)>,
    /// Cgroup placement, or `None` when cgroups are off.
    pub cgroup: Option<CgroupSpec>,
}

/// One daemon instance the config tree asks for, as the reconciler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredInstance {
    /// Instance name.
    pub name: InstanceName,
    /// Hex fingerprint of the parts of the spec whose change needs a restart.
    pub fingerprint: String,
    /// Minimum time between two starts.
    pub restart_timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_timeout: Duration,
    /// Everything needed to start it.
    pub spec: Arc<LaunchSpec>,
}
