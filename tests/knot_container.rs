//! End-to-end tests of `lithos_knot` on a busybox image, as root: namespaces, ids,
//! limits, descriptors, environment and errors before start.

mod knot_support;

use std::fs;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use knot_support::{
    assert_no_mounts, container_root, launch_with_sockets, root_or_skip, run_script, wait_exit,
};
use lithos::model::spec::{EntryKind, IdMap};

#[test]
fn program_is_pid_two() {
    if !root_or_skip("namespaces and mounts") {
        return;
    }
    let tmp = container_root();
    let (code, log) = run_script(
        tmp.path(),
        "sb/pid.0",
        "echo pid=$$; echo ppid=$PPID",
        |s| {
            s.container.normal_exit_codes = vec![0];
        },
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("pid=2\n"), "{log}");
    assert!(log.contains("ppid=1\n"), "{log}");
    assert!(log.contains("sb/pid.0: starting /bin/sh -c"), "{log}");
    assert!(log.contains("sb/pid.0: exited with code 0 after"), "{log}");
    assert_no_mounts(tmp.path());
}

#[test]
fn hostname_is_isolated() {
    if !root_or_skip("UTS namespace") {
        return;
    }
    let host = nix::unistd::gethostname().unwrap();
    let tmp = container_root();
    let (code, log) = run_script(
        tmp.path(),
        "sb/uts.0",
        "hostname knot-test-name && hostname",
        |_| {},
    );
    assert_eq!(code, Some(1), "a daemon exiting 0 is a failure: {log}");
    assert!(log.contains("knot-test-name\n"), "{log}");
    assert_eq!(nix::unistd::gethostname().unwrap(), host);
}

#[test]
fn user_and_groups_as_configured() {
    if !root_or_skip("setuid") {
        return;
    }
    let tmp = container_root();
    let script = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status";
    let (_, log) = run_script(tmp.path(), "sb/ids.0", script, |s| {
        s.container.user_id = 1000;
        s.container.group_id = 1001;
    });
    assert!(log.contains("uid=1000 gid=1001 groups=1001\n"), "{log}");
    for cap in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            log.contains(&format!("{cap}:\t0000000000000000")),
            "{cap} not empty: {log}"
        );
    }
}

#[test]
fn ids_under_uid_map() {
    if !root_or_skip("user namespace") {
        return;
    }
    let tmp = container_root();
    let script = "echo uid=$(id -u) gid=$(id -g); cat /proc/self/uid_map /proc/self/gid_map";
    let (_, log) = run_script(tmp.path(), "sb/userns.0", script, |s| {
        let map = vec![IdMap {
            inside: 0,
            outside: 100_000,
            count: 65_536,
        }];
        s.container.uid_map = map.clone();
        s.container.gid_map = map;
        s.container.user_id = 7;
        s.container.group_id = 8;
    });
    assert!(log.contains("uid=7 gid=8\n"), "{log}");
    let maps: Vec<Vec<&str>> = log
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f == &["0", "100000", "65536"])
        .collect();
    assert_eq!(maps.len(), 2, "uid and gid map lines: {log}");
}

#[test]
fn fileno_limit_applied() {
    if !root_or_skip("setrlimit") {
        return;
    }
    let tmp = container_root();
    let (_, log) = run_script(tmp.path(), "sb/nofile.0", "echo nofile=$(ulimit -n)", |s| {
        s.container.fileno_limit = 4321;
    });
    assert!(log.contains("nofile=4321\n"), "{log}");
}

#[test]
fn only_sockets_and_stdio_reach_program() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let mut spec = knot_support::spec(tmp.path(), "sb/fds.0", "/bin/ls", &["-l", "/proc/self/fd/"]);
    // A high RLIMIT_NOFILE must not slow the start-up: descriptors are closed in one call.
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it the current hard limit is
    // as high as this test can go.
    let high = if nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        nr_open,
        nr_open,
    )
    .is_ok()
    {
        nr_open
    } else {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .unwrap();
        hard
    };
    spec.container.fileno_limit = high;
    spec.container.normal_exit_codes = vec![0];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let leaked = nix::unistd::dup2(listener.as_raw_fd(), 300).unwrap();
    let started = Instant::now();
    let pid = launch_with_sockets(&spec, None, &[(3, listener.as_raw_fd())]);
    let code = wait_exit(pid, Duration::from_secs(20));
    println!(
        "container with RLIMIT_NOFILE {high} ran in {:?}",
        started.elapsed()
    );
    nix::unistd::close(leaked).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let log = fs::read_to_string(&spec.stdio_log).unwrap();
    assert_eq!(code, Some(0), "{log}");
    let fds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{log}");
    assert!(log.contains("3 -> socket:["), "{log}");
}

#[test]
fn environment_is_exactly_configured() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let mut spec = knot_support::spec(tmp.path(), "sb/env.0", "/bin/env", &[]);
    spec.container
        .environ
        .insert("FOO".into(), "bar baz".into());
    spec.container.pid_environ = vec!["MY_PID".into()];
    spec.container.normal_exit_codes = vec![0];
    let pid = knot_support::launch(&spec, None);
    assert_eq!(wait_exit(pid, Duration::from_secs(20)), Some(0));
    let log = fs::read_to_string(&spec.stdio_log).unwrap();
    let mut env: Vec<&str> = log.lines().filter(|l| !l.starts_with("[lithos]")).collect();
    env.retain(|l| !l.starts_with("TERM="));
    env.sort();
    assert_eq!(
        env,
        [
            "FOO=bar baz",
            "LITHOS_CONFIG=/config/test.yaml",
            "LITHOS_NAME=sb/env.0",
            "MY_PID=2"
        ]
    );
}

#[test]
fn workdir_is_used() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let (_, log) = run_script(tmp.path(), "sb/cwd.0", "echo cwd=$(pwd)", |s| {
        s.container.workdir = "/var/log".into();
    });
    assert!(log.contains("cwd=/var/log\n"), "{log}");
}

#[test]
fn exit_status_decides_failure() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let cases: [(&str, &str, Vec<i32>, EntryKind, i32); 5] = [
        ("daemon-zero", "exit 0", vec![], EntryKind::Daemon, 1),
        ("daemon-listed", "exit 0", vec![0], EntryKind::Daemon, 0),
        ("daemon-code", "exit 3", vec![0], EntryKind::Daemon, 1),
        ("daemon-normal", "exit 3", vec![3], EntryKind::Daemon, 0),
        ("command-zero", "exit 0", vec![], EntryKind::Command, 0),
    ];
    for (process, script, normal, kind, expected) in cases {
        let name = format!("sb/{process}.0");
        let (code, log) = run_script(tmp.path(), &name, script, |s| {
            s.container.normal_exit_codes = normal.clone();
            s.entry_kind = kind;
        });
        assert_eq!(code, Some(expected), "{process}: {log}");
        let record = tmp.path().join(format!("state/sb/{process}.0.exit"));
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        assert_eq!(record["failure"], expected == 1, "{process}: {record}");
        assert_eq!(
            record["code"],
            script[5..].parse::<i32>().unwrap(),
            "{process}: {record}"
        );
        assert!(record["signal"].is_null(), "{record}");
        assert!(record["pid"].as_i64().unwrap() > 1, "{record}");
        assert!(record["start_time"].as_u64().unwrap() > 0, "{record}");
    }
}

#[test]
fn zombies_are_reaped() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    // The subshell exits at once, so its sleeps become orphans of the knot.
    let script = "(sleep 0.2 & sleep 0.3 &); sleep 1.5; \
                  echo zombies=$(cat /proc/[0-9]*/stat | grep -c ') Z ')";
    let (_, log) = run_script(tmp.path(), "sb/zombie.0", script, |_| {});
    assert!(log.contains("zombies=0\n"), "{log}");
}

#[test]
fn secret_environ_decrypted() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let key = tmp.path().join("secret.key");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/secrets/test_key_1");
    fs::copy(&fixture, &key).unwrap();
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let keys = lithos::secrets::read_private_keys(&key).unwrap();
    let value = lithos::secrets::encrypt(keys[0].public_key(), "team", b"hunter2").unwrap();
    let (_, log) = run_script(tmp.path(), "sb/secret.0", "echo token=$TOKEN", |s| {
        s.container
            .secret_environ
            .insert("TOKEN".into(), vec![value.clone()]);
        s.secrets_private_key = Some(key.clone());
        s.secrets_namespaces = vec!["team".into()];
    });
    assert!(log.contains("token=hunter2\n"), "{log}");
    let knot_log = fs::read_to_string(tmp.path().join("log/knot.log")).unwrap();
    assert!(!knot_log.contains("hunter2"), "secret in the knot log");
}

#[test]
fn secret_without_key_fails_clearly() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let (code, log) = run_script(tmp.path(), "sb/nokey.0", "true", |s| {
        s.container
            .secret_environ
            .insert("TOKEN".into(), vec!["v2:x".into()]);
    });
    assert_eq!(code, Some(lithos::exec::knot::exit_codes::SETUP_FAILED));
    assert!(log.contains("failed to decrypt secret-environ"), "{log}");
    assert!(log.contains("TOKEN"), "{log}");
    let knot_log = fs::read_to_string(tmp.path().join("log/knot.log")).unwrap();
    assert!(
        knot_log.contains("failed to decrypt secret-environ"),
        "{knot_log}"
    );
    assert_no_mounts(tmp.path());
}

#[test]
fn missing_executable_fails_clearly() {
    if !root_or_skip("namespaces") {
        return;
    }
    let tmp = container_root();
    let mut spec = knot_support::spec(tmp.path(), "sb/noexe.0", "/bin/not-there", &[]);
    spec.container.kill_timeout = Duration::from_secs(1);
    let pid = knot_support::launch(&spec, None);
    let code = wait_exit(pid, Duration::from_secs(20));
    let log = fs::read_to_string(&spec.stdio_log).unwrap();
    assert_eq!(
        code,
        Some(lithos::exec::knot::exit_codes::SETUP_FAILED),
        "{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("failed to")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("failed to execute /bin/not-there: ENOENT"),
        "{log}"
    );
    assert_no_mounts(tmp.path());
}
