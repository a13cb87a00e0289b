//! The sandbox config (`sandboxes/NAME.yaml`): what the containers of one application may
//! use.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::{self, MapAccess};
use serde::Serialize;

use super::collections::{struct_deserialize, List, UniqueMap};
use super::problems::{keyed_message, FileContext, Problems};
use super::scalar::{next_key, Opt, SeenKeys, P};
use super::spec::IdMap;
use super::units::{format_ranges, in_ranges, IdRange};

/// A sandbox config as written, with defaults applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SandboxConfig {
    /// Processes file; relative to the sandbox file's directory (`config-file`).
    pub config_file: Option<PathBuf>,
    /// Directory of images, relative to the sandbox file's directory (`image-dir`).
    pub image_dir: Option<PathBuf>,
    /// Number of path components of an image name (`image-dir-levels`).
    pub image_dir_levels: u32,
    /// Supervisor log file (`log-file`); `None` means `default-log-dir/SANDBOX.log`.
    pub log_file: Option<PathBuf>,
    /// Supervisor log level (`log-level`).
    pub log_level: String,
    /// Virtual path to host path, read-only (`readonly-paths`).
    pub readonly_paths: BTreeMap<PathBuf, PathBuf>,
    /// Virtual path to host path, writable (`writable-paths`).
    pub writable_paths: BTreeMap<PathBuf, PathBuf>,
    /// Allowed user ids (`allow-users`).
    pub allow_users: Vec<IdRange>,
    /// User id when a container sets none (`default-user`).
    pub default_user: Option<u32>,
    /// Allowed group ids (`allow-groups`).
    pub allow_groups: Vec<IdRange>,
    /// Group id when a container sets none (`default-group`); 0 when not written.
    pub default_group: Option<u32>,
    /// Allowed TCP ports (`allow-tcp-ports`).
    pub allow_tcp_ports: Vec<IdRange>,
    /// Extra `/etc/hosts` lines (`additional-hosts`).
    pub additional_hosts: BTreeMap<String, String>,
    /// uid map of the user namespace (`uid-map`).
    pub uid_map: Vec<IdMap>,
    /// gid map of the user namespace (`gid-map`).
    pub gid_map: Vec<IdMap>,
    /// File listing images `lithos_clean` keeps (`used-images-list`).
    pub used_images_list: Option<PathBuf>,
    /// Let `lithos_clean` remove unused images (`auto-clean`).
    pub auto_clean: bool,
    /// Host file copied to the containers' resolv.conf (`resolv-conf`).
    pub resolv_conf: PathBuf,
    /// Host file copied to the containers' hosts file (`hosts-file`).
    pub hosts_file: PathBuf,
    /// Bridged network of the containers (`bridged-network`).
    pub bridged_network: Option<BridgedNetwork>,
    /// Private key file(s) for secrets (`secrets-private-key`).
    pub secrets_private_key: Option<PathBuf>,
    /// Allowed secret namespaces (`secrets-namespaces`).
    pub secrets_namespaces: Vec<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            config_file: None,
            image_dir: None,
            image_dir_levels: 1,
            log_file: None,
            log_level: "warn".to_string(),
            readonly_paths: BTreeMap::new(),
            writable_paths: BTreeMap::new(),
            allow_users: Vec::new(),
            default_user: None,
            allow_groups: Vec::new(),
            default_group: None,
            allow_tcp_ports: Vec::new(),
            additional_hosts: BTreeMap::new(),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            used_images_list: None,
            auto_clean: true,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: PathBuf::from("/etc/hosts"),
            bridged_network: None,
            secrets_private_key: None,
            secrets_namespaces: vec![String::new()],
        }
    }
}

/// The `bridged-network` of a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct BridgedNetwork {
    /// Host bridge interface (`bridge`).
    pub bridge: String,
    /// Network in CIDR notation (`network`).
    pub network: String,
    /// Default route (`default_gateway`, also `default-gateway`).
    pub default_gateway: Option<IpAddr>,
    /// Command run after the network is set up (`after-setup-command`).
    pub after_setup_command: Vec<String>,
}

const SANDBOX_KEYS: &[&str] = &[
    "config-file",
    "image-dir",
    "image-dir-levels",
    "log-file",
    "log-level",
    "readonly-paths",
    "writable-paths",
    "allow-users",
    "default-user",
    "allow-groups",
    "default-group",
    "allow-tcp-ports",
    "additional-hosts",
    "uid-map",
    "gid-map",
    "used-images-list",
    "auto-clean",
    "resolv-conf",
    "hosts-file",
    "bridged-network",
    "secrets-private-key",
    "secrets-namespaces",
];

fn visit_sandbox<'de, A: MapAccess<'de>>(mut map: A) -> Result<SandboxConfig, A::Error> {
    let mut s = SandboxConfig::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, SANDBOX_KEYS, &mut seen)? {
        match key {
            "config-file" => s.config_file = map.next_value::<Opt<_>>()?.0,
            "image-dir" => s.image_dir = map.next_value::<Opt<_>>()?.0,
            "image-dir-levels" => s.image_dir_levels = map.next_value::<P<_>>()?.0,
            "log-file" => s.log_file = map.next_value::<Opt<_>>()?.0,
            "log-level" => s.log_level = map.next_value::<P<_>>()?.0,
            "readonly-paths" => {
                s.readonly_paths = map
                    .next_value::<UniqueMap<PathBuf, P<PathBuf>>>()?
                    .0
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }
            "writable-paths" => {
                s.writable_paths = map
                    .next_value::<UniqueMap<PathBuf, P<PathBuf>>>()?
                    .0
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }
            "allow-users" => s.allow_users = map.next_value::<List<_>>()?.0,
            "default-user" => s.default_user = map.next_value::<Opt<_>>()?.0,
            "allow-groups" => s.allow_groups = map.next_value::<List<_>>()?.0,
            "default-group" => s.default_group = map.next_value::<Opt<_>>()?.0,
            "allow-tcp-ports" => s.allow_tcp_ports = map.next_value::<List<_>>()?.0,
            "additional-hosts" => {
                s.additional_hosts = map
                    .next_value::<UniqueMap<String, P<String>>>()?
                    .0
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            }
            "uid-map" => s.uid_map = map.next_value::<IdMaps>()?.0,
            "gid-map" => s.gid_map = map.next_value::<IdMaps>()?.0,
            "used-images-list" => s.used_images_list = map.next_value::<Opt<_>>()?.0,
            "auto-clean" => s.auto_clean = map.next_value::<P<_>>()?.0,
            "resolv-conf" => s.resolv_conf = map.next_value::<P<_>>()?.0,
            "hosts-file" => s.hosts_file = map.next_value::<P<_>>()?.0,
            "bridged-network" => s.bridged_network = map.next_value::<Option<BridgedNetwork>>()?,
            "secrets-private-key" => s.secrets_private_key = map.next_value::<Opt<_>>()?.0,
            "secrets-namespaces" => s.secrets_namespaces = map.next_value::<List<_>>()?.0,
            _ => unreachable!("key {key} is in SANDBOX_KEYS"),
        }
    }
    Ok(s)
}

struct_deserialize!(SandboxConfig, "a sandbox config (a mapping)", visit_sandbox);

const NETWORK_KEYS: &[&str] = &[
    "bridge",
    "network",
    "default-gateway",
    "after-setup-command",
];

fn visit_network<'de, A: MapAccess<'de>>(mut map: A) -> Result<BridgedNetwork, A::Error> {
    let mut n = BridgedNetwork::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, NETWORK_KEYS, &mut seen)? {
        match key {
            "bridge" => n.bridge = map.next_value::<P<_>>()?.0,
            "network" => {
                let P(network): P<String> = map.next_value()?;
                if network.parse::<ipnetwork::IpNetwork>().is_err() {
                    return Err(de::Error::custom(keyed_message(
                        "network",
                        &format!(
                            "{network:?} is not a network: write CIDR notation like 10.0.0.0/24"
                        ),
                    )));
                }
                n.network = network;
            }
            "default-gateway" => n.default_gateway = map.next_value::<Opt<_>>()?.0,
            "after-setup-command" => n.after_setup_command = map.next_value::<List<_>>()?.0,
            _ => unreachable!(),
        }
    }
    if n.bridge.is_empty() {
        return Err(de::Error::custom(
            "bridged-network needs a bridge: write bridge: br0",
        ));
    }
    if n.network.is_empty() {
        return Err(de::Error::custom(
            "bridged-network needs a network: write network: 10.0.0.0/24",
        ));
    }
    Ok(n)
}

struct_deserialize!(
    BridgedNetwork,
    "a bridged network (a mapping)",
    visit_network
);

/// A list of id map lines.
#[derive(Default)]
pub(crate) struct IdMaps(pub Vec<IdMap>);

struct IdMapLine(IdMap);

#[derive(Default)]
struct IdMapFields {
    inside: Option<u32>,
    outside: Option<u32>,
    count: Option<u32>,
}

const ID_MAP_KEYS: &[&str] = &["inside", "outside", "count"];

fn visit_id_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<IdMapFields, A::Error> {
    let mut f = IdMapFields::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, ID_MAP_KEYS, &mut seen)? {
        let P(value) = map.next_value::<P<u32>>()?;
        match key {
            "inside" => f.inside = Some(value),
            "outside" => f.outside = Some(value),
            "count" => f.count = Some(value),
            _ => unreachable!(),
        }
    }
    Ok(f)
}

struct_deserialize!(
    IdMapFields,
    "an id map line like {inside: 0, outside: 1000, count: 1}",
    visit_id_map
);

impl<'de> serde::Deserialize<'de> for IdMapLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = IdMapFields::deserialize(deserializer)?;
        if fields.count == Some(0) {
            return Err(de::Error::custom(
                "count 0 maps no ids: write a count of 1 or more",
            ));
        }
        match (fields.inside, fields.outside, fields.count) {
            (Some(inside), Some(outside), Some(count)) => Ok(IdMapLine(IdMap { inside, outside, count })),
            _ => Err(de::Error::custom(
                "an id map line needs inside, outside and count: write {inside: 0, outside: 1000, count: 1}",
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for IdMaps {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let lines = Option::<Vec<IdMapLine>>::deserialize(deserializer)?.unwrap_or_default();
        Ok(IdMaps(lines.into_iter().map(|line| line.0).collect()))
    }
}

/// Returns true when `value` is a valid secrets namespace (`^[a-zA-Z0-9_.-]*$`).
pub fn valid_namespace(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl SandboxConfig {
    /// Checks the sandbox file on its own. With `require`, a missing `image-dir` is a
    /// problem (documentation snippets leave it out).
    pub(crate) fn check(&self, context: &FileContext, require: bool) -> Problems {
        let mut problems = Problems::default();
        if require && self.image_dir.is_none() {
            problems.push(context.file_problem(
                "missing key \"image-dir\": write image-dir: /var/lib/lithos/images",
            ));
        }
        if self.image_dir_levels == 0 {
            problems.push(context.problem(
                "image-dir-levels",
                "0 is not allowed: image-dir-levels is at least 1",
            ));
        }
        self.check_defaults(context, &mut problems);
        self.check_paths(context, &mut problems);
        problems
    }

    fn check_defaults(&self, context: &FileContext, problems: &mut Problems) {
        if let Some(user) = self.default_user {
            if !in_ranges(&self.allow_users, user.into()) {
                problems.push(context.problem(
                    "default-user",
                    format!(
                        "{user} is not in allow-users {}: add it there or change default-user",
                        format_ranges(&self.allow_users)
                    ),
                ));
            }
        }
        // An unwritten default-group (0) is checked only where a container uses it.
        if let Some(group) = self.default_group {
            if !in_ranges(&self.allow_groups, group.into()) {
                problems.push(context.problem(
                    "default-group",
                    format!(
                        "{group} is not in allow-groups {}: add it there or set default-group",
                        format_ranges(&self.allow_groups)
                    ),
                ));
            }
        }
        for (index, port) in self.allow_tcp_ports.iter().enumerate() {
            if port.end > 65535 || port.start == 0 {
                problems.push(context.problem(
                    &format!("allow-tcp-ports[{index}]"),
                    "TCP ports lie between 1 and 65535",
                ));
            }
        }
        for namespace in &self.secrets_namespaces {
            if !valid_namespace(namespace) {
                problems.push(context.problem(
                    "secrets-namespaces",
                    format!(
                        "{namespace:?} is not a namespace: use only letters, digits, _ . and -"
                    ),
                ));
            }
        }
        if !super::master::LOG_LEVELS.contains(&self.log_level.as_str()) {
            problems.push(context.problem(
                "log-level",
                format!(
                    "{:?} is not a log level: use one of error, warn, info, debug, trace",
                    self.log_level
                ),
            ));
        }
    }

    fn check_paths(&self, context: &FileContext, problems: &mut Problems) {
        for (host, address) in &self.additional_hosts {
            if address.parse::<std::net::IpAddr>().is_err() {
                problems.push(context.problem(
                    &format!("additional-hosts.{host}"),
                    format!("{address:?} is not an IP address: write one like 10.0.0.2"),
                ));
            }
        }
        for (key, paths) in [
            ("readonly-paths", &self.readonly_paths),
            ("writable-paths", &self.writable_paths),
        ] {
            for (virtual_path, host_path) in paths {
                if !virtual_path.is_absolute() || !host_path.is_absolute() {
                    problems.push(context.problem(
                        &format!("{key}.{}", virtual_path.display()),
                        format!(
                            "{} -> {}: both paths must be absolute",
                            virtual_path.display(),
                            host_path.display()
                        ),
                    ));
                }
            }
        }
        if let Some(key) = &self.secrets_private_key {
            if !key.is_absolute() {
                problems.push(context.problem(
                    "secrets-private-key",
                    format!(
                        "{:?} is relative: secrets-private-key must be an absolute path",
                        key.display().to_string()
                    ),
                ));
            }
        }
        if let Some(network) = &self.bridged_network {
            if let Some(first) = network.after_setup_command.first() {
                if !first.starts_with('/') {
                    problems.push(context.problem(
                        "bridged-network.after-setup-command",
                        format!("{first:?} is relative: the command needs an absolute path"),
                    ));
                }
            }
        }
    }
}
