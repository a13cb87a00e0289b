//! Cgroups of the tree and its instances, on cgroup v1, v2 or a hybrid of both.
//!
//! The tree's `cgroup-name` group is created below the cgroup the caller itself was started
//! in, in each hierarchy, so a tree started by a service manager with `Delegate=yes` or by a
//! test harness stays inside its parent's limits. Every instance gets one leaf group below
//! it, `CGROUP-NAME/SANDBOX:PROCESS.N.scope`, in every hierarchy used.
//!
//! Kernel paths come from the `proc_root` given to [`Cgroups::discover`] (the caller's
//! `self/cgroup` and `self/mountinfo`), so tests run the same code on fixture trees.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};

mod discover;
mod limits;

use discover::find_hierarchies;
use limits::{enable_controllers, write_v1_limits, write_v2_limits};

/// Hierarchies used when `cgroup-controllers` is empty; `name` is the `name=systemd` one.
pub const DEFAULT_CONTROLLERS: &[&str] = &["name", "cpu", "cpuacct", "memory", "blkio"];

/// Leaf of the caller's own v2 cgroup that the tree moves itself into, because a v2 group
/// with processes in it cannot enable controllers for its children.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// The v1 `cpu.shares` value the kernel starts a group with.
const DEFAULT_CPU_SHARES: u64 = 1024;
/// The v2 `cpu.weight` value the kernel starts a group with.
const DEFAULT_CPU_WEIGHT: u64 = 100;

/// Error of a cgroup operation.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup name is empty, absolute or contains `..`.
    #[error("invalid cgroup name {name:?}: expected a relative path without '..'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// `self/cgroup` or `self/mountinfo` could not be read.
    #[error("failed to read {path}")]
    ReadProc {
        /// File that could not be read.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A group directory could not be created.
    #[error("failed to create cgroup {path}")]
    Create {
        /// Group directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A control file could not be written.
    #[error("failed to write {value:?} to {path}")]
    Write {
        /// Control file.
        path: PathBuf,
        /// Value written.
        value: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A control file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// Control file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An instance group could not be removed; it usually still has processes.
    #[error("failed to remove cgroup {path}")]
    Remove {
        /// Group directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Version of a cgroup hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// A v1 hierarchy with its own set of controllers.
    V1,
    /// The unified v2 hierarchy.
    V2,
}

/// One mounted hierarchy the tree uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// Mount point of the hierarchy.
    pub mount: PathBuf,
    /// v1 controllers of this hierarchy (`name=systemd` for the named one); empty on v2.
    pub controllers: Vec<String>,
    /// The caller's own group, where the tree was started.
    pub own: PathBuf,
    /// The `cgroup-name` group below `own`.
    pub base: PathBuf,
}

impl Hierarchy {
    fn has_v1(&self, controller: &str) -> bool {
        self.version == Version::V1 && self.controllers.iter().any(|c| c == controller)
    }

    /// Tells whether the v2 hierarchy has `controller` delegated to the caller's group.
    fn has_v2(&self, controller: &str) -> Result<bool, CgroupError> {
        if self.version != Version::V2 {
            return Ok(false);
        }
        let path = self.own.join("cgroup.controllers");
        let text = read(&path)?;
        Ok(text.split_whitespace().any(|c| c == controller))
    }
}

/// The tree's `cgroup-name` groups, one per used hierarchy.
#[derive(Clone, Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
}

/// Resource limits of one instance group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; `None` removes any limit.
    pub memory: Option<u64>,
    /// v1 CPU shares (2..=262144); `None` restores the kernel's default.
    pub cpu_shares: Option<u64>,
}

/// Placement of a new process of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The v2 instance group, entered with `clone3(CLONE_INTO_CGROUP)`.
    pub v2_dir: Option<PathBuf>,
    /// `cgroup.procs` files of the v1 instance groups, joined by the child before exec.
    pub v1_procs: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds the caller's own group in each hierarchy from `proc_root/self/cgroup` and
    /// `proc_root/self/mountinfo`, and creates `name` below it.
    ///
    /// v1 hierarchies are those of `controllers` (empty means [`DEFAULT_CONTROLLERS`])
    /// that are mounted; the v2 hierarchy is used whenever it is mounted. A v2 group named
    /// [`SUPERVISOR_LEAF`] counts as its parent, so a tree that moved itself there finds
    /// the same groups after a restart.
    pub fn discover(
        proc_root: &Path,
        name: &str,
        controllers: &[String],
    ) -> Result<Cgroups, CgroupError> {
        check_name(name)?;
        let cgroup_path = proc_root.join("self/cgroup");
        let membership = read_proc(&cgroup_path)?;
        let mountinfo_path = proc_root.join("self/mountinfo");
        let mountinfo = read_proc(&mountinfo_path)?;
        let wanted: Vec<String> = if controllers.is_empty() {
            DEFAULT_CONTROLLERS.iter().map(|c| c.to_string()).collect()
        } else {
            controllers.to_vec()
        };
        let hierarchies = find_hierarchies(&membership, &mountinfo, &wanted, name);
        for hierarchy in &hierarchies {
            fs::create_dir_all(&hierarchy.base).map_err(|source| CgroupError::Create {
                path: hierarchy.base.clone(),
                source,
            })?;
        }
        Ok(Cgroups { hierarchies })
    }

    /// Returns the hierarchies in use.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// Returns the `cgroup-name` groups, one per hierarchy.
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.base.clone()).collect()
    }

    /// Returns the groups of instance `leaf`, one per hierarchy.
    pub fn instance_dirs(&self, leaf: &str) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.base.join(leaf)).collect()
    }

    /// Creates the groups of instance `leaf` and writes `limits` into them.
    ///
    /// Limits go where a hierarchy has the controller: v1 `memory.limit_in_bytes`,
    /// `memory.memsw.limit_in_bytes` (when the kernel has it) and `cpu.shares`; v2
    /// `memory.max`, `memory.swap.max` and `cpu.weight`. On v2 the controllers are first
    /// enabled in `cgroup.subtree_control` of the caller's group and of `cgroup-name`. That
    /// fails while the caller's group has processes, unless it is the root, so the tree
    /// calls [`Cgroups::enter_supervisor_leaf`] first.
    pub fn prepare_instance(&self, leaf: &str, limits: &Limits) -> Result<Placement, CgroupError> {
        check_name(leaf)?;
        let mut placement = Placement::default();
        for hierarchy in &self.hierarchies {
            let dir = hierarchy.base.join(leaf);
            match hierarchy.version {
                Version::V1 => {
                    create(&dir)?;
                    write_v1_limits(hierarchy, &dir, limits)?;
                    placement.v1_procs.push(dir.join("cgroup.procs"));
                }
                Version::V2 => {
                    let memory = hierarchy.has_v2("memory")?;
                    let cpu = hierarchy.has_v2("cpu")?;
                    // Controllers are enabled only for a limit; an unset limit is reset
                    // where an earlier start left one.
                    let wanted: Vec<&str> = [
                        ("memory", memory && limits.memory.is_some()),
                        ("cpu", cpu && limits.cpu_shares.is_some()),
                    ]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name)
                    .collect();
                    enable_controllers(hierarchy, &wanted)?;
                    create(&dir)?;
                    write_v2_limits(&dir, limits, memory, cpu)?;
                    placement.v2_dir = Some(dir);
                }
            }
        }
        Ok(placement)
    }

    /// Removes the groups of instance `leaf`; a group that is already gone is fine, one
    /// that still has processes is an error.
    pub fn remove_instance(&self, leaf: &str) -> Result<(), CgroupError> {
        check_name(leaf)?;
        for dir in self.instance_dirs(leaf) {
            match fs::remove_dir(&dir) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(CgroupError::Remove {
                        path: dir,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves the calling process into the [`SUPERVISOR_LEAF`] of its own v2 group, so that
    /// group may enable controllers for `cgroup-name`. Does nothing without a v2 hierarchy
    /// or when the caller is in the v2 root, which is exempt from that rule.
    pub fn enter_supervisor_leaf(&self) -> Result<(), CgroupError> {
        self.move_to_supervisor_leaf(std::process::id())
    }

    /// Moves process `pid` into the [`SUPERVISOR_LEAF`] of the caller's own v2 group, as
    /// [`Cgroups::enter_supervisor_leaf`] does for the calling process.
    pub fn move_to_supervisor_leaf(&self, pid: u32) -> Result<(), CgroupError> {
        for hierarchy in &self.hierarchies {
            if hierarchy.version != Version::V2 || hierarchy.own == hierarchy.mount {
                continue;
            }
            let leaf = hierarchy.own.join(SUPERVISOR_LEAF);
            create(&leaf)?;
            write(&leaf.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }
}

/// Converts v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000).
pub fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    let path = Path::new(name);
    let valid = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if valid {
        Ok(())
    } else {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
        })
    }
}

fn read_proc(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::ReadProc {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    // Control files take one write(2) of the whole value; `fs::write` does exactly that
    // without O_CREAT semantics mattering, since the kernel creates the files.
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn create(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_matches_formula_ends() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(0), 1);
    }

    #[test]
    fn bad_names_rejected() {
        for name in ["", "/abs", "a/../b", ".."] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        assert!(check_name("lithos.slice/nested").is_ok());
    }
}
