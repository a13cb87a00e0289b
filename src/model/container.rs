//! The container config (`IMAGE/config/NAME.yaml`): how to run one program.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess};
use serde::Serialize;

use super::collections::{struct_deserialize, List, UniqueMap};
use super::problems::keyed_message;
use super::sandbox::IdMaps;
use super::scalar::{next_key, Opt, Seconds, SeenKeys, P};
use super::spec::{ContainerKind, IdMap, Volume};
use super::tags::{VariableDef, VariableType, VolumeDef};

/// Default `restart-timeout`.
pub const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `kill-timeout`.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `fileno-limit`.
pub const DEFAULT_FILENO_LIMIT: u64 = 1024;

/// A container config as written, with variables not yet substituted.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct ContainerConfig {
    /// `kind`: Daemon (default), Command or CommandOrDaemon.
    pub kind: ContainerKind,
    /// Declared variables and their types (`variables`).
    pub variables: BTreeMap<String, VariableType>,
    /// Free-form data for other tools, kept but not checked (`metadata`).
    #[serde(skip)]
    pub metadata: Option<serde_yaml::Value>,
    /// Mount points (`volumes`).
    pub volumes: BTreeMap<PathBuf, Volume>,
    /// `user-id`; the sandbox's default-user when missing.
    pub user_id: Option<u32>,
    /// `group-id`; the sandbox's default-group when missing.
    pub group_id: Option<u32>,
    /// `memory-limit` in bytes.
    pub memory_limit: Option<u64>,
    /// `cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `fileno-limit`.
    pub fileno_limit: Option<u64>,
    /// `restart-timeout`.
    pub restart_timeout: Option<Duration>,
    /// `kill-timeout`.
    pub kill_timeout: Option<Duration>,
    /// `executable`, an absolute path (required).
    pub executable: Option<String>,
    /// `arguments` after argument zero.
    pub arguments: Vec<String>,
    /// `environ`; values stay text even when they look like numbers.
    pub environ: BTreeMap<String, String>,
    /// `secret-environ`: name to one or more encrypted values.
    pub secret_environ: Option<BTreeMap<String, Vec<String>>>,
    /// `secret-environ-file`, read from the image.
    pub secret_environ_file: Option<PathBuf>,
    /// `workdir` (default `/`).
    pub workdir: Option<PathBuf>,
    /// `resolv-conf`.
    pub resolv_conf: ResolvConf,
    /// `hosts-file`.
    pub hosts_file: HostsFile,
    /// `uid-map`.
    pub uid_map: Vec<IdMap>,
    /// `gid-map`.
    pub gid_map: Vec<IdMap>,
    /// `stdout-stderr-file`, a path inside the container.
    pub stdout_stderr_file: Option<PathBuf>,
    /// `interactive`.
    pub interactive: bool,
    /// `restart-process-only`.
    pub restart_process_only: bool,
    /// `tcp-ports`: port (possibly `@{var}`) to socket settings.
    pub tcp_ports: BTreeMap<String, TcpPort>,
    /// `normal-exit-codes`.
    pub normal_exit_codes: Vec<i32>,
}

/// The `resolv-conf` settings of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvConf {
    /// `mount`: `None` means mount over a regular file only.
    pub mount: Option<bool>,
    /// `copy-from-host` (default true).
    pub copy_from_host: bool,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            mount: None,
            copy_from_host: true,
        }
    }
}

/// The `hosts-file` settings of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostsFile {
    /// `mount`: `None` means mount over a regular file only.
    pub mount: Option<bool>,
    /// `copy-from-host` (default true, as the original's code has it).
    pub copy_from_host: bool,
    /// `localhost`; defaults to `!copy_from_host`.
    pub localhost: Option<bool>,
    /// `public-hostname`; defaults to `!copy_from_host`.
    pub public_hostname: Option<bool>,
}

impl Default for HostsFile {
    fn default() -> Self {
        HostsFile {
            mount: None,
            copy_from_host: true,
            localhost: None,
            public_hostname: None,
        }
    }
}

/// One `tcp-ports` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpPort {
    /// `fd` (required).
    pub fd: Option<i32>,
    /// `host` (default 0.0.0.0).
    pub host: IpAddr,
    /// `listen-backlog` (default 128).
    pub listen_backlog: u32,
    /// `reuse-addr` (default true).
    pub reuse_addr: bool,
    /// `reuse-port` (default false).
    pub reuse_port: bool,
    /// `set-non-block` (default false).
    pub set_non_block: bool,
    /// `external` (default false).
    pub external: bool,
}

impl Default for TcpPort {
    fn default() -> Self {
        TcpPort {
            fd: None,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_backlog: 128,
            reuse_addr: true,
            reuse_port: false,
            set_non_block: false,
            external: false,
        }
    }
}

pub(crate) const CONTAINER_KEYS: &[&str] = &[
    "kind",
    "variables",
    "metadata",
    "volumes",
    "user-id",
    "group-id",
    "memory-limit",
    "cpu-shares",
    "fileno-limit",
    "restart-timeout",
    "kill-timeout",
    "executable",
    "arguments",
    "environ",
    "secret-environ",
    "secret-environ-file",
    "workdir",
    "resolv-conf",
    "hosts-file",
    "uid-map",
    "gid-map",
    "stdout-stderr-file",
    "interactive",
    "restart-process-only",
    "tcp-ports",
    "normal-exit-codes",
];

fn parse_kind<E: de::Error>(kind: &str) -> Result<ContainerKind, E> {
    match kind {
        "Daemon" => Ok(ContainerKind::Daemon),
        "Command" => Ok(ContainerKind::Command),
        "CommandOrDaemon" => Ok(ContainerKind::CommandOrDaemon),
        other => Err(E::custom(keyed_message(
            "kind",
            &format!("{other:?} is not a container kind: write Daemon, Command or CommandOrDaemon"),
        ))),
    }
}

fn visit_container<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContainerConfig, A::Error> {
    let mut c = ContainerConfig::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, CONTAINER_KEYS, &mut seen)? {
        match key {
            "kind" => c.kind = parse_kind(&map.next_value::<P<String>>()?.0)?,
            "variables" => {
                let vars = map.next_value::<UniqueMap<String, VariableDef>>()?.0;
                c.variables = vars.into_iter().map(|(k, v)| (k, v.0)).collect();
            }
            "metadata" => c.metadata = Some(map.next_value()?),
            "volumes" => {
                let volumes = map.next_value::<UniqueMap<PathBuf, VolumeDef>>()?.0;
                c.volumes = volumes.into_iter().map(|(k, v)| (k, v.0)).collect();
            }
            "user-id" => c.user_id = map.next_value::<Opt<_>>()?.0,
            "group-id" => c.group_id = map.next_value::<Opt<_>>()?.0,
            "memory-limit" => c.memory_limit = map.next_value::<Opt<_>>()?.0,
            "cpu-shares" => c.cpu_shares = map.next_value::<Opt<_>>()?.0,
            "fileno-limit" => c.fileno_limit = map.next_value::<Opt<_>>()?.0,
            "restart-timeout" => {
                c.restart_timeout = map.next_value::<Opt<Seconds>>()?.0.map(|s| s.0)
            }
            "kill-timeout" => c.kill_timeout = map.next_value::<Opt<Seconds>>()?.0.map(|s| s.0),
            "executable" => c.executable = map.next_value::<Opt<_>>()?.0,
            "arguments" => c.arguments = map.next_value::<List<_>>()?.0,
            "environ" => c.environ = unwrap_map(map.next_value::<UniqueMap<String, P<String>>>()?),
            "secret-environ" => c.secret_environ = Some(map.next_value::<SecretEnviron>()?.0),
            "secret-environ-file" => c.secret_environ_file = map.next_value::<Opt<_>>()?.0,
            "workdir" => c.workdir = map.next_value::<Opt<_>>()?.0,
            "resolv-conf" => c.resolv_conf = map.next_value()?,
            "hosts-file" => c.hosts_file = map.next_value()?,
            "uid-map" => c.uid_map = map.next_value::<IdMaps>()?.0,
            "gid-map" => c.gid_map = map.next_value::<IdMaps>()?.0,
            "stdout-stderr-file" => c.stdout_stderr_file = map.next_value::<Opt<_>>()?.0,
            "interactive" => c.interactive = map.next_value::<P<_>>()?.0,
            "restart-process-only" => c.restart_process_only = map.next_value::<P<_>>()?.0,
            "tcp-ports" => c.tcp_ports = map.next_value::<UniqueMap<String, TcpPort>>()?.0,
            "normal-exit-codes" => c.normal_exit_codes = map.next_value::<List<_>>()?.0,
            _ => unreachable!("key {key} is in CONTAINER_KEYS"),
        }
    }
    Ok(c)
}

fn unwrap_map<K: Ord, V>(map: UniqueMap<K, P<V>>) -> BTreeMap<K, V> {
    map.0.into_iter().map(|(k, v)| (k, v.0)).collect()
}

struct_deserialize!(
    ContainerConfig,
    "a container config (a mapping)",
    visit_container
);

const RESOLV_KEYS: &[&str] = &["mount", "copy-from-host"];

fn visit_resolv<'de, A: MapAccess<'de>>(mut map: A) -> Result<ResolvConf, A::Error> {
    let mut r = ResolvConf::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, RESOLV_KEYS, &mut seen)? {
        match key {
            "mount" => r.mount = map.next_value::<Opt<_>>()?.0,
            "copy-from-host" => r.copy_from_host = map.next_value::<P<_>>()?.0,
            _ => unreachable!(),
        }
    }
    Ok(r)
}

struct_deserialize!(ResolvConf, "resolv-conf settings (a mapping)", visit_resolv);

const HOSTS_KEYS: &[&str] = &["mount", "copy-from-host", "localhost", "public-hostname"];

fn visit_hosts<'de, A: MapAccess<'de>>(mut map: A) -> Result<HostsFile, A::Error> {
    let mut h = HostsFile::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, HOSTS_KEYS, &mut seen)? {
        match key {
            "mount" => h.mount = map.next_value::<Opt<_>>()?.0,
            "copy-from-host" => h.copy_from_host = map.next_value::<P<_>>()?.0,
            "localhost" => h.localhost = map.next_value::<Opt<_>>()?.0,
            "public-hostname" => h.public_hostname = map.next_value::<Opt<_>>()?.0,
            _ => unreachable!(),
        }
    }
    Ok(h)
}

struct_deserialize!(HostsFile, "hosts-file settings (a mapping)", visit_hosts);

const TCP_PORT_KEYS: &[&str] = &[
    "fd",
    "host",
    "listen-backlog",
    "reuse-addr",
    "reuse-port",
    "set-non-block",
    "external",
];

fn visit_tcp_port<'de, A: MapAccess<'de>>(mut map: A) -> Result<TcpPort, A::Error> {
    let mut t = TcpPort::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, TCP_PORT_KEYS, &mut seen)? {
        match key {
            "fd" => t.fd = map.next_value::<Opt<_>>()?.0,
            "host" => t.host = map.next_value::<P<_>>()?.0,
            "listen-backlog" => t.listen_backlog = map.next_value::<P<_>>()?.0,
            "reuse-addr" => t.reuse_addr = map.next_value::<P<_>>()?.0,
            "reuse-port" => t.reuse_port = map.next_value::<P<_>>()?.0,
            "set-non-block" => t.set_non_block = map.next_value::<P<_>>()?.0,
            "external" => t.external = map.next_value::<P<_>>()?.0,
            _ => unreachable!(),
        }
    }
    Ok(t)
}

struct_deserialize!(TcpPort, "tcp port settings (a mapping)", visit_tcp_port);

/// Secret values: each name maps to one encrypted string or a list of alternatives.
#[derive(Default)]
pub(crate) struct SecretEnviron(pub BTreeMap<String, Vec<String>>);

struct SecretValue(Vec<String>);

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl<'de> de::Visitor<'de> for SecretVisitor {
            type Value = SecretValue;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an encrypted value (v2:...) or a list of them")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(SecretValue(vec![value.to_string()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let List(items) =
                    List::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(SecretValue(items))
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

impl<'de> Deserialize<'de> for SecretEnviron {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Option::<UniqueMap<String, SecretValue>>::deserialize(deserializer)?
            .unwrap_or_default();
        Ok(SecretEnviron(
            map.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
        ))
    }
}
