//! The observer on the real `/proc`, with processes this test starts: a child that looks
//! like a knot, its zombie, a child between fork and exec, and an orphaned knot.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lithos::state::{observe, ObserveRoots, Observed, ObservedProcess, ProcessKind};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Returns a master path no other test uses, so only this test's fake knots match it.
fn unique_master(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/nonexistent/{tag}-{}/master.yaml",
        std::process::id()
    ))
}

fn fake_knot_args(name: &str, master: &Path) -> Vec<String> {
    let master = master.to_str().unwrap();
    [
        "-c",
        "while :; do sleep 1; done",
        "--name",
        name,
        "--master",
        master,
    ]
    .into_iter()
    .chain(["--fingerprint", "ff", "--config-fd", "3"])
    .map(str::to_string)
    .collect()
}

fn observe_self(master: &Path) -> Observed {
    let me = std::process::id() as i32;
    observe(&ObserveRoots::default(), me, master, &[]).expect("/proc is readable")
}

fn find(observed: &Observed, pid: i32) -> Option<ObservedProcess> {
    observed.processes.iter().find(|p| p.id.pid == pid).cloned()
}

/// Observes until `check` accepts the process or 5 s pass.
fn wait_for(
    master: &Path,
    pid: i32,
    check: impl Fn(&Option<ObservedProcess>) -> bool,
) -> Option<ObservedProcess> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = find(&observe_self(master), pid);
        if check(&found) || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn child_knot_then_zombie() {
    let master = unique_master("child");
    let mut child = Command::new("/bin/sh")
        .arg0("lithos_knot")
        .args(fake_knot_args("s/live.0", &master))
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let seen = wait_for(&master, pid, |p| p.is_some()).expect("child observed");
    assert_eq!(
        seen.kind,
        ProcessKind::Knot {
            name: "s/live.0".parse().unwrap(),
            fingerprint: "ff".into()
        }
    );
    assert!(seen.is_child);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let zombie = wait_for(&master, pid, |p| p.as_ref().is_some_and(|p| p.zombie));
    child.wait().unwrap();
    assert!(zombie.expect("zombie observed").zombie);
    assert!(
        find(&observe_self(&master), pid).is_none(),
        "reaped child is gone"
    );
}

#[test]
fn child_between_fork_and_exec_is_forking() {
    let master = unique_master("fork");
    let spawner = std::thread::spawn(|| {
        let mut command = Command::new("/bin/true");
        // SAFETY: the closure runs in the forked child before exec and calls only
        // nanosleep, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let pause = libc::timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                libc::nanosleep(&pause, std::ptr::null_mut());
                Ok(())
            });
        }
        command.status().unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut forking = None;
    while forking.is_none() && Instant::now() < deadline {
        forking = observe_self(&master)
            .processes
            .into_iter()
            .find(|p| p.kind == ProcessKind::Forking);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(spawner.join().unwrap().success());
    let forking = forking.expect("a child between fork and exec was observed");
    assert!(forking.is_child);
}

#[test]
fn orphaned_knot_found_by_proc_scan() {
    let master = unique_master("orphan");
    let args = fake_knot_args("s/orphan.0", &master)
        .into_iter()
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!("exec -a lithos_knot /bin/sh {args} >/dev/null 2>&1 & echo $!");
    let output = Command::new("bash")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let seen = wait_for(&master, pid, |p| p.is_some());
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let seen = seen.expect("orphaned knot observed");
    assert!(!seen.is_child);
    assert!(
        matches!(seen.kind, ProcessKind::Knot { ref name, .. } if name.to_string() == "s/orphan.0")
    );
}
