//! Disk pressure and unreadable or unwritable dirs under a running tree: the runtime dir on
//! a tiny tmpfs that fills up, the log dir made read-only, config files made unreadable.
//! Running containers keep running through all of it, and the tree recovers when the
//! fault goes away.

mod tree_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{entry, root_or_skip, Fixture};

const SLEEP: &str = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\n\
                     kill-timeout: 3\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";

/// A mount the test made; detached when dropped, also after a failed assertion.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(target: &Path, options: &str) -> Mounted {
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )
        .expect("mount tmpfs");
        Mounted(target.to_path_buf())
    }

    /// Binds `source` on `target` read-only.
    fn bind_readonly(source: &Path, target: &Path) -> Mounted {
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount");
        let mounted = Mounted(target.to_path_buf());
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
        mounted
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Fills the file system at `dir` until writes fail: first its blocks, then its inodes.
fn fill(dir: &Path) {
    let mut file = fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    for index in 0.. {
        if fs::File::create(dir.join(format!("filler.{index}"))).is_err() {
            break;
        }
    }
}

fn unfill(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("filler") {
            fs::remove_file(entry.path()).unwrap();
        }
    }
}

/// Pids of the knots of this fixture right now, from /proc (status.json may be stale).
fn alive(fixture: &Fixture, pids: &std::collections::BTreeMap<String, i32>) -> bool {
    let knots = fixture.knots();
    pids.values().all(|pid| knots.contains(pid))
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|line| line.contains(text)).count()
}

#[test]
fn full_runtime_dir_keeps_containers_and_recovers() {
    if !root_or_skip("mounts and containers") {
        return;
    }
    let mut fixture = Fixture::new("fullrun");
    let run = fixture.runtime_dir();
    let _tmpfs = Mounted::tmpfs(&run, "size=1m,nr_inodes=200,mode=0755");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 2));
    let tree = fixture.start_tree();
    let before = fixture.wait_running(2, Duration::from_secs(20));

    fill(&run);
    // A new instance needs a state dir in the full runtime dir; a reload saves state.
    fixture.write_processes(
        "sb",
        &format!(
            "{}{}",
            entry("sleep", "sleep", 2),
            entry("late", "sleep", 1)
        ),
    );
    fixture.signal_tree(Signal::SIGQUIT);
    // Several passes under pressure: the late one's failed starts, restart-timeout apart.
    std::thread::sleep(Duration::from_secs(6));
    // A container killed now cannot come back until there is room again.
    kill(Pid::from_raw(before["sb/sleep.1"]), Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        tree_support::exists(tree),
        "the tree died\n{}",
        fixture.log()
    );
    let still = [("sb/sleep.0".to_string(), before["sb/sleep.0"])]
        .into_iter()
        .collect();
    assert!(
        alive(&fixture, &still),
        "sleep.0 stopped\n{}",
        fixture.log()
    );

    let log = fixture.log();
    for text in [
        "failed to save the state",
        "failed to write status.json",
        "failed to start container",
        "failed to export metrics",
    ] {
        let seen = count(&log, text);
        assert!(
            seen <= 3,
            "{text:?} logged {seen} times in a few seconds: once per kind of failure\n{log}"
        );
    }

    unfill(&run);
    let after = fixture.wait_running(3, Duration::from_secs(30));
    assert_eq!(after.get("sb/sleep.0"), before.get("sb/sleep.0"));
    assert!(after.contains_key("sb/late.0"), "{after:?}");
    let log = fixture.log();
    assert!(
        count(&log, "failed to export metrics") > 0,
        "metrics in the full runtime dir were written all the same\n{log}"
    );
    assert!(
        count(&log, "failed to save the state") <= 3,
        "logged again after recovery\n{log}"
    );
    drop(fixture);
}

#[test]
fn readonly_log_dir_and_unreadable_config_stop_nothing() {
    if !root_or_skip("mounts and containers") {
        return;
    }
    let mut fixture = Fixture::new("rolog");
    fixture.write_container("sleep", SLEEP);
    fixture.write_processes("sb", &entry("sleep", "sleep", 2));
    let tree = fixture.start_tree();
    let before = fixture.wait_running(2, Duration::from_secs(20));
    let log_dir = fixture.root().join("log");

    // Log dir read-only: a reload and a killed container must not stop the others.
    {
        let _readonly = Mounted::bind_readonly(&log_dir, &log_dir);
        let generation = fixture.status().unwrap().generation;
        fixture.signal_tree(Signal::SIGQUIT);
        fixture.wait_generation_above(generation, Duration::from_secs(20));
        kill(Pid::from_raw(before["sb/sleep.1"]), Signal::SIGKILL).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let still = [("sb/sleep.0".to_string(), before["sb/sleep.0"])]
            .into_iter()
            .collect();
        assert!(
            alive(&fixture, &still),
            "sleep.0 stopped\n{}",
            fixture.log()
        );
    }
    let after = fixture.wait_running(2, Duration::from_secs(30));
    assert_eq!(after.get("sb/sleep.0"), before.get("sb/sleep.0"));

    // Config files unreadable as config: /dev/null bound over the processes file and the
    // sandbox file. Not a deletion, so the last good config stays in effect.
    {
        let _processes =
            Mounted::bind_readonly(Path::new("/dev/null"), &fixture.processes_path("sb"));
        let sandbox = fixture.root().join("config/sandboxes/sb.yaml");
        let _sandbox = Mounted::bind_readonly(Path::new("/dev/null"), &sandbox);
        let generation = fixture.status().unwrap().generation;
        fixture.signal_tree(Signal::SIGQUIT);
        let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
        assert!(!status.errors.is_empty(), "no load error shown: {status:?}");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(fixture.running(), after, "{}", fixture.log());
    }
    // master.yaml unreadable: no reload at all.
    {
        let _master = Mounted::bind_readonly(Path::new("/dev/null"), &fixture.master());
        fixture.signal_tree(Signal::SIGQUIT);
        std::thread::sleep(Duration::from_secs(2));
        assert!(tree_support::exists(tree), "{}", fixture.log());
        assert_eq!(fixture.running(), after, "{}", fixture.log());
    }
    let generation = fixture.status().unwrap().generation;
    fixture.signal_tree(Signal::SIGQUIT);
    let status = fixture.wait_generation_above(generation, Duration::from_secs(20));
    assert!(status.errors.is_empty(), "{status:?}");
    assert_eq!(fixture.wait_running(2, Duration::from_secs(20)), after);
}
