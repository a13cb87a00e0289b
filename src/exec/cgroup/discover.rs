//! Finding the caller's own group in each mounted hierarchy, from `self/cgroup` and
//! `self/mountinfo`.

use std::path::{Path, PathBuf};

use super::{Hierarchy, Version, SUPERVISOR_LEAF};

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

pub(super) fn find_hierarchies(
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
    use crate::exec::cgroup::DEFAULT_CONTROLLERS;

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
}
