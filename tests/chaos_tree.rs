//! Chaos: a tree with three sandboxes while a driver with a fixed random seed switches
//! configs, kills containers, sends SIGQUIT and SIGKILLs the tree at random moments,
//! starting a new one each time. After every round it waits for a quiet state and checks:
//! exactly the desired instances run, each once; none restarted that did not need it; no
//! zombie, stray mount, leftover cgroup or state dir; the listening port accepts.
//!
//! The CI run is short. `LITHOS_CHAOS_ROUNDS` and `LITHOS_CHAOS_SEED` make it long or
//! replay a failure; `scripts/chaos` sets both.

mod tree_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tree_support::{
    entry, first_child, free_port, httpd_binary, is_zombie, root_or_skip, zombie_children, Fixture,
};

const SANDBOXES: [&str; 3] = ["sb", "s2", "s3"];

fn sleep_config(seconds: u32) -> String {
    format!(
        "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 1\nkill-timeout: 2\n\
         executable: /bin/sleep\narguments: [\"{seconds}\"]\n"
    )
}

fn httpd_config(port: u16) -> String {
    format!(
        "kind: Daemon\nuser-id: 1\ngroup-id: 1\nrestart-timeout: 1\nkill-timeout: 2\n\
         executable: /bin/httpd\nenviron:\n  LISTEN_FD: \"3\"\n\
         tcp-ports:\n  {port}:\n    fd: 3\n    host: 127.0.0.1\n"
    )
}

/// xorshift64*: small, and the same sequence for the same seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Desired config of one sandbox: `a` with 0 to 2 instances, `b` running one of two configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Choice {
    a: u32,
    b_variant: usize,
}

fn processes(sandbox: &str, choice: Choice) -> String {
    let mut text = entry("a", "sleep", choice.a);
    text.push_str(&entry("b", ["sleep", "sleep2"][choice.b_variant], 1));
    if sandbox == "sb" {
        text.push_str(&entry("web", "httpd", 1));
    }
    text
}

fn desired(choices: &BTreeMap<&str, Choice>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (sandbox, choice) in choices {
        for index in 0..choice.a {
            names.insert(format!("{sandbox}/a.{index}"));
        }
        names.insert(format!("{sandbox}/b.0"));
        if *sandbox == "sb" {
            names.insert("sb/web.0".to_string());
        }
    }
    names
}

/// Fingerprints of the desired instances, as the tree's own loader computes them.
fn desired_fingerprints(fixture: &Fixture) -> BTreeMap<String, String> {
    let tree = lithos::model::load_tree(&fixture.master(), &Default::default()).unwrap();
    tree.desired_instances()
        .map(|instance| (instance.name.to_string(), instance.fingerprint.clone()))
        .collect()
}

/// Returns the `--fingerprint` argument of a knot.
fn knot_fingerprint(pid: i32) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let pair = args.windows(2).find(|pair| pair[0] == "--fingerprint")?;
    Some(pair[1].clone())
}

/// Live knots of the fixture by instance name, read from /proc.
fn knots_by_name(fixture: &Fixture) -> BTreeMap<String, Vec<i32>> {
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for pid in fixture.knots() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if let Some(pair) = args.windows(2).find(|pair| pair[0] == "--name") {
            // A knot's own child between fork and exec carries the same command line.
            let parent_is_knot = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat[stat.rfind(')')? + 1..].to_string();
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                .is_some_and(|ppid| fixture.knots().contains(&ppid));
            if !parent_is_knot {
                found.entry(pair[1].clone()).or_default().push(pid);
            }
        }
    }
    found
}

/// Describes every process whose command line names one of `missing`, with its parent
/// and state, to tell a filtered knot from one that is really gone.
fn describe_missing<'a>(missing: impl Iterator<Item = &'a String>) -> String {
    let missing: Vec<&String> = missing.collect();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if missing
            .iter()
            .any(|name| text.contains(&format!("--name {name} ")))
        {
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let after = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
            found.push(format!(
                "{} [{}] {text}",
                entry.file_name().to_string_lossy(),
                after
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ppid ")
            ));
        }
    }
    format!("{found:?}")
}

fn leaf(name: &str) -> String {
    format!("{}.scope", name.replacen('/', ":", 1))
}

/// Every check of a quiet state; returns what is wrong.
fn check(
    fixture: &Fixture,
    want: &BTreeSet<String>,
    port: u16,
) -> Result<BTreeMap<String, i32>, String> {
    let knots = knots_by_name(fixture);
    let names: BTreeSet<String> = knots.keys().cloned().collect();
    if &names != want {
        return Err(format!(
            "running {names:?}, desired {want:?}; processes named like the missing ones: {}",
            describe_missing(want.difference(&names))
        ));
    }
    if let Some((name, pids)) = knots.iter().find(|(_, pids)| pids.len() != 1) {
        return Err(format!("{name} runs {} times: {pids:?}", pids.len()));
    }
    // Until the tree has applied the last switch, an outdated knot runs under the name.
    let fingerprints = desired_fingerprints(fixture);
    for (name, pids) in &knots {
        if knot_fingerprint(pids[0]) != fingerprints.get(name).cloned() {
            return Err(format!("{name} runs an outdated config"));
        }
    }

    let tree = fixture.tree_pid();
    let zombies = zombie_children(tree);
    if !zombies.is_empty() {
        return Err(format!("zombie children of the tree: {zombies:?}"));
    }

    let root = fixture.root();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(root.to_str().unwrap()))
        .map(str::to_string)
        .collect();
    if !mounts.is_empty() {
        return Err(format!("mounts left in the host namespace: {mounts:?}"));
    }

    let leaves: BTreeSet<String> = want.iter().map(|name| leaf(name)).collect();
    let cgroups =
        lithos::exec::cgroup::Cgroups::discover(Path::new("/proc"), &fixture.cgroup_name, &[])
            .map_err(|e| format!("cgroups: {e}"))?;
    for base in cgroups.base_dirs() {
        let found: BTreeSet<String> = fs::read_dir(&base)
            .map_err(|e| format!("{}: {e}", base.display()))?
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        if found != leaves {
            return Err(format!("cgroups in {}: {found:?}", base.display()));
        }
    }

    let mut state_dirs = BTreeSet::new();
    for sandbox in SANDBOXES {
        if let Ok(entries) = fs::read_dir(fixture.runtime_dir().join("state").join(sandbox)) {
            for entry in entries.flatten().filter(|entry| entry.path().is_dir()) {
                state_dirs.insert(format!("{sandbox}/{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    if &state_dirs != want {
        return Err(format!("state dirs {state_dirs:?}"));
    }

    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5))
        .map_err(|e| format!("port {port}: {e}"))?;
    Ok(knots
        .into_iter()
        .map(|(name, pids)| (name, pids[0]))
        .collect())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn chaos_tree_converges() {
    if !root_or_skip("containers, cgroups and ports") {
        return;
    }
    let seed = env_number("LITHOS_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    let rounds = env_number("LITHOS_CHAOS_ROUNDS").unwrap_or(20);
    println!("chaos seed {seed}, {rounds} rounds (LITHOS_CHAOS_SEED={seed} replays)");
    let mut rng = Rng(seed);

    let port = free_port();
    let mut fixture = Fixture::new("chaos");
    fixture.install(&httpd_binary(), "/bin/httpd");
    fixture.write_container("sleep", &sleep_config(3600));
    fixture.write_container("sleep2", &sleep_config(3601));
    fixture.write_container("httpd", &httpd_config(port));
    let mut choices: BTreeMap<&str, Choice> = BTreeMap::new();
    for sandbox in SANDBOXES {
        let allow = if sandbox == "sb" {
            format!("allow-tcp-ports: [{port}]\n")
        } else {
            String::new()
        };
        fixture.write_sandbox(sandbox, &allow);
        let choice = Choice { a: 2, b_variant: 0 };
        fixture.write_processes(sandbox, &processes(sandbox, choice));
        choices.insert(sandbox, choice);
    }
    fixture.start_tree();
    let fail = |fixture: &Fixture, message: String| -> ! {
        // Whether the tree is alive, and where it waits, tells a hung or dead tree apart
        // from one whose decisions are wrong.
        let tree = fixture.tree_pid();
        let read = |file: &str| {
            std::fs::read_to_string(format!("/proc/{tree}/{file}"))
                .unwrap_or_else(|error| format!("unreadable: {error}"))
        };
        panic!(
            "seed {seed}: {message}\n--- tree {tree}: stat {} wchan {}\n{}--- tree log ---\n{}",
            read("stat").trim(),
            read("wchan"),
            read("stack"),
            fixture.log()
        )
    };
    let settle = |fixture: &Fixture, want: &BTreeSet<String>| {
        // A quiet state must hold for a second: a knot whose program was just killed
        // still passes one check before it exits.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut previous = None;
        loop {
            match check(fixture, want, port) {
                Ok(pids) if previous.as_ref() == Some(&pids) => return pids,
                Ok(pids) => previous = Some(pids),
                Err(message) if Instant::now() > deadline => fail(fixture, message),
                Err(_) => previous = None,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    let mut pids = settle(&fixture, &desired(&choices));
    let mut counts = BTreeMap::<&str, u32>::new();

    for round in 0..rounds {
        // Instances that may get a new pid this round: killed or reconfigured.
        let mut touched = BTreeSet::new();
        for _ in 0..1 + rng.below(5) {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            match rng.below(10) {
                0..=3 => {
                    let sandbox = SANDBOXES[rng.below(3) as usize];
                    let old = choices[sandbox];
                    let new = Choice {
                        a: rng.below(3) as u32,
                        b_variant: rng.below(2) as usize,
                    };
                    // Instances removed now and added back later in the round restart.
                    for index in new.a..old.a {
                        touched.insert(format!("{sandbox}/a.{index}"));
                    }
                    if new.b_variant != old.b_variant {
                        touched.insert(format!("{sandbox}/b.0"));
                    }
                    fixture.write_processes(sandbox, &processes(sandbox, new));
                    choices.insert(sandbox, new);
                    fixture.signal_tree(Signal::SIGQUIT);
                    *counts.entry("switch").or_default() += 1;
                }
                4..=5 => {
                    let live = knots_by_name(&fixture);
                    let names: Vec<&String> = live.keys().collect();
                    if names.is_empty() {
                        continue;
                    }
                    let name = names[rng.below(names.len() as u64) as usize].clone();
                    let knot = live[&name][0];
                    // Either the program in the container or its knot dies.
                    let target = if rng.below(2) == 0 {
                        first_child(knot).unwrap_or(knot)
                    } else {
                        knot
                    };
                    let _ = kill(Pid::from_raw(target), Signal::SIGKILL);
                    touched.insert(name);
                    *counts.entry("kill").or_default() += 1;
                }
                6..=7 => {
                    fixture.signal_tree(Signal::SIGQUIT);
                    *counts.entry("sigquit").or_default() += 1;
                }
                _ => {
                    fixture.kill_tree();
                    fixture.start_tree();
                    // Signals go to the pid in master.pid, as lithos_switch sends them.
                    if !fixture.wait_pid_file(Duration::from_secs(20)) {
                        fail(&fixture, "the new tree did not write master.pid".into());
                    }
                    *counts.entry("tree sigkill").or_default() += 1;
                }
            }
        }
        let want = desired(&choices);
        let now = settle(&fixture, &want);
        for (name, pid) in &pids {
            if want.contains(name) && !touched.contains(name) && now.get(name) != Some(pid) {
                fail(
                    &fixture,
                    format!("round {round}: {name} restarted ({pid} -> {:?}) though nothing asked for it", now.get(name)),
                );
            }
        }
        if let Some((name, pid)) = now.iter().find(|(_, pid)| is_zombie(**pid)) {
            fail(
                &fixture,
                format!("round {round}: {name} ({pid}) exited in a quiet state"),
            );
        }
        pids = now;
    }
    println!("seed {seed}: {rounds} rounds converged; actions {counts:?}");
}
