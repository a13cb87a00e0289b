//! cgroup v1 limits on this machine's real hierarchies, and a knot placed in them, as root.

mod knot_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lithos::exec::cgroup::{Cgroups, Limits, Version};
use lithos::model::spec::CgroupSpec;

/// Removes the test's groups even when an assertion fails.
struct Cleanup(Cgroups, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for leaf in &self.1 {
            let _ = self.0.remove_instance(leaf);
        }
        for base in self.0.base_dirs() {
            let _ = fs::remove_dir(base);
        }
    }
}

fn controllers() -> Vec<String> {
    ["name", "cpu", "cpuacct", "memory", "blkio"]
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn v1_dir(cgroups: &Cgroups, controller: &str, leaf: &str) -> Option<PathBuf> {
    cgroups
        .hierarchies()
        .iter()
        .find(|h| h.version == Version::V1 && h.controllers.iter().any(|c| c == controller))
        .map(|h| h.base.join(leaf))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn v1_limits_raised_and_lowered() {
    if !knot_support::root_or_skip("create cgroups") {
        return;
    }
    let name = format!("lithos-test-v1-{}", std::process::id());
    let cgroups = Cgroups::discover(Path::new("/proc"), &name, &controllers()).unwrap();
    let leaf = "sb:limits.0.scope";
    let _cleanup = Cleanup(cgroups.clone(), vec![leaf.to_string()]);
    let Some(memory) = v1_dir(&cgroups, "memory", leaf) else {
        println!("skipped: no v1 memory hierarchy");
        return;
    };
    let own_memory = cgroups
        .hierarchies()
        .iter()
        .find(|h| h.controllers.contains(&"memory".into()))
        .unwrap();
    assert!(
        own_memory.base.starts_with(&own_memory.own),
        "base not below the caller's group"
    );

    let memsw = memory.join("memory.memsw.limit_in_bytes");
    for (limit, shares) in [(64u64 << 20, 512), (128 << 20, 2048), (32 << 20, 100)] {
        let limits = Limits {
            memory: Some(limit),
            cpu_shares: Some(shares),
        };
        let placement = cgroups.prepare_instance(leaf, &limits).unwrap();
        assert!(placement.v1_procs.contains(&memory.join("cgroup.procs")));
        assert_eq!(
            read(&memory.join("memory.limit_in_bytes")),
            limit.to_string()
        );
        if memsw.exists() {
            assert_eq!(read(&memsw), limit.to_string());
        }
        if let Some(cpu) = v1_dir(&cgroups, "cpu", leaf) {
            assert_eq!(read(&cpu.join("cpu.shares")), shares.to_string());
        }
    }
    cgroups.prepare_instance(leaf, &Limits::default()).unwrap();
    let unlimited: u64 = read(&memory.join("memory.limit_in_bytes")).parse().unwrap();
    assert!(unlimited > 1 << 60, "limit not removed: {unlimited}");
}

#[test]
fn knot_runs_in_instance_groups() {
    if !knot_support::root_or_skip("create cgroups") {
        return;
    }
    let tmp = knot_support::container_root();
    let name = format!("lithos-test-knot-{}", std::process::id());
    let leaf = "sb:cg.0.scope";
    let mut spec = knot_support::spec(tmp.path(), "sb/cg.0", "/bin/cat", &["/proc/self/cgroup"]);
    spec.container.memory_limit = Some(48 << 20);
    spec.cgroup = Some(CgroupSpec {
        parent: name.clone(),
        controllers: controllers(),
        leaf: leaf.to_string(),
    });
    let cgroups = Cgroups::discover(Path::new("/proc"), &name, &controllers()).unwrap();
    let _cleanup = Cleanup(cgroups.clone(), vec![leaf.to_string()]);
    let pid = knot_support::launch(&spec, Some(&cgroups));
    knot_support::wait_exit(pid, Duration::from_secs(20));
    let log = fs::read_to_string(&spec.stdio_log).unwrap();
    for controller in [":memory:", ":cpu:", ":name=systemd:", ":blkio:"] {
        let line = log
            .lines()
            .find(|l| l.contains(controller))
            .unwrap_or_else(|| panic!("{controller}: {log}"));
        assert!(line.ends_with(&format!("/{name}/{leaf}")), "{line}");
    }
    let unified = log.lines().find(|l| l.starts_with("0::")).unwrap();
    assert!(unified.ends_with(&format!("/{name}/{leaf}")), "{unified}");
    let memory = v1_dir(&cgroups, "memory", leaf).unwrap();
    assert_eq!(
        read(&memory.join("memory.limit_in_bytes")),
        (48u64 << 20).to_string()
    );
}
