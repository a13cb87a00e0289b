//! End-to-end benchmark of the supervisor: real `lithos_tree` processes on temporary config
//! trees, a busybox image and a runtime dir on a tmpfs this program mounts.
//!
//! Run with `scripts/bench` or `cargo bench --bench supervisor` as root. Options after
//! `--`: `--runs N` (rounds per figure, default 7) and `--skip-large` (leaves out the
//! 1,000-container case). Every figure is printed as median, min and max over rounds that
//! interleave the variants, because the machines this runs on are shared and noisy.
//!
//! The program starts processes, mounts a tmpfs, creates cgroups and may raise kernel
//! limits. It undoes each of these before it exits and signals only pids it started.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, Desired};
use lithos::state::{Observed, ObservedProcess, Persisted, ProcId, ProcessKind};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

type Result<T> = std::result::Result<T, String>;

/// Name of the program the containers run; the comm of a process that has exec'd it.
const PROGRAM_COMM: &str = "sleep";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__floor") {
        floor::run(Path::new(&args[2]));
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root (namespaces, mounts, cgroups)");
        return;
    }
    let runs = args
        .iter()
        .position(|arg| arg == "--runs")
        .and_then(|at| args.get(at + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(7usize);
    let large = !args.iter().any(|arg| arg == "--skip-large");
    let started = Instant::now();
    let code = match Bench::new() {
        Ok(mut bench) => {
            let result = bench.run_all(runs, large);
            bench.cleanup();
            match result {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("benchmark failed: {error}");
                    1
                }
            }
        }
        Err(error) => {
            eprintln!("benchmark setup failed: {error}");
            1
        }
    };
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

/// Prints one figure: median, min and max of `values`.
fn report(name: &str, values: &[Duration]) {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        println!("{name:<40} no samples");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<40} median {:>8.3} ms   min {:>8.3}   max {:>8.3}   (n={})",
        ms(sorted[sorted.len() / 2]),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    );
}

/// Prints one figure of counts (KiB or containers).
fn report_count(name: &str, unit: &str, values: &[u64]) {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        println!("{name:<40} no samples");
        return;
    }
    println!(
        "{name:<40} median {:>8} {unit}  min {:>8}   max {:>8}   (n={})",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}

/// Everything one benchmark run made: temporary dir, tmpfs, raised limits.
struct Bench {
    dir: tempfile::TempDir,
    tmpfs: PathBuf,
    mounted: bool,
    images: PathBuf,
    devfs: PathBuf,
    next_tree: usize,
    limits: Vec<(PathBuf, String)>,
}

impl Bench {
    fn new() -> Result<Bench> {
        // Orphaned knots of a killed tree come back to us, so we reap exactly what we made.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let dir = tempfile::Builder::new()
            .prefix("lithos-bench-")
            .tempdir()
            .map_err(|e| format!("create a temporary dir: {e}"))?;
        let mut bench = Bench {
            tmpfs: dir.path().join("run"),
            images: dir.path().join("images"),
            devfs: dir.path().join("dev"),
            dir,
            mounted: false,
            next_tree: 0,
            limits: Vec::new(),
        };
        fs::create_dir_all(&bench.tmpfs).map_err(|e| e.to_string())?;
        mount(
            Some("tmpfs"),
            &bench.tmpfs,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=512m,mode=755"),
        )
        .map_err(|e| format!("mount a tmpfs on {}: {e}", bench.tmpfs.display()))?;
        bench.mounted = true;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-image");
        let image = bench.images.join("test.v1");
        let made = Command::new(script)
            .arg(&image)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("run make-test-image: {e}"))?;
        if !made.success() {
            return Err("make-test-image failed".into());
        }
        let sleep = "kind: Daemon\nuser-id: 0\ngroup-id: 0\nrestart-timeout: 0.2\n\
                     kill-timeout: 1\nexecutable: /bin/sleep\narguments: [\"3600\"]\n";
        fs::write(image.join("config/sleep.yaml"), sleep).map_err(|e| e.to_string())?;
        fs::write(
            image.join("config/sleep-rpo.yaml"),
            format!("{sleep}restart-process-only: true\n"),
        )
        .map_err(|e| e.to_string())?;
        let mkdev = Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
            .arg(&bench.devfs)
            .status()
            .map_err(|e| format!("run lithos_mkdev: {e}"))?;
        if !mkdev.success() {
            return Err("lithos_mkdev failed".into());
        }
        Ok(bench)
    }

    /// Raises a kernel limit under /proc/sys to at least `minimum`; restored at the end.
    fn raise_limit(&mut self, name: &str, minimum: u64) -> Result<()> {
        let path = Path::new("/proc/sys").join(name);
        let old = fs::read_to_string(&path).map_err(|e| format!("read {name}: {e}"))?;
        let value: u64 = old.trim().parse().unwrap_or(u64::MAX);
        if value < minimum {
            fs::write(&path, minimum.to_string()).map_err(|e| format!("raise {name}: {e}"))?;
            println!(
                "raised {name} from {} to {minimum} for this run",
                old.trim()
            );
            self.limits.push((path, old));
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        for (path, old) in self.limits.drain(..).rev() {
            let _ = fs::write(&path, old.trim());
        }
        if self.mounted {
            let _ = umount2(&self.tmpfs, MntFlags::MNT_DETACH);
            self.mounted = false;
        }
    }

    /// Writes a config tree with `instances` of `config` and returns it, not started.
    fn tree(&mut self, cgroups: bool, config: &str, instances: usize) -> Result<Tree> {
        let index = self.next_tree;
        self.next_tree += 1;
        let root = self.dir.path().join(format!("tree{index}"));
        let runtime = self.tmpfs.join(format!("tree{index}"));
        for sub in ["config/sandboxes", "config/processes", "log"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| e.to_string())?;
        }
        let cgroup_name =
            cgroups.then(|| format!("lithos-bench-{}-{index}.slice", std::process::id()));
        let master = root.join("config/master.yaml");
        let text = format!(
            "runtime-dir: {}\ndevfs-dir: {}\ndefault-log-dir: {}\ncgroup-name: {}\n",
            runtime.display(),
            self.devfs.display(),
            root.join("log").display(),
            cgroup_name.as_deref().unwrap_or("null"),
        );
        fs::write(&master, text).map_err(|e| e.to_string())?;
        let sandbox = format!(
            "image-dir: {}\nallow-users: [0-1]\nallow-groups: [0-1]\n",
            self.images.display()
        );
        fs::write(root.join("config/sandboxes/sb.yaml"), sandbox).map_err(|e| e.to_string())?;
        let processes = format!(
            "{config}:\n  image: test.v1\n  config: /config/{config}.yaml\n  instances: {instances}\n"
        );
        fs::write(root.join("config/processes/sb.yaml"), processes).map_err(|e| e.to_string())?;
        Ok(Tree {
            master,
            cgroup_name,
            child: None,
            instances,
        })
    }

    fn run_all(&mut self, runs: usize, large: bool) -> Result<()> {
        println!("lithos supervisor benchmark: {runs} rounds per figure, median / min / max\n");
        self.raise_limits(if large { 1000 } else { 100 })?;
        bench_reconcile(runs);
        self.bench_starts(runs)?;
        self.bench_restarts(runs)?;
        self.bench_reloads(runs, large)?;
        Ok(())
    }

    /// Limits a tree of `containers` needs: every container is a knot and a program in new
    /// mount, pid, UTS and IPC namespaces.
    fn raise_limits(&mut self, containers: u64) -> Result<()> {
        let processes = 4 * containers + 4096;
        self.raise_limit("kernel/pid_max", processes)?;
        self.raise_limit("kernel/threads-max", processes)?;
        for kind in ["mnt", "pid", "uts", "ipc"] {
            self.raise_limit(
                &format!("user/max_{kind}_namespaces"),
                2 * containers + 1024,
            )?;
        }
        Ok(())
    }

    /// Measures the time from a tree's start until its programs run, next to the bare floor.
    fn bench_starts(&mut self, runs: usize) -> Result<()> {
        let names = [
            "floor: bare namespaces + pivot_root",
            "start 1 container, no cgroups",
            "start 1 container, cgroups",
            "start 20 containers, cgroups",
            "start 100 containers, cgroups",
            "start 100 containers, no cgroups",
        ];
        let mut figures: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
        let image = self.images.join("test.v1");
        for _ in 0..runs {
            figures[0].push(floor::measure(&image)?);
            for (slot, cgroups, count) in [
                (1, false, 1),
                (2, true, 1),
                (3, true, 20),
                (4, true, 100),
                (5, false, 100),
            ] {
                let mut tree = self.tree(cgroups, "sleep", count)?;
                let limit = Duration::from_secs(30);
                let took = tree.start_and_wait(limit);
                tree.stop();
                figures[slot].push(took?);
            }
        }
        for (name, values) in names.iter().zip(&figures) {
            report(name, values);
        }
        Ok(())
    }

    /// Measures the time from SIGKILL of a program until its replacement runs.
    fn bench_restarts(&mut self, runs: usize) -> Result<()> {
        let variants = [
            ("restart, cgroups", true, "sleep"),
            ("restart, no cgroups", false, "sleep"),
            ("restart, restart-process-only", true, "sleep-rpo"),
            (
                "restart, restart-process-only, no cgroups",
                false,
                "sleep-rpo",
            ),
        ];
        let mut trees = Vec::new();
        for (_, cgroups, config) in variants {
            let mut tree = self.tree(cgroups, config, 1)?;
            tree.start_and_wait(Duration::from_secs(30))?;
            trees.push(tree);
        }
        let mut figures: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
        let result = (|| -> Result<()> {
            for _ in 0..runs * 2 {
                for (slot, tree) in trees.iter().enumerate() {
                    // Past restart-timeout (0.2 s) since the last start, and idle.
                    std::thread::sleep(Duration::from_millis(250));
                    figures[slot].push(tree.restart_one(0)?.0);
                }
            }
            Ok(())
        })();
        for tree in &mut trees {
            tree.stop();
        }
        result?;
        for ((name, _, _), values) in variants.iter().zip(&figures) {
            report(name, values);
        }
        Ok(())
    }

    /// Measures SIGQUIT followed at once by SIGKILL of one program, until the replacement
    /// runs. Also counts the containers the reload restarted and samples the memory of
    /// the tree and of a knot.
    fn bench_reloads(&mut self, runs: usize, large: bool) -> Result<()> {
        let sizes: &[usize] = if large { &[100, 1000] } else { &[100] };
        let mut trees = Vec::new();
        for &size in sizes {
            let mut tree = self.tree(true, "sleep", size)?;
            let took = tree.start_and_wait(Duration::from_secs(300));
            if let Ok(took) = &took {
                println!(
                    "(started {size} containers in {:.1} ms, one sample)",
                    took.as_secs_f64() * 1000.0
                );
            }
            trees.push(tree);
            if let Err(error) = took {
                for tree in &mut trees {
                    tree.stop();
                }
                return Err(error);
            }
        }
        let mut latency: Vec<Vec<Duration>> = vec![Vec::new(); sizes.len()];
        let mut restarted: Vec<Vec<u64>> = vec![Vec::new(); sizes.len()];
        let mut memory: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let result = (|| -> Result<()> {
            for round in 0..runs {
                for (slot, tree) in trees.iter().enumerate() {
                    std::thread::sleep(Duration::from_millis(300));
                    if sizes[slot] == 100 {
                        let knots = tree.knots();
                        let tree_pid = tree.pid();
                        let (rss, anon) = memory_of(tree_pid)?;
                        memory
                            .entry("tree VmRSS, 100 containers")
                            .or_default()
                            .push(rss);
                        memory
                            .entry("tree RssAnon, 100 containers")
                            .or_default()
                            .push(anon);
                        let (rss, anon) = memory_of(knots[round % knots.len()])?;
                        memory.entry("knot VmRSS").or_default().push(rss);
                        memory.entry("knot RssAnon").or_default().push(anon);
                    }
                    let before = tree.knots();
                    let victim = (round * 37) % before.len();
                    let (took, old_knot) = tree.reload_and_restart(victim)?;
                    latency[slot].push(took);
                    // The new image may restart containers in its later passes too.
                    std::thread::sleep(Duration::from_millis(700));
                    let after: BTreeSet<i32> = tree.knots().into_iter().collect();
                    let lost = before
                        .iter()
                        .filter(|pid| **pid != old_knot && !after.contains(pid))
                        .count();
                    restarted[slot].push(lost as u64);
                }
            }
            Ok(())
        })();
        for tree in &mut trees {
            tree.stop();
        }
        result?;
        for (slot, size) in sizes.iter().enumerate() {
            report(
                &format!("reload + restart, {size} containers"),
                &latency[slot],
            );
            report_count(
                &format!("containers restarted by reload, {size}"),
                "",
                &restarted[slot],
            );
        }
        for (name, values) in &memory {
            report_count(name, "KiB", values);
        }
        Ok(())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// One `lithos_tree` on its own config tree and runtime dir.
struct Tree {
    master: PathBuf,
    cgroup_name: Option<String>,
    child: Option<Child>,
    instances: usize,
}

impl Tree {
    fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|child| child.id() as i32)
            .unwrap_or(0)
    }

    /// Starts the tree; returns the time until every instance's program runs.
    fn start_and_wait(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_lithos_tree"))
            .arg("-C")
            .arg(&self.master)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start lithos_tree: {e}"))?;
        self.child = Some(child);
        let mut running: BTreeSet<i32> = BTreeSet::new();
        loop {
            for knot in self.knots() {
                if !running.contains(&knot) && program_of(knot).is_some() {
                    running.insert(knot);
                }
            }
            if running.len() >= self.instances {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "{} of {} containers running after {limit:?} ({})",
                    running.len(),
                    self.instances,
                    self.master.display()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Returns the tree's children: its knots (and, briefly, a child before its exec).
    fn knots(&self) -> Vec<i32> {
        children(self.pid())
    }

    /// Kills the program of the `index`th knot; returns the time until a replacement runs
    /// and the knot pid it ran under.
    fn restart_one(&self, index: usize) -> Result<(Duration, i32)> {
        let knots = self.knots();
        let knot = *knots.get(index).ok_or("no knot")?;
        let program = program_of(knot).ok_or("program not running")?;
        let started = Instant::now();
        kill(Pid::from_raw(program), Signal::SIGKILL).map_err(|e| e.to_string())?;
        self.wait_replacement(program, started)?;
        Ok((started.elapsed(), knot))
    }

    /// Sends SIGQUIT to the tree and at once SIGKILL to the program of the `index`th knot;
    /// returns the time until a replacement runs and the killed program's knot.
    fn reload_and_restart(&self, index: usize) -> Result<(Duration, i32)> {
        let knots = self.knots();
        let knot = *knots.get(index).ok_or("no knot")?;
        let program = program_of(knot).ok_or("program not running")?;
        let started = Instant::now();
        kill(Pid::from_raw(self.pid()), Signal::SIGQUIT).map_err(|e| e.to_string())?;
        kill(Pid::from_raw(program), Signal::SIGKILL).map_err(|e| e.to_string())?;
        let old: BTreeSet<i32> = knots.into_iter().filter(|pid| *pid != knot).collect();
        let limit = Duration::from_secs(30);
        loop {
            // A replacement is a program under a new knot, or a new program under the old
            // knot (restart-process-only).
            let found = children(self.pid())
                .into_iter()
                .filter(|pid| !old.contains(pid))
                .filter_map(program_of)
                .any(|pid| pid != program);
            if found {
                return Ok((started.elapsed(), knot));
            }
            if started.elapsed() > limit {
                return Err(format!("no replacement after {limit:?}"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn wait_replacement(&self, old_program: i32, started: Instant) -> Result<()> {
        let limit = Duration::from_secs(10);
        loop {
            let found = self
                .knots()
                .into_iter()
                .filter_map(program_of)
                .any(|pid| pid != old_program);
            if found {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("no replacement after {limit:?}"));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Kills the tree and its knots (the namespaces' programs die with them), reaps them
    /// and removes the tree's cgroups.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let knots = children(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        // The tree is gone, so its knots are now our children because we are their
        // subreaper. A knot forked just before the kill is found the same way.
        let mut ours: BTreeSet<i32> = knots.into_iter().collect();
        let master = self.master.to_string_lossy().into_owned();
        for pid in children(std::process::id() as i32) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&format!("--master {master}")) {
                ours.insert(pid);
            }
        }
        for pid in &ours {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for pid in &ours {
            loop {
                match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    _ => break,
                }
            }
        }
        if let Some(name) = &self.cgroup_name {
            remove_cgroups(name);
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.stop();
    }
}

fn remove_cgroups(name: &str) {
    let Ok(cgroups) = lithos::exec::cgroup::Cgroups::discover(Path::new("/proc"), name, &[]) else {
        return;
    };
    for base in cgroups.base_dirs() {
        for _ in 0..100 {
            if let Ok(entries) = fs::read_dir(&base) {
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        let _ = fs::remove_dir(entry.path());
                    }
                }
            }
            if fs::remove_dir(&base).is_ok() || !base.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Returns the children of `pid` from `/proc/PID/task/PID/children` (a single-threaded
/// parent).
fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect()
}

/// Returns the pid of the program under `knot` once it has executed the program and is
/// not a zombie.
fn program_of(knot: i32) -> Option<i32> {
    let first = *children(knot).first()?;
    let stat = fs::read_to_string(format!("/proc/{first}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next()?;
    (comm == PROGRAM_COMM && state != "Z").then_some(first)
}

/// Reads VmRSS and RssAnon of `pid` in KiB.
fn memory_of(pid: i32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("RssAnon:")))
}

/// Times one `reconcile` pass over a steady tree of 1,000 and 10,000 instances.
fn bench_reconcile(runs: usize) {
    for size in [1_000usize, 10_000] {
        let now = Duration::from_secs(100_000);
        let sec = Duration::from_secs(1);
        let mut desired = Desired::default();
        let mut observed = Observed::default();
        let mut persisted = Persisted::default();
        for index in 0..size {
            let name = InstanceName::new(
                format!("sandbox{:03}", index % 100),
                format!("process{}", (index / 100) % 10),
                (index / 1000) as u32,
            );
            let instance = sample_instance(name.clone(), "fp", 10 * sec, 5 * sec);
            let id = ProcId {
                pid: 1000 + index as i32,
                start_time: 5000 + index as u64,
            };
            persisted.record_spawn(&instance, id, now - 1000 * sec);
            observed.processes.push(ObservedProcess {
                id,
                kind: ProcessKind::Knot {
                    name: name.clone(),
                    fingerprint: "fp".into(),
                },
                is_child: true,
                zombie: false,
            });
            desired.instances.insert(name, instance);
        }
        let mut values = Vec::new();
        for _ in 0..runs.max(5) * 3 {
            let started = Instant::now();
            let plan = reconcile(&desired, &observed, &persisted, now);
            values.push(started.elapsed());
            let _ = std::hint::black_box(plan);
        }
        report(&format!("reconcile, {size} instances (steady)"), &values);
    }
}

/// The bare floor: what starting a container costs without any supervisor.
mod floor {
    use super::*;
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{chdir, execv, fork, pivot_root, ForkResult};
    use std::ffi::CString;

    /// Runs this program as the floor and returns the time until its child has exec'd the
    /// program.
    pub fn measure(image: &Path) -> Result<Duration> {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .arg("__floor")
            .arg(image)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the floor: {e}"))?;
        let pid = child.id() as i32;
        let limit = Duration::from_secs(10);
        let result = loop {
            if program_of(pid).is_some() {
                break Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                break Err("the floor did not start its program".to_string());
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        // Killing the pid namespace's init ends the namespace; the floor then exits.
        for program in children(pid) {
            let _ = kill(Pid::from_raw(program), Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        result
    }

    /// Runs the floor itself: the same namespaces as a knot, the image bind-mounted, /proc
    /// mounted, pivot_root, and exec of the same program. Never returns.
    pub fn run(image: &Path) -> ! {
        let flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        if let Err(error) = unshare(flags) {
            eprintln!("floor: unshare: {error}");
            std::process::exit(1);
        }
        // SAFETY: this process has one thread, so the child may run any code.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
                std::process::exit(0);
            }
            Ok(ForkResult::Child) => {
                let error = enter(image);
                eprintln!("floor: {error}");
                std::process::exit(1);
            }
            Err(error) => {
                eprintln!("floor: fork: {error}");
                std::process::exit(1);
            }
        }
    }

    fn enter(image: &Path) -> String {
        let none: Option<&str> = None;
        let steps = || -> nix::Result<()> {
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
            mount(Some(image), image, none, MsFlags::MS_BIND, none)?;
            mount(
                Some("proc"),
                &image.join("proc"),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                none,
            )?;
            chdir(image)?;
            pivot_root(".", ".")?;
            umount2(".", MntFlags::MNT_DETACH)?;
            chdir("/")?;
            let program = CString::new("/bin/sleep").unwrap_or_default();
            let argument = CString::new("3600").unwrap_or_default();
            execv(&program, &[program.clone(), argument])?;
            Ok(())
        };
        match steps() {
            Ok(()) => "exec returned".into(),
            Err(error) => error.to_string(),
        }
    }
}
