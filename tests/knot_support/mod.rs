//! Shared helpers of the knot end-to-end tests: a launch spec over a temporary directory
//! and a busybox test image.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lithos::model::spec::{
    ContainerKind, ContainerSpec, EntryKind, HostsFileSpec, LaunchSpec, ResolvConfSpec,
    LAUNCH_SPEC_VERSION,
};

/// Returns true when the test runs as root; prints the skip reason otherwise.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root ({what})");
        false
    }
}

/// Builds the test image with `scripts/make-test-image` into `dir`.
pub fn make_image(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-image");
    let status = Command::new(script)
        .arg(dir)
        .status()
        .expect("run make-test-image");
    assert!(status.success(), "make-test-image failed");
}

/// Builds a devfs dir with `lithos_mkdev`.
pub fn make_devfs(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
        .arg(dir)
        .status()
        .expect("run lithos_mkdev");
    assert!(status.success(), "lithos_mkdev failed");
}

/// A launch spec running `executable args` from an image at `root/image`, with every
/// host path below `root`.
pub fn spec(root: &Path, name: &str, executable: &str, args: &[&str]) -> LaunchSpec {
    let (sandbox, rest) = name.split_once('/').expect("SANDBOX/PROCESS.N");
    let process = rest.rsplit_once('.').map_or(rest, |(p, _)| p);
    let state_dir = root.join("state").join(sandbox).join(rest);
    for dir in ["mnt", "state", "log"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    LaunchSpec {
        version: LAUNCH_SPEC_VERSION,
        name: name.to_string(),
        sandbox: sandbox.to_string(),
        process: process.to_string(),
        entry_kind: EntryKind::Daemon,
        image: "image".to_string(),
        image_root: root.join("image"),
        config_path: PathBuf::from("/config/test.yaml"),
        container: ContainerSpec {
            kind: ContainerKind::Daemon,
            user_id: 0,
            group_id: 0,
            memory_limit: None,
            cpu_shares: None,
            fileno_limit: 1024,
            restart_timeout: Duration::from_millis(200),
            kill_timeout: Duration::from_secs(5),
            executable: executable.to_string(),
            arguments: args.iter().map(|a| a.to_string()).collect(),
            environ: BTreeMap::new(),
            pid_environ: Vec::new(),
            secret_environ: BTreeMap::new(),
            workdir: PathBuf::from("/"),
            resolv_conf: ResolvConfSpec {
                mount: Some(false),
                copy_from_host: true,
                host_file: PathBuf::from("/etc/resolv.conf"),
            },
            hosts_file: HostsFileSpec {
                mount: Some(false),
                localhost: true,
                public_hostname: false,
                copy_from_host: false,
                host_file: PathBuf::from("/etc/hosts"),
                additional_hosts: BTreeMap::new(),
            },
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            stdout_stderr_file: None,
            interactive: false,
            restart_process_only: false,
            volumes: BTreeMap::new(),
            tcp_ports: BTreeMap::new(),
            normal_exit_codes: Vec::new(),
        },
        readonly_paths: BTreeMap::new(),
        writable_paths: BTreeMap::new(),
        network: None,
        secrets_private_key: None,
        secrets_namespaces: Vec::new(),
        devfs_dir: root.join("dev"),
        mount_dir: root.join("mnt"),
        state_dir,
        stdio_log: root.join("log").join(format!("{sandbox}.log")),
        log_file: root.join("log").join("knot.log"),
        log_level: "debug".to_string(),
        syslog: None,
        cgroup: None,
    }
}

/// Waits for `pid` (a child of this test) to exit, at most `limit`; returns its status
/// code, or the signal number plus 128.
pub fn wait_exit(pid: i32, limit: Duration) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = std::time::Instant::now() + limit;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).expect("waitpid")
        {
            WaitStatus::Exited(_, code) => return Some(code),
            WaitStatus::Signaled(_, signal, _) => return Some(128 + signal as i32),
            _ if std::time::Instant::now() > deadline => return None,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Polls `check` every 20 ms for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Starts a knot for `spec` through the library and returns its pid.
pub fn launch(spec: &LaunchSpec, cgroups: Option<&lithos::exec::cgroup::Cgroups>) -> i32 {
    launch_with_sockets(spec, cgroups, &[])
}

/// Starts a knot for `spec` with listening `sockets` (fd in the program, fd here).
pub fn launch_with_sockets(
    spec: &LaunchSpec,
    cgroups: Option<&lithos::exec::cgroup::Cgroups>,
    sockets: &[(i32, i32)],
) -> i32 {
    let request = lithos::exec::spawn::SpawnRequest {
        spec,
        fingerprint: "0123abcd",
        master: Path::new("/nonexistent/master.yaml"),
        knot_binary: Path::new(env!("CARGO_BIN_EXE_lithos_knot")),
        cgroups,
        sockets,
        extra_env: &[],
    };
    lithos::exec::spawn::spawn_knot(&request)
        .expect("spawn_knot")
        .pid
}

/// A temporary root with the test image and a devfs.
pub fn container_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    make_image(&tmp.path().join("image"));
    make_devfs(&tmp.path().join("dev"));
    tmp
}

/// Runs `script` with `/bin/sh -c` in a container and returns the knot's exit code and
/// the stdio log.
pub fn run_script(
    root: &Path,
    name: &str,
    script: &str,
    edit: impl FnOnce(&mut LaunchSpec),
) -> (Option<i32>, String) {
    let mut spec = spec(root, name, "/bin/sh", &["-c", script]);
    edit(&mut spec);
    let pid = launch(&spec, None);
    let code = wait_exit(pid, Duration::from_secs(20));
    let log = std::fs::read_to_string(&spec.stdio_log).unwrap_or_default();
    (code, log)
}

/// Asserts that no mount of this test's mount namespace lies below `dir`.
pub fn assert_no_mounts(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(dir)).collect();
    assert!(left.is_empty(), "mounts left on the host: {left:?}");
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}
