//! The observer: the tree's children and the knots of its master config, read from procfs
//! and the cgroup file system.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use crate::model::spec::InstanceName;

use super::procfs::{parse_knot_args, read_cmdline, read_stat, Stat};
use super::{ObserveRoots, Observed, ObservedProcess, ProcId, ProcessKind};

/// Failure to build an [`Observed`] snapshot; a process that vanishes while it is read is
/// not an error.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The procfs root could not be listed.
    #[error("failed to list processes in {path}")]
    ListProcesses {
        /// The procfs root.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The tree's own command line could not be read, so forking children cannot be distinguished.
    #[error("failed to read the command line of the tree (pid {pid}) in {path}")]
    ReadTreeCmdline {
        /// The tree's pid.
        pid: i32,
        /// The procfs root.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory or its `cgroup.procs` could not be read.
    #[error("failed to read cgroup {path}")]
    ReadCgroup {
        /// The cgroup directory or file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// A process read from procfs, before it is classified.
struct ProcInfo {
    id: ProcId,
    stat: Stat,
    cmdline: Vec<String>,
}

/// Builds a snapshot of the tree's children and of the knots of `master` that are not its
/// children.
///
/// Children are the processes whose parent is `tree_pid`. Knots that are not children (left
/// running by a previous tree) are looked up in `cgroup.procs` of every cgroup below
/// `cgroup_dirs` (v1 hierarchies and the v2 unified tree alike), or, when `cgroup_dirs` is
/// empty because cgroups are off, in every process of `proc_root`. A relative entry of
/// `cgroup_dirs` is taken relative to `roots.cgroup_root`; a missing cgroup directory just
/// holds no knots. Knots of another master config and commands of `lithos_cmd`
/// (`SANDBOX/cmd.NAME.PID`) that are not children are left out: they are not this tree's.
///
/// # Errors
/// Fails when `proc_root` cannot be listed, when the tree's own command line cannot be read,
/// or when a cgroup directory exists but cannot be read.
pub fn observe(
    roots: &ObserveRoots,
    tree_pid: i32,
    master: &Path,
    cgroup_dirs: &[PathBuf],
) -> Result<Observed, ObserveError> {
    let proc_root = &roots.proc_root;
    let tree_cmdline = read_cmdline(&proc_root.join(tree_pid.to_string())).map_err(|source| {
        ObserveError::ReadTreeCmdline {
            pid: tree_pid,
            path: proc_root.clone(),
            source,
        }
    })?;
    let all_pids = list_pids(proc_root)?;
    let scan_all = cgroup_dirs.is_empty();
    let mut children = Vec::new();
    let mut others = BTreeMap::new();
    for pid in all_pids {
        let Some(info) = read_process(proc_root, pid, |stat| scan_all || stat.ppid == tree_pid)
        else {
            continue;
        };
        if info.stat.ppid == tree_pid {
            children.push(info);
        } else if scan_all {
            others.insert(pid, info);
        }
    }
    if !scan_all {
        for pid in cgroup_pids(&roots.cgroup_root, cgroup_dirs)? {
            let is_child = children.iter().any(|child| child.id.pid == pid);
            if !is_child {
                if let Some(info) = read_process(proc_root, pid, |_| true) {
                    others.insert(pid, info);
                }
            }
        }
    }
    let mut processes: Vec<ObservedProcess> = children
        .into_iter()
        .map(|child| classify_child(child, &tree_cmdline, master))
        .collect();
    processes.extend(adoptable_knots(&others, tree_pid, master));
    processes.sort_by_key(|process| process.id);
    Ok(Observed { processes })
}

/// Builds the same snapshot as [`observe`] from the tree's children and the `known`
/// processes only, without listing every process or walking the cgroups.
///
/// A tree cannot gain a knot that is not its child after its first look: it starts knots
/// as its children, and the knots a previous tree left behind are found by the first
/// [`observe`] and recorded. So later passes read `/proc/TREE/task/*/children` and the
/// recorded pids, which costs a few reads instead of a scan of every process (and of every
/// instance cgroup). Falls back to [`observe`] when the kernel has no `children` files.
///
/// # Errors
/// As [`observe`].
pub fn observe_known(
    roots: &ObserveRoots,
    tree_pid: i32,
    master: &Path,
    cgroup_dirs: &[PathBuf],
    known: &[ProcId],
) -> Result<Observed, ObserveError> {
    let proc_root = &roots.proc_root;
    let Some(child_pids) = list_children(proc_root, tree_pid) else {
        return observe(roots, tree_pid, master, cgroup_dirs);
    };
    let tree_cmdline = read_cmdline(&proc_root.join(tree_pid.to_string())).map_err(|source| {
        ObserveError::ReadTreeCmdline {
            pid: tree_pid,
            path: proc_root.clone(),
            source,
        }
    })?;
    let mut processes = Vec::new();
    for &pid in &child_pids {
        // A child reaped between the two reads is gone, not a child of someone else.
        if let Some(info) = read_process(proc_root, pid, |stat| stat.ppid == tree_pid) {
            if info.stat.ppid == tree_pid {
                processes.push(classify_child(info, &tree_cmdline, master));
            }
        }
    }
    let mut others = BTreeMap::new();
    for id in known {
        if child_pids.contains(&id.pid) || id.pid <= 0 {
            continue;
        }
        if let Some(info) = read_process(proc_root, id.pid, |_| true) {
            if info.id == *id {
                others.insert(id.pid, info);
            }
        }
    }
    processes.extend(adoptable_knots(&others, tree_pid, master));
    processes.sort_by_key(|process| process.id);
    Ok(Observed { processes })
}

/// Children of `pid` from the `children` file of each of its threads; `None` when the
/// kernel does not provide them.
fn list_children(proc_root: &Path, pid: i32) -> Option<BTreeSet<i32>> {
    let task_dir = proc_root.join(pid.to_string()).join("task");
    let mut children = BTreeSet::new();
    for entry in std::fs::read_dir(&task_dir).ok()? {
        let Ok(entry) = entry else { continue };
        let text = match std::fs::read_to_string(entry.path().join("children")) {
            Ok(text) => text,
            // A thread that ended while the list was read has no children left.
            Err(error) if error.kind() == io::ErrorKind::NotFound && entry.path().exists() => {
                return None
            }
            Err(_) => continue,
        };
        children.extend(
            text.split_whitespace()
                .filter_map(|word| word.parse::<i32>().ok()),
        );
    }
    Some(children)
}

/// Lists the numeric entries of the procfs root.
fn list_pids(proc_root: &Path) -> Result<Vec<i32>, ObserveError> {
    let list_error = |source| ObserveError::ListProcesses {
        path: proc_root.to_path_buf(),
        source,
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(proc_root).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Reads one process; `None` when it vanished or its files are unreadable or malformed.
///
/// The command line is read only when `wants_cmdline` accepts the stat, because most
/// processes on a host are neither children nor candidate knots.
fn read_process(
    proc_root: &Path,
    pid: i32,
    wants_cmdline: impl Fn(&Stat) -> bool,
) -> Option<ProcInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat = read_stat(&dir).ok()??;
    let id = ProcId {
        pid,
        start_time: stat.start_time,
    };
    let cmdline = if wants_cmdline(&stat) {
        // A failed read means the process went away; an empty command line would make a
        // knot look like an unknown child.
        read_cmdline(&dir).ok()?
    } else {
        Vec::new()
    };
    Some(ProcInfo { id, stat, cmdline })
}

/// Returns the instance name of a knot of `master` (never a `lithos_cmd` command).
fn knot_of_master(cmdline: &[String], master: &Path) -> Option<(InstanceName, String)> {
    let args = parse_knot_args(cmdline)?;
    if Path::new(&args.master) != master {
        return None;
    }
    let name: InstanceName = args.name.parse().ok()?;
    if name.process.starts_with("cmd.") {
        return None;
    }
    Some((name, args.fingerprint))
}

fn classify_child(info: ProcInfo, tree_cmdline: &[String], master: &Path) -> ObservedProcess {
    let kind = if !info.cmdline.is_empty() && info.cmdline == tree_cmdline {
        ProcessKind::Forking
    } else if let Some((name, fingerprint)) = knot_of_master(&info.cmdline, master) {
        ProcessKind::Knot { name, fingerprint }
    } else {
        ProcessKind::Unknown
    };
    ObservedProcess {
        id: info.id,
        kind,
        is_child: true,
        zombie: info.stat.is_zombie(),
    }
}

/// Picks the knots of `master` among processes that are not the tree's children.
///
/// A knot's own child between fork and exec carries the knot's command line; it is skipped
/// by checking whether its parent is a knot of the same name.
fn adoptable_knots<'a>(
    others: &'a BTreeMap<i32, ProcInfo>,
    tree_pid: i32,
    master: &'a Path,
) -> impl Iterator<Item = ObservedProcess> + 'a {
    others.values().filter_map(move |info| {
        if info.id.pid == tree_pid {
            return None;
        }
        let (name, fingerprint) = knot_of_master(&info.cmdline, master)?;
        let parent_same = others
            .get(&info.stat.ppid)
            .and_then(|parent| knot_of_master(&parent.cmdline, master))
            .is_some_and(|(parent_name, _)| parent_name == name);
        if parent_same {
            return None;
        }
        Some(ObservedProcess {
            id: info.id,
            kind: ProcessKind::Knot { name, fingerprint },
            is_child: false,
            zombie: info.stat.is_zombie(),
        })
    })
}

/// Collects the pids in `cgroup.procs` of every cgroup at or below `cgroup_dirs`.
fn cgroup_pids(cgroup_root: &Path, cgroup_dirs: &[PathBuf]) -> Result<BTreeSet<i32>, ObserveError> {
    let mut pids = BTreeSet::new();
    for dir in cgroup_dirs {
        collect_cgroup_pids(&cgroup_root.join(dir), &mut pids)?;
    }
    Ok(pids)
}

fn collect_cgroup_pids(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<(), ObserveError> {
    let cgroup_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ObserveError::ReadCgroup { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A cgroup removed while it is walked, or never created, contains no processes.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(cgroup_error(dir)(error)),
    };
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(text) => pids.extend(
            text.lines()
                .filter_map(|line| line.trim().parse::<i32>().ok()),
        ),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(cgroup_error(&procs)(error)),
    }
    for entry in entries {
        let entry = entry.map_err(cgroup_error(dir))?;
        let is_dir = entry.file_type().map_err(cgroup_error(dir))?.is_dir();
        if is_dir {
            collect_cgroup_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}
