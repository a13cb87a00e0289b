//! `spawn_knot` on a fake knot binary (a shell script recording what it got), as root.

mod knot_support;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use lithos::exec::cgroup::Cgroups;
use lithos::exec::spawn::{spawn_knot, SpawnRequest};
use lithos::model::spec::{CgroupSpec, LaunchSpec};

fn fake_knot(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("fake_knot");
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let text = format!(
        "#!/bin/sh\n\
         o={out}\n\
         echo \"$@\" > $o/args\n\
         env > $o/env\n\
         for f in /proc/self/fd/*; do echo ${{f##*/}}; done > $o/fds\n\
         readlink /proc/self/ns/pid > $o/pidns\n\
         cat /proc/self/cgroup > $o/cgroup\n\
         eval \"cat <&$8\" > $o/config\n\
         echo hello from the knot\n",
        out = out.display()
    );
    fs::write(&script, text).unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn spawn(
    spec: &LaunchSpec,
    script: &Path,
    cgroups: Option<&Cgroups>,
    sockets: &[(i32, i32)],
) -> i32 {
    let extra = [("LITHOS_TEST_EXTRA".to_string(), "1".to_string())];
    let request = SpawnRequest {
        spec,
        fingerprint: "abc123",
        master: Path::new("/tmp/master.yaml"),
        knot_binary: script,
        cgroups,
        sockets,
        extra_env: &extra,
    };
    let knot = spawn_knot(&request).expect("spawn_knot");
    let code = knot_support::wait_exit(knot.pid, Duration::from_secs(10));
    assert_eq!(code, Some(0), "fake knot exit status");
    knot.pid
}

#[test]
fn spawn_passes_args_env_fds_and_config() {
    if !knot_support::root_or_skip("clone into new namespaces") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = fake_knot(tmp.path());
    let spec = knot_support::spec(tmp.path(), "sb/proc.0", "/bin/true", &[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // A descriptor without close-on-exec that must not reach the knot.
    let leaked = nix::unistd::dup2(listener.as_raw_fd(), 200).unwrap();

    spawn(&spec, &script, None, &[(3, listener.as_raw_fd())]);
    nix::unistd::close(leaked).unwrap();

    let out = tmp.path().join("out");
    let args = fs::read_to_string(out.join("args")).unwrap();
    assert_eq!(
        args.trim(),
        "--name sb/proc.0 --master /tmp/master.yaml --fingerprint abc123 --config-fd 4"
    );
    let env = fs::read_to_string(out.join("env")).unwrap();
    assert!(env.contains("LITHOS_TEST_EXTRA=1"), "{env}");
    assert!(!env.contains("CARGO_"), "{env}");
    let fds: Vec<String> = fs::read_to_string(out.join("fds"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for expected in ["0", "1", "2", "3", "4"] {
        assert!(
            fds.iter().any(|f| f == expected),
            "fd {expected} missing: {fds:?}"
        );
    }
    assert!(!fds.iter().any(|f| f == "200"), "leaked fd 200: {fds:?}");
    let own_ns = fs::read_link("/proc/self/ns/pid").unwrap();
    let knot_ns = fs::read_to_string(out.join("pidns")).unwrap();
    assert_ne!(knot_ns.trim(), own_ns.to_str().unwrap());
    let config: LaunchSpec =
        serde_json::from_slice(&fs::read(out.join("config")).unwrap()).unwrap();
    assert_eq!(config, spec);
    let log = fs::read_to_string(&spec.stdio_log).unwrap();
    assert!(log.contains("hello from the knot"), "{log}");
}

#[test]
fn spawn_places_knot_in_instance_cgroups() {
    if !knot_support::root_or_skip("create cgroups") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = fake_knot(tmp.path());
    let mut spec = knot_support::spec(tmp.path(), "sb/cg.0", "/bin/true", &[]);
    let name = format!("lithos-test-spawn-{}", std::process::id());
    let controllers = vec!["name".to_string(), "memory".to_string()];
    spec.cgroup = Some(CgroupSpec {
        parent: name.clone(),
        controllers: controllers.clone(),
        leaf: "sb:cg.0.scope".to_string(),
    });
    spec.container.memory_limit = Some(64 << 20);
    let cgroups = Cgroups::discover(Path::new("/proc"), &name, &controllers).unwrap();

    spawn(&spec, &script, Some(&cgroups), &[]);

    let membership = fs::read_to_string(tmp.path().join("out/cgroup")).unwrap();
    cgroups.remove_instance("sb:cg.0.scope").unwrap();
    for base in cgroups.base_dirs() {
        fs::remove_dir(&base).unwrap();
    }
    for line in membership.lines() {
        let used =
            line.contains(":memory:") || line.contains(":name=systemd:") || line.starts_with("0::");
        if used {
            assert!(line.ends_with(&format!("/{name}/sb:cg.0.scope")), "{line}");
        }
    }
}
