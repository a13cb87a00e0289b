//! cgroup v2 code paths on the fixture tree in `fixtures/cgroup-v2` (this machine's
//! unified hierarchy has neither the memory nor the cpu controller).

use std::fs;
use std::path::{Path, PathBuf};

use lithos::exec::cgroup::{Cgroups, Limits, Version};

/// Copies the fixture into a temporary dir and writes its mountinfo for that location.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cgroup-v2");
    copy_tree(&source, tmp.path());
    let proc_root = tmp.path().join("proc");
    let cgroup_root = tmp.path().join("sys/fs/cgroup");
    let template = fs::read_to_string(proc_root.join("self/mountinfo.in")).unwrap();
    let mountinfo = template.replace("@ROOT@", cgroup_root.to_str().unwrap());
    fs::write(proc_root.join("self/mountinfo"), mountinfo).unwrap();
    (tmp, proc_root, cgroup_root)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn base_below_own_group() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    let hierarchies = cgroups.hierarchies();
    assert_eq!(hierarchies.len(), 1);
    assert_eq!(hierarchies[0].version, Version::V2);
    let service = cgroup_root.join("service.slice/lithos.service");
    assert_eq!(cgroups.base_dirs(), [service.join("lithos-test")]);
    assert_eq!(
        cgroups.instance_dirs("sb:app.0.scope"),
        [service.join("lithos-test/sb:app.0.scope")]
    );
}

#[test]
fn v2_limits_written() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    let limits = Limits {
        memory: Some(256 << 20),
        cpu_shares: Some(2048),
    };
    let placement = cgroups.prepare_instance("sb:app.0.scope", &limits).unwrap();
    let service = cgroup_root.join("service.slice/lithos.service");
    let leaf = service.join("lithos-test/sb:app.0.scope");
    assert_eq!(placement.v2_dir.as_deref(), Some(leaf.as_path()));
    assert!(placement.v1_procs.is_empty());
    assert_eq!(read(&leaf.join("memory.max")), "268435456");
    assert_eq!(read(&leaf.join("memory.swap.max")), "0");
    assert_eq!(read(&leaf.join("cpu.weight")), "79");
    assert_eq!(
        read(&service.join("cgroup.subtree_control")),
        "+memory +cpu"
    );
    assert_eq!(
        read(&service.join("lithos-test/cgroup.subtree_control")),
        "+memory +cpu"
    );
}

#[test]
fn v2_limits_reset_when_unset() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    let limits = Limits {
        memory: Some(1 << 30),
        cpu_shares: Some(2),
    };
    cgroups.prepare_instance("sb:app.0.scope", &limits).unwrap();
    let leaf = cgroup_root.join("service.slice/lithos.service/lithos-test/sb:app.0.scope");
    assert_eq!(read(&leaf.join("cpu.weight")), "1");
    // No limit at the next start resets what the last start wrote.
    cgroups
        .prepare_instance("sb:app.0.scope", &Limits::default())
        .unwrap();
    assert_eq!(read(&leaf.join("memory.max")), "max");
    assert_eq!(read(&leaf.join("memory.swap.max")), "max");
    assert_eq!(read(&leaf.join("cpu.weight")), "100");
}

#[test]
fn v2_controller_missing_skipped() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let service = cgroup_root.join("service.slice/lithos.service");
    fs::write(service.join("cgroup.controllers"), "io pids\n").unwrap();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    let limits = Limits {
        memory: Some(1 << 20),
        cpu_shares: Some(100),
    };
    cgroups.prepare_instance("sb:app.0.scope", &limits).unwrap();
    let leaf = service.join("lithos-test/sb:app.0.scope");
    assert_eq!(read(&leaf.join("memory.max")), "max");
    assert_eq!(read(&leaf.join("cpu.weight")), "100");
    assert_eq!(read(&service.join("cgroup.subtree_control")), "");
}

#[test]
fn v2_write_error_reported() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    let leaf = cgroup_root.join("service.slice/lithos.service/lithos-test/sb:app.0.scope");
    // A directory where the control file should be makes the write fail.
    fs::remove_file(leaf.join("memory.max")).unwrap();
    fs::create_dir(leaf.join("memory.max")).unwrap();
    let limits = Limits {
        memory: Some(1 << 20),
        cpu_shares: None,
    };
    let error = cgroups
        .prepare_instance("sb:app.0.scope", &limits)
        .unwrap_err();
    assert!(
        error.to_string().contains("failed to write \"1048576\" to"),
        "{error}"
    );
    assert!(error.to_string().contains("memory.max"), "{error}");
}

#[test]
fn supervisor_leaf_keeps_base() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    cgroups.move_to_supervisor_leaf(4242).unwrap();
    let service = cgroup_root.join("service.slice/lithos.service");
    assert_eq!(read(&service.join("supervisor/cgroup.procs")), "4242");
    fs::write(
        proc_root.join("self/cgroup"),
        "0::/service.slice/lithos.service/supervisor\n",
    )
    .unwrap();
    let again = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    assert_eq!(again.base_dirs(), cgroups.base_dirs());
}

#[test]
fn remove_instance_removes_empty_group() {
    let (_tmp, proc_root, cgroup_root) = fixture();
    let cgroups = Cgroups::discover(&proc_root, "lithos-test", &[]).unwrap();
    cgroups
        .prepare_instance("sb:new.0.scope", &Limits::default())
        .unwrap();
    let leaf = cgroup_root.join("service.slice/lithos.service/lithos-test/sb:new.0.scope");
    assert!(leaf.is_dir());
    cgroups.remove_instance("sb:new.0.scope").unwrap();
    assert!(!leaf.exists());
    cgroups.remove_instance("sb:new.0.scope").unwrap();
    // A real group with processes refuses rmdir; files in the fixture do the same.
    assert!(cgroups.remove_instance("sb:app.0.scope").is_err());
}
