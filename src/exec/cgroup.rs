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

/// Hierarchies used when `cgroup-controllers` is empty; `name` is the `name=systemd` one.
pub const DEFAULT_CONTROLLERS: &[&str] = &["name", "cpu", "cpuacct", "memory", "blkio"];

/// Leaf of the caller's own v2 cgroup that the tree moves itself into, because a v2 group
/// with processes in it cannot enable controllers for its children.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// The v1 `cpu.shares` value the kernel starts a group with.
const DEFAULT_CPU_SHARES: u64 = 1024;

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

/// Where a new process of an instance must be placed.
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
    /// `memory.max`, `memory.swap.max` and `cpu.weight`. On v2 the controllers are enabled
    /// in `cgroup.subtree_control` of the caller's group and of `cgroup-name` first; the
    /// caller's group must then have no processes (see [`Cgroups::enter_supervisor_leaf`])
    /// unless it is the root.
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
                    let memory = limits.memory.is_some() && hierarchy.has_v2("memory")?;
                    let cpu = limits.cpu_shares.is_some() && hierarchy.has_v2("cpu")?;
                    let wanted: Vec<&str> = [("memory", memory), ("cpu", cpu)]
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

fn write_v1_limits(hierarchy: &Hierarchy, dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if hierarchy.has_v1("memory") {
        write_v1_memory(dir, limits.memory)?;
    }
    if hierarchy.has_v1("cpu") {
        let shares = limits.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES);
        write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    Ok(())
}

/// Writes the v1 memory limit and, when the kernel has swap accounting, the same value as
/// the memory+swap limit. The kernel keeps `memory <= memsw` at every step, so a raised
/// limit goes to memsw first and a lowered one to memory first.
fn write_v1_memory(dir: &Path, limit: Option<u64>) -> Result<(), CgroupError> {
    let memory = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let value = limit.map_or_else(|| "-1".to_string(), |l| l.to_string());
    if !memsw.exists() {
        return write(&memory, &value);
    }
    let current: u64 = read(&memory)?.trim().parse().unwrap_or(u64::MAX);
    let raising = limit.is_none_or(|l| l >= current);
    if raising {
        write(&memsw, &value)?;
        write(&memory, &value)
    } else {
        write(&memory, &value)?;
        write(&memsw, &value)
    }
}

fn write_v2_limits(
    dir: &Path,
    limits: &Limits,
    memory: bool,
    cpu: bool,
) -> Result<(), CgroupError> {
    if memory {
        let value = limits
            .memory
            .map_or_else(|| "max".to_string(), |l| l.to_string());
        write(&dir.join("memory.max"), &value)?;
        // Zero swap matches v1, where memsw equal to the memory limit leaves no swap.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, if limits.memory.is_some() { "0" } else { "max" })?;
        }
    }
    if cpu {
        let weight = cpu_weight(limits.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES));
        write(&dir.join("cpu.weight"), &weight.to_string())?;
    }
    Ok(())
}

/// Enables `controllers` from the caller's own v2 group down to `cgroup-name`, so the
/// instance groups get the control files.
fn enable_controllers(hierarchy: &Hierarchy, controllers: &[&str]) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let mut dir = hierarchy.own.clone();
    let relative = hierarchy
        .base
        .strip_prefix(&hierarchy.own)
        .unwrap_or(Path::new(""));
    let mut chain = vec![dir.clone()];
    for component in relative.components() {
        dir.push(component);
        chain.push(dir.clone());
    }
    // The last group of the chain is cgroup-name itself, whose children are the instances.
    for group in chain {
        let control = group.join("cgroup.subtree_control");
        let enabled = read(&control)?;
        for controller in controllers {
            if !enabled.split_whitespace().any(|c| c == *controller) {
                write(&control, &format!("+{controller}"))?;
            }
        }
    }
    Ok(())
}

/// One line of `/proc/self/mountinfo` that mounts a cgroup hierarchy.
struct CgroupMount {
    version: Version,
    root: String,
    mount_point: PathBuf,
    super_options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let tail: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || tail.len() < 3 {
            continue;
        }
        let version = match tail[0] {
            "cgroup" => Version::V1,
            "cgroup2" => Version::V2,
            _ => continue,
        };
        mounts.push(CgroupMount {
            version,
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            super_options: tail[2].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// Decodes the octal escapes (`\040` for a space) of mountinfo paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[i], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find_hierarchies(
    membership: &str,
    mountinfo: &str,
    wanted: &[String],
    name: &str,
) -> Vec<Hierarchy> {
    let mounts = parse_mountinfo(mountinfo);
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let controllers: Vec<String> = list
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let version = if list.is_empty() {
            Version::V2
        } else {
            Version::V1
        };
        if version == Version::V1
            && !controllers
                .iter()
                .any(|c| wanted.iter().any(|w| matches_wanted(w, c)))
        {
            continue;
        }
        let mount = mounts.iter().find(|m| {
            m.version == version
                && (version == Version::V2
                    || controllers.iter().all(|c| m.super_options.contains(c)))
                && is_within(path, &m.root)
        });
        let Some(mount) = mount else { continue };
        let mut own = mount.mount_point.clone();
        let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
        own.extend(Path::new(relative.trim_start_matches('/')).components());
        if version == Version::V2 && own.file_name().is_some_and(|n| n == SUPERVISOR_LEAF) {
            own.pop();
        }
        if found.iter().any(|h| h.mount == mount.mount_point) {
            continue;
        }
        found.push(Hierarchy {
            version,
            mount: mount.mount_point.clone(),
            controllers: if version == Version::V1 {
                controllers
            } else {
                Vec::new()
            },
            base: own.join(name),
            own,
        });
    }
    found
}

fn matches_wanted(wanted: &str, controller: &str) -> bool {
    if wanted == "name" {
        controller == "name=systemd"
    } else {
        wanted == controller
    }
}

fn is_within(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n4:memory:/jobs/42\n2:cpu,cpuacct:/\n7:blkio:/\n0::/svc\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn wanted(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn cpu_weight_matches_formula_ends() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(0), 1);
    }

    #[test]
    fn hierarchies_below_own_group() {
        let found = find_hierarchies(
            HYBRID_CGROUP,
            HYBRID_MOUNTS,
            &wanted(DEFAULT_CONTROLLERS),
            "lithos",
        );
        let bases: Vec<_> = found
            .iter()
            .map(|h| h.base.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            bases,
            [
                "/sys/fs/cgroup/systemd/lithos",
                "/sys/fs/cgroup/memory/jobs/42/lithos",
                "/sys/fs/cgroup/cpu,cpuacct/lithos",
                "/sys/fs/cgroup/unified/svc/lithos",
            ]
        );
    }

    #[test]
    fn unmounted_controller_skipped() {
        // blkio is listed in /proc/self/cgroup but not mounted.
        let found = find_hierarchies(HYBRID_CGROUP, HYBRID_MOUNTS, &wanted(&["blkio"]), "x");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version, Version::V2);
    }

    #[test]
    fn supervisor_leaf_counts_as_parent() {
        let found = find_hierarchies(
            "0::/svc/supervisor\n",
            HYBRID_MOUNTS,
            &wanted(&["name"]),
            "t",
        );
        assert_eq!(found[0].base, Path::new("/sys/fs/cgroup/unified/svc/t"));
    }

    #[test]
    fn namespaced_mount_root_stripped() {
        let mounts = "50 1 0:40 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let found = find_hierarchies("0::/outer/inner\n", mounts, &[], "t");
        assert_eq!(found[0].own, Path::new("/sys/fs/cgroup/inner"));
    }

    #[test]
    fn escaped_mount_point_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn bad_names_rejected() {
        for name in ["", "/abs", "a/../b", ".."] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        assert!(check_name("lithos.slice/nested").is_ok());
    }
}
