//! Shared helpers of the tree and switch end-to-end tests: a config tree, image and devfs
//! in a temporary directory, and a `lithos_tree` run on it. Dropping the fixture (also
//! after a panic) kills the tree and every container of its master config.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lithos::exec::tree::status::{self, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Returns true when the test runs as root; prints the skip reason otherwise.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root ({what})");
        false
    }
}

/// Polls `check` every 50 ms for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Returns a TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds the static demo HTTP server once and returns its path.
pub fn httpd_binary() -> PathBuf {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = top.join("target/test-httpd");
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let status = Command::new("cargo")
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(top.join("demo/httpd/Cargo.toml"))
        .args(["--target", &host, "--target-dir"])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .expect("run cargo build for the demo httpd");
    assert!(status.success(), "building the demo httpd failed");
    target_dir.join(host).join("release/lithos-demo-httpd")
}

/// A config tree in a temporary directory and the tree that runs it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cgroup_name: String,
    pub tree: Option<Child>,
    /// Extra environment variables of the tree.
    pub env: Vec<(String, String)>,
}

impl Fixture {
    /// Creates the image `test.v1`, a devfs, master.yaml and one sandbox named `sb`.
    pub fn new(tag: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lithos-{tag}-"))
            .tempdir()
            .unwrap();
        let cgroup_name = format!(
            "lithos-test-{}-{}-{tag}.slice",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let fixture = Fixture {
            dir,
            cgroup_name,
            tree: None,
            env: Vec::new(),
        };
        let root = fixture.root();
        for sub in [
            "config/sandboxes",
            "config/processes",
            "images",
            "run",
            "log",
            "w/data",
        ] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-image");
        let made = Command::new(script)
            .arg(root.join("images/test.v1"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "make-test-image failed");
        fs::create_dir_all(root.join("images/test.v1/data")).unwrap();
        let mkdev = Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
            .arg(root.join("dev"))
            .status()
            .unwrap();
        assert!(mkdev.success(), "lithos_mkdev failed");
        fixture.write_master("");
        fixture.write_sandbox("sb", "");
        fixture
    }

    /// Returns the temporary directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Returns the master config path.
    pub fn master(&self) -> PathBuf {
        self.root().join("config/master.yaml")
    }

    /// Returns the runtime dir.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root().join("run")
    }

    /// Writes master.yaml with every path inside the fixture, plus `extra` lines.
    pub fn write_master(&self, extra: &str) {
        let root = self.root();
        let text = format!(
            "runtime-dir: {root}/run\ndevfs-dir: {root}/dev\ndefault-log-dir: {root}/log\n\
             cgroup-name: {cgroup}\nlog-level: debug\n{extra}",
            root = root.display(),
            cgroup = self.cgroup_name,
        );
        fs::write(self.master(), text).unwrap();
    }

    /// Writes `sandboxes/NAME.yaml` for the test image dir, plus `extra` lines.
    pub fn write_sandbox(&self, name: &str, extra: &str) {
        let text = format!(
            "image-dir: {}/images\nallow-users: [0-1]\nallow-groups: [0-1]\n\
             writable-paths:\n  /w: {}/w\n{extra}",
            self.root().display(),
            self.root().display(),
        );
        fs::write(
            self.root().join(format!("config/sandboxes/{name}.yaml")),
            text,
        )
        .unwrap();
    }

    /// Writes `processes/SANDBOX.yaml`.
    pub fn write_processes(&self, sandbox: &str, text: &str) {
        fs::write(self.processes_path(sandbox), text).unwrap();
    }

    /// Returns the processes file of `sandbox`.
    pub fn processes_path(&self, sandbox: &str) -> PathBuf {
        self.root().join(format!("config/processes/{sandbox}.yaml"))
    }

    /// Writes the container config `/config/NAME.yaml` into the image.
    pub fn write_container(&self, name: &str, text: &str) {
        let path = self
            .root()
            .join(format!("images/test.v1/config/{name}.yaml"));
        fs::write(path, text).unwrap();
    }

    /// Copies a host file into the image.
    pub fn install(&self, source: &Path, inside: &str) {
        let target = self
            .root()
            .join("images/test.v1")
            .join(inside.trim_start_matches('/'));
        // The image's /bin contains busybox applet symlinks, and copying through one of them
        // would overwrite busybox itself.
        let _ = fs::remove_file(&target);
        fs::copy(source, target).unwrap();
    }

    /// Starts `lithos_tree -C master.yaml --log-stderr`, logging to `tree.log`.
    pub fn start_tree(&mut self) -> i32 {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join("tree.log"))
            .unwrap();
        let stdout = Stdio::from(log.try_clone().unwrap());
        self.start_tree_with_output(stdout, Stdio::from(log))
    }

    /// Starts `lithos_tree -C master.yaml --log-stderr` with the given stdout and stderr.
    pub fn start_tree_with_output(&mut self, stdout: Stdio, stderr: Stdio) -> i32 {
        let child = Command::new(env!("CARGO_BIN_EXE_lithos_tree"))
            .arg("-C")
            .arg(self.master())
            .args(["--log-stderr", "--log-level", "debug"])
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start lithos_tree");
        let pid = child.id() as i32;
        self.tree = Some(child);
        pid
    }

    /// Waits until `master.pid` names the running tree, which the tree writes only after its
    /// signal handlers are installed: a SIGQUIT sent before that would kill it, as it would
    /// any process that has not set up its handlers yet.
    pub fn wait_pid_file(&self, limit: Duration) -> bool {
        let pid = self.tree_pid().to_string();
        let pid_file = self.runtime_dir().join("master.pid");
        eventually(limit, || {
            fs::read_to_string(&pid_file).is_ok_and(|text| text.trim() == pid)
        })
    }

    /// Takes the tree's stderr pipe, when it was started with a piped stderr.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.tree.as_mut()?.stderr.take()
    }

    /// Pid of the running tree.
    pub fn tree_pid(&self) -> i32 {
        self.tree.as_ref().expect("tree started").id() as i32
    }

    /// Sends `signal` to the tree.
    pub fn signal_tree(&self, signal: Signal) {
        kill(Pid::from_raw(self.tree_pid()), signal).unwrap();
    }

    /// Waits for the tree to exit, at most `limit`; returns its exit code.
    pub fn wait_tree(&mut self, limit: Duration) -> Option<i32> {
        let child = self.tree.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.tree = None;
                return status.code().or(Some(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the tree with SIGKILL and reaps it; containers keep running.
    pub fn kill_tree(&mut self) {
        if let Some(mut child) = self.tree.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Returns the tree's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root().join("tree.log")).unwrap_or_default()
    }

    /// Returns the current status.json, if readable.
    pub fn status(&self) -> Option<Status> {
        status::read(&self.runtime_dir()).ok()
    }

    /// Pids of running instances by name, from status.json.
    pub fn running(&self) -> BTreeMap<String, i32> {
        let Some(status) = self.status() else {
            return BTreeMap::new();
        };
        status
            .instances
            .into_iter()
            .filter(|(_, instance)| instance.state == "running")
            .filter_map(|(name, instance)| Some((name, instance.pid?)))
            .collect()
    }

    /// Waits until exactly `count` instances run and the tree is past its first pass.
    pub fn wait_running(&self, count: usize, limit: Duration) -> BTreeMap<String, i32> {
        let mut last = BTreeMap::new();
        let ok = eventually(limit, || {
            last = self.running();
            last.len() == count && last.values().all(|pid| is_knot(*pid))
        });
        assert!(
            ok,
            "expected {count} running instances, got {last:?}\n{}",
            self.log()
        );
        last
    }

    /// Waits until status.json shows a generation above `generation`.
    pub fn wait_generation_above(&self, generation: u64, limit: Duration) -> Status {
        let mut last = None;
        let ok = eventually(limit, || {
            last = self.status();
            last.as_ref().is_some_and(|s| s.generation > generation)
        });
        assert!(
            ok,
            "generation stayed at {generation}: {last:?}\n{}",
            self.log()
        );
        last.unwrap()
    }

    /// Waits until status.json comes from the running tree (after a restart of the tree).
    pub fn wait_own_status(&self, limit: Duration) -> Status {
        let pid = self.tree_pid() as u32;
        let mut last = None;
        let ok = eventually(limit, || {
            last = self.status();
            last.as_ref().is_some_and(|s| s.pid == pid)
        });
        assert!(ok, "no status from tree {pid}: {last:?}\n{}", self.log());
        last.unwrap()
    }

    /// Pids of every live knot of this fixture's master config, from /proc.
    pub fn knots(&self) -> Vec<i32> {
        let master = self.master();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let ours = args
                .first()
                .is_some_and(|arg0| arg0.ends_with("lithos_knot"))
                && args
                    .windows(2)
                    .any(|pair| pair[0] == "--master" && Path::new(&pair[1]) == master);
            if ours && !is_zombie(pid) {
                found.push(pid);
            }
        }
        found.sort();
        found
    }

    /// Lines of `data/NAME` (files containers write through the `/data` volume).
    pub fn data_lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.root().join("w/data").join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn cleanup(&mut self) {
        self.kill_tree();
        for _ in 0..50 {
            let knots = self.knots();
            if knots.is_empty() {
                break;
            }
            for pid in knots {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.remove_cgroups();
    }

    fn remove_cgroups(&self) {
        let Ok(cgroups) =
            lithos::exec::cgroup::Cgroups::discover(Path::new("/proc"), &self.cgroup_name, &[])
        else {
            return;
        };
        for base in cgroups.base_dirs() {
            if let Ok(entries) = fs::read_dir(&base) {
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        let _ = fs::remove_dir(entry.path());
                    }
                }
            }
            let _ = fs::remove_dir(&base);
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Returns whether `pid` is a live lithos_knot.
pub fn is_knot(pid: i32) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let arg0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(arg0).ends_with("lithos_knot") && !is_zombie(pid)
}

/// Returns whether `pid` is a zombie (or gone).
pub fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().next() == Some("Z")
}

/// Returns whether `pid` exists (zombie or not).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids of zombie children of `parent`.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    let mut zombies = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// Returns the first child of `pid` (the container's program under its knot).
pub fn first_child(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Outcome counts of a client loop against one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    pub ok: usize,
    pub refused: usize,
    pub other: usize,
}

/// Sends HTTP requests to `port` on loopback until `stop` is set or `max` requests ran.
pub fn client_loop(port: u16, stop: &std::sync::atomic::AtomicBool, max: usize) -> ClientCounts {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut counts = ClientCounts::default();
    for _ in 0..max {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut body = String::new();
                match stream.read_to_string(&mut body) {
                    Ok(_) if body.starts_with("HTTP/1.1 200") => counts.ok += 1,
                    _ => counts.other += 1,
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                counts.refused += 1
            }
            Err(_) => counts.other += 1,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    counts
}

/// Returns a container config that runs `/bin/sh -c SCRIPT`.
pub fn shell_container(script: &str, restart_timeout: &str, kill_timeout: &str) -> String {
    format!(
        "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: {restart_timeout}\n\
         kill-timeout: {kill_timeout}\nexecutable: /bin/sh\narguments:\n- -c\n- '{script}'\n\
         volumes:\n  /data: !Persistent {{path: /w/data}}\n"
    )
}

/// Returns a processes file with one entry `NAME` of `instances` using `/config/CONFIG.yaml`.
pub fn entry(name: &str, config: &str, instances: u32) -> String {
    format!(
        "{name}:\n  image: test.v1\n  config: /config/{config}.yaml\n  instances: {instances}\n"
    )
}
