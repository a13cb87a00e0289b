//! The master config (`/etc/lithos/master.yaml`): global paths, cgroups and logging.

use std::path::{Path, PathBuf};

use serde::de::MapAccess;
use serde::Serialize;

use super::collections::{struct_deserialize, List};
use super::problems::{FileContext, Problems, Scope};
use super::read::{parse_text, read_text};
use super::scalar::{next_key, Opt, SeenKeys};

/// cgroup controllers used when `cgroup-controllers` is missing or empty.
pub const DEFAULT_CGROUP_CONTROLLERS: [&str; 5] = ["name", "cpu", "cpuacct", "memory", "blkio"];

/// The master config with every path resolved absolute and every default applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasterConfig {
    /// Directory of pid file, lock, state and status files (`runtime-dir`).
    pub runtime_dir: PathBuf,
    /// Directory of the instances' state dirs (`state-dir`).
    pub state_dir: PathBuf,
    /// Empty directory used as mount point of new roots (`mount-dir`).
    pub mount_dir: PathBuf,
    /// Host directory mounted as each container's `/dev` (`devfs-dir`).
    pub devfs_dir: PathBuf,
    /// Root cgroup of all lithos processes; `None` turns cgroups off (`cgroup-name`).
    pub cgroup_name: Option<String>,
    /// cgroup controllers to use; the default list when empty (`cgroup-controllers`).
    pub cgroup_controllers: Vec<String>,
    /// Directory of the master and sandbox logs (`default-log-dir`).
    pub default_log_dir: PathBuf,
    /// Directory where configs are logged, `None` when off (`config-log-dir`).
    pub config_log_dir: Option<PathBuf>,
    /// Directory of the per-sandbox stdout/stderr logs (`stdio-log-dir`).
    pub stdio_log_dir: PathBuf,
    /// Master log file (`log-file`).
    pub log_file: PathBuf,
    /// Master log level (`log-level`).
    pub log_level: String,
    /// Syslog facility; when set, logs go to syslog instead of files (`syslog-facility`).
    pub syslog_facility: Option<String>,
    /// Application name in syslog (`syslog-name`, also `syslog-app-name`).
    pub syslog_name: String,
    /// File where lithos-rs writes its metrics (`metrics-file`).
    pub metrics_file: PathBuf,
    /// Directory of sandbox configs (`sandboxes-dir`).
    pub sandboxes_dir: PathBuf,
    /// Directory of processes configs (`processes-dir`).
    pub processes_dir: PathBuf,
}

/// The master config as written, before defaults and path resolution.
#[derive(Default, Debug)]
struct RawMaster {
    sandboxes_dir: Option<PathBuf>,
    processes_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    mount_dir: Option<PathBuf>,
    devfs_dir: Option<PathBuf>,
    /// `None` when absent, `Some(None)` when written as null.
    cgroup_name: Option<Option<String>>,
    cgroup_controllers: Vec<String>,
    default_log_dir: Option<PathBuf>,
    config_log_dir: Option<Option<PathBuf>>,
    stdio_log_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    syslog_facility: Option<String>,
    syslog_name: Option<String>,
    metrics_file: Option<PathBuf>,
}

const MASTER_KEYS: &[&str] = &[
    "sandboxes-dir",
    "processes-dir",
    "runtime-dir",
    "state-dir",
    "mount-dir",
    "devfs-dir",
    "cgroup-name",
    "cgroup-controllers",
    "default-log-dir",
    "config-log-dir",
    "stdio-log-dir",
    "log-file",
    "log-level",
    "syslog-facility",
    "syslog-name",
    "syslog-app-name",
    "metrics-file",
];

fn visit_master<'de, A: MapAccess<'de>>(mut map: A) -> Result<RawMaster, A::Error> {
    let mut raw = RawMaster::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, MASTER_KEYS, &mut seen)? {
        match key {
            "sandboxes-dir" => raw.sandboxes_dir = map.next_value::<Opt<_>>()?.0,
            "processes-dir" => raw.processes_dir = map.next_value::<Opt<_>>()?.0,
            "runtime-dir" => raw.runtime_dir = map.next_value::<Opt<_>>()?.0,
            "state-dir" => raw.state_dir = map.next_value::<Opt<_>>()?.0,
            "mount-dir" => raw.mount_dir = map.next_value::<Opt<_>>()?.0,
            "devfs-dir" => raw.devfs_dir = map.next_value::<Opt<_>>()?.0,
            "cgroup-name" => raw.cgroup_name = Some(map.next_value::<Opt<_>>()?.0),
            "cgroup-controllers" => raw.cgroup_controllers = map.next_value::<List<_>>()?.0,
            "default-log-dir" => raw.default_log_dir = map.next_value::<Opt<_>>()?.0,
            "config-log-dir" => raw.config_log_dir = Some(map.next_value::<Opt<_>>()?.0),
            "stdio-log-dir" => raw.stdio_log_dir = map.next_value::<Opt<_>>()?.0,
            "log-file" => raw.log_file = map.next_value::<Opt<_>>()?.0,
            "log-level" => raw.log_level = map.next_value::<Opt<_>>()?.0,
            "syslog-facility" => raw.syslog_facility = map.next_value::<Opt<_>>()?.0,
            "syslog-name" | "syslog-app-name" => {
                // Both spellings set one value, so writing both is a duplicate.
                seen.insert::<A::Error>(if key == "syslog-name" {
                    "syslog-app-name"
                } else {
                    "syslog-name"
                })?;
                raw.syslog_name = map.next_value::<Opt<_>>()?.0
            }
            "metrics-file" => raw.metrics_file = map.next_value::<Opt<_>>()?.0,
            _ => unreachable!("key {key} is in MASTER_KEYS"),
        }
    }
    Ok(raw)
}

struct_deserialize!(RawMaster, "the master config (a mapping)", visit_master);

/// Facilities accepted by `syslog-facility`, as syslog(3) names them.
const SYSLOG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Log levels accepted by `log-level`.
pub(crate) const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// Loads and checks a master config; relative paths resolve against the file's directory.
pub fn load_master(path: &Path) -> Result<MasterConfig, Problems> {
    let path = absolute(path);
    let context = FileContext {
        path: &path,
        text: "",
        scope: Scope::Master,
    };
    let text = read_text(&path).map_err(|message| Problems::from(context.file_problem(message)))?;
    parse_master(&path, &text)
}

/// Parses master config text as if it were read from `path` (which should be absolute).
pub fn parse_master(path: &Path, text: &str) -> Result<MasterConfig, Problems> {
    let context = FileContext {
        path,
        text,
        scope: Scope::Master,
    };
    let raw: RawMaster = parse_text(&context, text).map_err(Problems::from)?;
    let master = resolve_master(raw, path.parent().unwrap_or(Path::new("/")));
    let problems = check_master(&master, &context);
    if problems.is_empty() {
        Ok(master)
    } else {
        Err(problems)
    }
}

/// Applies defaults and resolves relative paths (`base` is the master file's directory).
fn resolve_master(raw: RawMaster, base: &Path) -> MasterConfig {
    let runtime_dir = raw.runtime_dir.unwrap_or_else(|| "/run/lithos".into());
    let default_log_dir = raw
        .default_log_dir
        .unwrap_or_else(|| "/var/log/lithos".into());
    let cgroup_controllers = if raw.cgroup_controllers.is_empty() {
        DEFAULT_CGROUP_CONTROLLERS
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        raw.cgroup_controllers
    };
    let config_log_dir = match raw.config_log_dir {
        None => Some(default_log_dir.join("config")),
        Some(dir) => dir.map(|dir| default_log_dir.join(dir)),
    };
    MasterConfig {
        state_dir: runtime_dir.join(raw.state_dir.unwrap_or_else(|| "state".into())),
        mount_dir: runtime_dir.join(raw.mount_dir.unwrap_or_else(|| "mnt".into())),
        metrics_file: runtime_dir.join(raw.metrics_file.unwrap_or_else(|| "metrics.prom".into())),
        devfs_dir: raw
            .devfs_dir
            .unwrap_or_else(|| "/var/lib/lithos/dev".into()),
        cgroup_name: raw
            .cgroup_name
            .unwrap_or_else(|| Some("lithos.slice".to_string())),
        cgroup_controllers,
        config_log_dir,
        stdio_log_dir: default_log_dir.join(raw.stdio_log_dir.unwrap_or_else(|| "stderr".into())),
        log_file: default_log_dir.join(raw.log_file.unwrap_or_else(|| "master.log".into())),
        log_level: raw.log_level.unwrap_or_else(|| "warn".to_string()),
        syslog_facility: raw.syslog_facility,
        syslog_name: raw.syslog_name.unwrap_or_else(|| "lithos".to_string()),
        sandboxes_dir: base.join(raw.sandboxes_dir.unwrap_or_else(|| "sandboxes".into())),
        processes_dir: base.join(raw.processes_dir.unwrap_or_else(|| "processes".into())),
        runtime_dir,
        default_log_dir,
    }
}

/// Checks a resolved master config.
fn check_master(master: &MasterConfig, context: &FileContext) -> Problems {
    let mut problems = Problems::default();
    for (key, dir) in [
        ("runtime-dir", &master.runtime_dir),
        ("default-log-dir", &master.default_log_dir),
        ("devfs-dir", &master.devfs_dir),
    ] {
        if !dir.is_absolute() {
            problems.push(context.problem(
                key,
                format!(
                    "{:?} is relative: {key} must be an absolute path",
                    dir.display().to_string()
                ),
            ));
        }
    }
    if !LOG_LEVELS.contains(&master.log_level.as_str()) {
        problems.push(context.problem(
            "log-level",
            format!(
                "{:?} is not a log level: use one of {}",
                master.log_level,
                LOG_LEVELS.join(", ")
            ),
        ));
    }
    if let Some(name) = &master.cgroup_name {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            problems.push(context.problem(
                "cgroup-name",
                format!("{name:?} is not a cgroup name: write one path component like lithos.slice, or null to turn cgroups off"),
            ));
        }
    }
    if let Some(facility) = &master.syslog_facility {
        if !SYSLOG_FACILITIES.contains(&facility.as_str()) {
            problems.push(context.problem(
                "syslog-facility",
                format!(
                    "{facility:?} is not a syslog facility: use one of {}",
                    SYSLOG_FACILITIES.join(", ")
                ),
            ));
        }
    }
    problems
}

/// Returns `path` made absolute, with the directory part canonicalized (symlinks and `..`
/// resolved) and the file name kept as written.
///
/// The master config path identifies a tree's knots on their command line, so
/// `/etc/lithos/master.yaml` reached through a symlinked directory or a `..` must give the
/// same string, or a tree would not recognise its own containers and start them twice. The
/// file name itself is kept, so paths in the config stay relative to the directory the
/// operator named. When the directory cannot be resolved the lexical absolute path is used.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let lexical = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name()) else {
        return lexical;
    };
    match std::fs::canonicalize(parent) {
        Ok(dir) => dir.join(name),
        Err(_) => lexical,
    }
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn absolute_resolves_directory_symlinks_and_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("master.yaml"), "").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();

        let direct = absolute(&real.join("master.yaml"));
        let through_link = absolute(&dir.path().join("link/master.yaml"));
        let through_dotdot = absolute(&real.join("../real/master.yaml"));

        assert_eq!(through_link, direct);
        assert_eq!(through_dotdot, direct);
        assert!(direct.ends_with("real/master.yaml"));
    }

    #[test]
    fn absolute_keeps_a_missing_path_lexical() {
        let path = std::path::Path::new("/nonexistent-lithos-dir/master.yaml");
        assert_eq!(absolute(path), path);
    }
}
