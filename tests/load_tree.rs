//! Load: 1,000 small `sleep` containers in one tree, started, reloaded, all changed and
//! stopped, with the time of each phase printed.
//!
//! It takes minutes on a small machine, so it runs only with `LITHOS_LOAD_TEST=1`
//! (`scripts/chaos` sets it); `LITHOS_LOAD_INSTANCES` changes the count.

mod tree_support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::Signal;
use tree_support::{entry, eventually, root_or_skip, Fixture};

/// A kernel limit raised for the test and put back when it ends.
struct Raised {
    path: PathBuf,
    old: String,
}

impl Raised {
    /// Raises `/proc/sys/KEY` to at least `value`; returns None when it is high enough.
    fn at_least(key: &str, value: u64) -> Option<Raised> {
        let path = PathBuf::from("/proc/sys").join(key);
        let old = fs::read_to_string(&path).ok()?.trim().to_string();
        if old.parse::<u64>().ok()? >= value {
            return None;
        }
        fs::write(&path, value.to_string()).ok()?;
        println!("raised {key} from {old} to {value}");
        Some(Raised { path, old })
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}

fn config(generation: u32) -> String {
    format!(
        "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\nkill-timeout: 5\n\
         executable: /bin/sleep\narguments: [\"36000\"]\nenviron:\n  GENERATION: \"{generation}\"\n"
    )
}

#[test]
fn thousand_containers() {
    if std::env::var("LITHOS_LOAD_TEST").as_deref() != Ok("1") {
        println!("skipped: set LITHOS_LOAD_TEST=1 to run the load test");
        return;
    }
    if !root_or_skip("containers") {
        return;
    }
    let count: usize = std::env::var("LITHOS_LOAD_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // Two processes per container, plus room for the rest of the machine.
    let _limits: Vec<Raised> = [
        ("kernel/pid_max", 4 * count as u64 + 32768),
        ("kernel/threads-max", 4 * count as u64 + 32768),
        ("user/max_mnt_namespaces", 2 * count as u64 + 1024),
        ("user/max_pid_namespaces", 2 * count as u64 + 1024),
        ("user/max_uts_namespaces", 2 * count as u64 + 1024),
        ("user/max_ipc_namespaces", 2 * count as u64 + 1024),
    ]
    .into_iter()
    .filter_map(|(key, value)| Raised::at_least(key, value))
    .collect();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();

    let mut fixture = Fixture::new("load");
    fixture.write_container("sleep", &config(1));
    fixture.write_processes("sb", &entry("sleep", "sleep", count as u32));
    let limit = Duration::from_secs(60 + count as u64 / 2);
    let mut report = Vec::new();

    let began = Instant::now();
    fixture.start_tree();
    let first = fixture.wait_running(count, limit);
    report.push(("start", began.elapsed()));

    let generation = fixture.status().unwrap().generation;
    let began = Instant::now();
    fixture.signal_tree(Signal::SIGQUIT);
    fixture.wait_generation_above(generation, limit);
    let same = fixture.wait_running(count, limit);
    report.push(("reload (nothing changed)", began.elapsed()));
    assert_eq!(same, first, "a reload restarted containers");

    fixture.write_container("sleep", &config(2));
    let began = Instant::now();
    fixture.signal_tree(Signal::SIGQUIT);
    let replaced = eventually(limit, || {
        let now = fixture.running();
        now.len() == count && now.iter().all(|(name, pid)| first.get(name) != Some(pid))
    });
    report.push(("change a variable of all", began.elapsed()));
    assert!(
        replaced,
        "not every container was replaced\n{}",
        fixture.log()
    );
    assert_eq!(fixture.knots().len(), count, "duplicate or missing knots");

    let began = Instant::now();
    fixture.signal_tree(Signal::SIGTERM);
    let code = fixture.wait_tree(limit);
    report.push(("stop (SIGTERM)", began.elapsed()));
    assert_eq!(code, Some(0), "{}", fixture.log());
    assert!(fixture.knots().is_empty(), "containers left after the stop");

    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    println!("load: {count} containers");
    for (phase, time) in report {
        println!("  {phase:<28} {:>7.1} s", time.as_secs_f64());
    }
}
