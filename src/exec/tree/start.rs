//! Start-up of one image of the tree, fresh or after its own re-exec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use slog::{error, info, warn};

use super::logging::{self, LogTarget};
use super::reexec::{self, Inherited};
use super::signals::SignalWaiter;
use super::supervisor::{error_chain, Mode, Supervisor};
use super::{setup, TreeError, TreeOptions};
use crate::exec::cgroup::Cgroups;
use crate::exec::metrics::{self, MetricsExporter};
use crate::exec::sockets::SocketTable;
use crate::model::{self, ConfigTree, LoadOptions};
use crate::state::{clock, ObserveRoots, PersistError, Persisted};

/// Name of the persisted state file in runtime-dir.
pub const STATE_FILE: &str = "state.bin";

/// Sets the tree up and runs its loop until a graceful stop finished.
pub fn run(options: &TreeOptions) -> Result<(), TreeError> {
    // Handlers first: a reload burst that arrives while this image loads its config must
    // find handlers, not the default action of SIGQUIT (a core dump).
    let signals = SignalWaiter::install().map_err(TreeError::Signals)?;
    let inherited = reexec::take_inherited();
    let program = setup::resolve_program(&options.argv0).map_err(TreeError::Setup)?;

    let master_path = model::master::absolute(&options.config);
    let tree = model::load_tree(&master_path, &LoadOptions::default()).map_err(|problems| {
        TreeError::LoadMaster {
            path: master_path.clone(),
            problems: problems.to_string(),
        }
    })?;
    let log = build_logger(options, &tree)?;
    let master = &tree.master;
    let dirs = [
        master.runtime_dir.as_path(),
        master.state_dir.as_path(),
        master.mount_dir.as_path(),
        master.default_log_dir.as_path(),
        master.stdio_log_dir.as_path(),
    ];
    setup::create_dirs(&dirs).map_err(TreeError::Setup)?;
    let lock = take_lock(&inherited, &master.runtime_dir)?;
    if let Err(error) = setup::write_pid_file(&master.runtime_dir) {
        // After a re-exec the file already names this pid; a full runtime dir must not
        // take the supervisor down then.
        if setup::read_pid(&master.runtime_dir) != Some(std::process::id() as i32) {
            return Err(TreeError::Setup(error));
        }
        warn!(log, "failed to rewrite the pid file, it still names this tree";
            "error" => %error_chain(&error));
    }

    let sockets = recover_sockets(&log, &inherited);
    let cgroups = discover_cgroups(&tree)?;
    if cgroups.as_ref().is_some_and(|c| c.hierarchies().is_empty()) {
        // For example a tree started in a mount namespace with its own /sys: limits would
        // silently not apply, so say so (cgroup-name: null turns cgroups off on purpose).
        warn!(log, "no cgroup hierarchy of cgroup-controllers is visible, containers run without cgroup limits";
            "cgroup-name" => tree.master.cgroup_name.as_deref().unwrap_or_default(),
            "controllers" => tree.master.cgroup_controllers.join(","));
    }
    let state_file = master.runtime_dir.join(STATE_FILE);
    let (mut persisted, loaded) = load_persisted(&log, &state_file);
    persisted.generation += 1;
    if inherited.is_none() {
        persisted.tree_restarts += 1;
    }
    let desired = super::desired::build_desired(&tree, &mut persisted);

    let event = if inherited.is_some() {
        "reloaded"
    } else {
        "started"
    };
    info!(log, "lithos_tree {event}"; "version" => env!("CARGO_PKG_VERSION"),
        "pid" => std::process::id(), "master" => %tree.master_path.display(),
        "generation" => persisted.generation, "instances" => desired.instances.len());
    log_problems(&log, &tree);
    write_config_log(&log, &tree);

    let knot_binary = program
        .parent()
        .map(|dir| dir.join("lithos_knot"))
        .unwrap_or_else(|| PathBuf::from("lithos_knot"));
    let pending_cgroups = leftover_cgroups(cgroups.as_ref(), &desired, &persisted);
    let metrics = MetricsExporter::new(
        tree.master.metrics_file.clone(),
        Some(metrics::cantal_path(&tree.master.runtime_dir)),
    );
    let mut supervisor = Supervisor {
        log,
        tree,
        desired,
        persisted,
        state_file,
        sockets,
        cgroups,
        roots: ObserveRoots::default(),
        knot_binary,
        program,
        args: options.args.clone(),
        lock,
        signals,
        notifier: super::notify::Notifier::from_env(),
        mode: Mode::Running,
        watchers: BTreeMap::new(),
        reaped: BTreeMap::new(),
        reported: BTreeMap::new(),
        passes: 0,
        scan_for_orphans: inherited.is_none() || !loaded,
        last_notified_status: None,
        failing_writes: Default::default(),
        pending_cgroups,
        metrics,
        metrics_failing: false,
    };
    supervisor.run()
}

/// Instance cgroups that no desired instance and no record explains: left by a retirement
/// whose cgroup was still busy when the tree was killed or re-executed. They are removed
/// like the busy cgroups of this tree's own retirements. Command cgroups belong to
/// lithos_cmd and are left alone.
fn leftover_cgroups(
    cgroups: Option<&Cgroups>,
    desired: &crate::reconcile::Desired,
    persisted: &Persisted,
) -> BTreeMap<crate::model::spec::InstanceName, u32> {
    let mut found = BTreeMap::new();
    let Some(cgroups) = cgroups else {
        return found;
    };
    for base in cgroups.base_dirs() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let leaf = entry.file_name().to_string_lossy().into_owned();
            let Some((sandbox, process)) = leaf
                .strip_suffix(".scope")
                .and_then(|stem| stem.split_once(':'))
            else {
                continue;
            };
            // A cgroup with processes belongs to a live container, which the reconciler
            // stops and retires if it is not desired.
            let busy = std::fs::read_to_string(entry.path().join("cgroup.procs"))
                .map_or(true, |procs| !procs.trim().is_empty());
            if process.starts_with("cmd.") || busy {
                continue;
            }
            let Ok(name) = format!("{sandbox}/{process}").parse() else {
                continue;
            };
            if !desired.instances.contains_key(&name) && !persisted.instances.contains_key(&name) {
                found.insert(name, 0);
            }
        }
    }
    found
}

fn build_logger(options: &TreeOptions, tree: &ConfigTree) -> Result<slog::Logger, TreeError> {
    let master = &tree.master;
    let level_name = options.log_level.as_deref().unwrap_or(&master.log_level);
    let level = logging::parse_level(level_name).map_err(TreeError::Logging)?;
    let target = if options.log_stderr {
        LogTarget::Stderr
    } else if let Some(facility) = &master.syslog_facility {
        LogTarget::Syslog {
            facility: facility.clone(),
            name: master.syslog_name.clone(),
        }
    } else {
        LogTarget::File(master.log_file.clone())
    };
    logging::build_logger(&target, level).map_err(TreeError::Logging)
}

fn take_lock(
    inherited: &Option<Inherited>,
    runtime_dir: &Path,
) -> Result<std::fs::File, TreeError> {
    match inherited.as_ref().and_then(|inherited| inherited.lock) {
        // SAFETY: the previous image passed this descriptor for the lock and nothing in
        // this image has taken it yet.
        Some(fd) => Ok(unsafe { setup::adopt_lock(fd) }),
        None => setup::acquire_lock(runtime_dir).map_err(TreeError::Setup),
    }
}

fn recover_sockets(log: &slog::Logger, inherited: &Option<Inherited>) -> SocketTable {
    let Some(inherited) = inherited else {
        return SocketTable::new();
    };
    // SAFETY: the previous image passed these descriptors for its sockets and nothing in
    // this image has taken them yet.
    let (table, errors) = unsafe { SocketTable::recover(&inherited.sockets) };
    for error in errors {
        warn!(log, "dropped an inherited descriptor"; "error" => %error);
    }
    for address in table.addresses() {
        info!(log, "kept listening socket across reload"; "address" => %address);
    }
    table
}

fn discover_cgroups(tree: &ConfigTree) -> Result<Option<Cgroups>, TreeError> {
    let Some(name) = &tree.master.cgroup_name else {
        return Ok(None);
    };
    let controllers = &tree.master.cgroup_controllers;
    let cgroups = Cgroups::discover(Path::new("/proc"), name, controllers)
        .map_err(|source| TreeError::Cgroups { source })?;
    cgroups
        .enter_supervisor_leaf()
        .map_err(|source| TreeError::Cgroups { source })?;
    Ok(Some(cgroups))
}

/// Loads the persisted state; the flag is false when it could not be read.
fn load_persisted(log: &slog::Logger, path: &Path) -> (Persisted, bool) {
    let (mut persisted, error) = Persisted::load(path);
    let loaded = error.is_none();
    match error {
        // A first start on this runtime dir: nothing was lost.
        Some(PersistError::Missing { .. }) => {
            info!(log, "no persisted state yet, starting fresh"; "path" => %path.display());
        }
        Some(error) => {
            warn!(log, "starting without the persisted state: restart backoff and last good config are lost";
                "error" => %error_chain(&error));
        }
        None => {}
    }
    if let Ok(boot_id) = clock::boot_id(Path::new("/proc")) {
        if persisted.set_boot_id(&boot_id) {
            info!(
                log,
                "persisted state is from an earlier boot, its processes are dropped"
            );
        }
    }
    (persisted, loaded)
}

fn log_problems(log: &slog::Logger, tree: &ConfigTree) {
    for problem in &tree.problems.0 {
        error!(log, "config problem, the last good config stays in effect"; "problem" => %problem);
    }
}

/// Appends each loaded sandbox's processes config to config-log-dir.
fn write_config_log(log: &slog::Logger, tree: &ConfigTree) {
    let Some(dir) = &tree.master.config_log_dir else {
        return;
    };
    let now = SystemTime::now();
    for (sandbox, load) in &tree.sandboxes {
        if !matches!(load, model::SandboxLoad::Loaded { .. }) {
            continue;
        }
        let path = super::paths::processes_file(&tree.master, sandbox);
        let written = super::config_log::processes_json(&path)
            .and_then(|json| super::config_log::append(dir, sandbox, &json, now));
        if let Err(error) = written {
            warn!(log, "failed to write the config log";
                "sandbox" => sandbox.as_str(), "error" => %error_chain(&error));
        }
    }
}
