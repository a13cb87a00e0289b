//! `lithos_ps`: shows the running trees, their containers and the processes inside them.
//!
//! Everything comes from `/proc` (and `status.json` in a tree's runtime-dir when it can
//! be read), so any user who can read `/proc` gets the report, with or without a tree.
//! A knot is recognised by its command line (`lithos_knot --name NAME --master PATH`), a
//! tree by argument zero `lithos_tree` and its `-C/--config` flag.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::state::{clock, parse_knot_args};

use super::DEFAULT_MASTER;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the report was printed (also when no tree runs)
  1  /proc could not be read
  2  invalid command line";

/// Shows what lithos runs: trees, containers and the processes inside them.
#[derive(Parser, Debug, Clone)]
#[command(name = "lithos_ps", version, after_help = EXIT_CODES_HELP)]
pub struct Args {
    /// Show only the tree of this master config (default: every tree found).
    #[arg(short = 'C', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value = "text")]
    pub format: Format,
    /// Same as --format json (the original's flag).
    #[arg(long = "json")]
    pub json: bool,
    /// Refresh the display every second until interrupted.
    #[arg(long = "monitor")]
    pub monitor: bool,
    /// Color the text output even when stdout is not a terminal.
    #[arg(long = "force-color", conflicts_with = "no_color")]
    pub force_color: bool,
    /// Never color the text output.
    #[arg(long = "no-color")]
    pub no_color: bool,
}

/// Output format of `lithos_ps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Indented text for people.
    Text,
    /// One JSON document for tools.
    Json,
}

/// Everything `lithos_ps` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Running trees.
    pub trees: Vec<TreeReport>,
    /// Knots whose tree (same `--master`) is not running.
    pub unsupervised: Vec<InstanceReport>,
    /// Commands of `lithos_cmd`.
    pub commands: Vec<InstanceReport>,
}

/// One running `lithos_tree`.
#[derive(Clone, Debug, Serialize)]
pub struct TreeReport {
    /// Pid of the tree.
    pub pid: i32,
    /// Absolute master config path.
    pub master: PathBuf,
    /// Seconds since the tree process started (a re-exec keeps the start time).
    pub uptime_secs: f64,
    /// Config generation from `status.json`, when readable.
    pub generation: Option<u64>,
    /// Load problems from `status.json`, keyed by scope.
    pub errors: BTreeMap<String, Vec<String>>,
    /// Instances: knots of the tree and instances `status.json` lists without a knot.
    pub instances: Vec<InstanceReport>,
    /// Children of the tree that are not knots of its master config.
    pub unknown: Vec<ProcessNode>,
}

/// One container (a knot) or an instance waiting to restart.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceReport {
    /// `SANDBOX/PROCESS.N` or `SANDBOX/cmd.NAME.PID`.
    pub name: String,
    /// Knot pid; `None` for an instance with no knot (restarting).
    pub pid: Option<i32>,
    /// `running`, `starting`, `stopping`, `restarting`, `unsupervised` or `command`.
    pub state: String,
    /// Master config path on the knot's command line.
    pub master: String,
    /// Config fingerprint on the knot's command line.
    pub fingerprint: String,
    /// Seconds since the knot started.
    pub uptime_secs: Option<f64>,
    /// Starts after the first, from `status.json`.
    pub restarts: Option<u64>,
    /// CPU time of the knot and every process below it, in seconds.
    pub cpu_secs: f64,
    /// Resident memory of the knot and every process below it, in bytes.
    pub memory_bytes: u64,
    /// The knot and the processes below it.
    pub processes: Option<ProcessNode>,
}

/// A process and its children.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessNode {
    /// Pid in the caller's pid namespace.
    pub pid: i32,
    /// Command line, arguments joined by spaces.
    pub cmdline: String,
    /// Child processes.
    pub children: Vec<ProcessNode>,
}

/// A process as read from `/proc`.
#[derive(Clone, Debug)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    /// Clock ticks since boot.
    start_time: u64,
    /// User plus system time in clock ticks.
    cpu_ticks: u64,
    /// Resident set in pages.
    rss_pages: u64,
    cmdline: Vec<String>,
}

/// Runs `lithos_ps`; exit 0 when the report was printed, 1 when `/proc` cannot be read.
pub fn run(args: Args) -> ExitCode {
    let format = if args.json { Format::Json } else { args.format };
    let color = !args.no_color && (args.force_color || std::io::stdout().is_terminal());
    loop {
        let report = match collect(Path::new("/proc"), args.config.as_deref()) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("lithos_ps: failed to read /proc: {error}");
                return ExitCode::from(1);
            }
        };
        let text = match format {
            Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
            Format::Text => render_text(&report, color),
        };
        let mut stdout = std::io::stdout().lock();
        if args.monitor {
            // Home the cursor and clear the screen, so the report refreshes in place.
            let _ = stdout.write_all(b"\x1b[H\x1b[2J");
        }
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // stdout closed (a pager quit): nothing more to show.
            return ExitCode::SUCCESS;
        }
        drop(stdout);
        if !args.monitor {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Reads every process of `proc_root` and groups trees, knots and commands; with
/// `only_master`, only that tree and its knots are reported.
pub fn collect(proc_root: &Path, only_master: Option<&Path>) -> std::io::Result<Report> {
    let processes = read_processes(proc_root)?;
    let by_pid: BTreeMap<i32, &ProcInfo> = processes.iter().map(|p| (p.pid, p)).collect();
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for process in &processes {
        children.entry(process.ppid).or_default().push(process.pid);
    }
    let only_master = only_master.map(crate::model::master::absolute);
    let now = clock::now();
    let context = Context {
        by_pid: &by_pid,
        children: &children,
        now,
    };

    let mut trees: Vec<TreeReport> = processes
        .iter()
        .filter_map(|p| tree_master(proc_root, p).map(|master| (p, master)))
        .filter(|(_, master)| only_master.as_ref().is_none_or(|only| only == master))
        .map(|(p, master)| TreeReport {
            pid: p.pid,
            master,
            uptime_secs: context.uptime(p.start_time),
            generation: None,
            errors: BTreeMap::new(),
            instances: Vec::new(),
            unknown: Vec::new(),
        })
        .collect();
    let tree_pids: BTreeSet<i32> = trees.iter().map(|t| t.pid).collect();

    let mut report = Report::default();
    for process in &processes {
        let Some(knot) = parse_knot_args(&process.cmdline) else {
            continue;
        };
        // A knot forks its program; the copy keeps the knot's command line until exec.
        if let Some(parent) = by_pid.get(&process.ppid) {
            if parent.cmdline == process.cmdline {
                continue;
            }
        }
        if let Some(only) = &only_master {
            if Path::new(&knot.master) != only {
                continue;
            }
        }
        let instance = context.instance(process, &knot);
        if knot.name.contains("/cmd.") {
            report.commands.push(InstanceReport {
                state: "command".into(),
                ..instance
            });
            continue;
        }
        let owner = trees
            .iter_mut()
            .find(|tree| tree.master == Path::new(&knot.master));
        match owner {
            Some(tree) => tree.instances.push(instance),
            None => report.unsupervised.push(InstanceReport {
                state: "unsupervised".into(),
                ..instance
            }),
        }
    }

    for tree in &mut trees {
        let tree_cmdline = by_pid.get(&tree.pid).map(|p| p.cmdline.clone());
        for child in children.get(&tree.pid).into_iter().flatten() {
            let Some(info) = by_pid.get(child) else {
                continue;
            };
            let is_knot = parse_knot_args(&info.cmdline).is_some();
            let is_forking = Some(&info.cmdline) == tree_cmdline.as_ref();
            if !is_knot && !is_forking && !tree_pids.contains(child) {
                tree.unknown.push(context.node(*child));
            }
        }
        apply_status(tree);
        tree.instances.sort_by(|a, b| a.name.cmp(&b.name));
    }
    report.trees = trees;
    Ok(report)
}

struct Context<'a> {
    by_pid: &'a BTreeMap<i32, &'a ProcInfo>,
    children: &'a BTreeMap<i32, Vec<i32>>,
    now: Duration,
}

impl Context<'_> {
    fn uptime(&self, start_time: u64) -> f64 {
        self.now
            .saturating_sub(clock::ticks_to_duration(start_time))
            .as_secs_f64()
    }

    fn node(&self, pid: i32) -> ProcessNode {
        let cmdline = self
            .by_pid
            .get(&pid)
            .map(|p| p.cmdline.join(" "))
            .unwrap_or_default();
        let children = self
            .children
            .get(&pid)
            .into_iter()
            .flatten()
            .map(|child| self.node(*child))
            .collect();
        ProcessNode {
            pid,
            cmdline,
            children,
        }
    }

    /// Sums CPU ticks and resident pages of `pid` and every process below it.
    fn usage(&self, pid: i32) -> (u64, u64) {
        let Some(info) = self.by_pid.get(&pid) else {
            return (0, 0);
        };
        let mut total = (info.cpu_ticks, info.rss_pages);
        for child in self.children.get(&pid).into_iter().flatten() {
            let (cpu, rss) = self.usage(*child);
            total.0 += cpu;
            total.1 += rss;
        }
        total
    }

    fn instance(&self, process: &ProcInfo, knot: &crate::state::KnotArgs) -> InstanceReport {
        let (cpu_ticks, rss_pages) = self.usage(process.pid);
        InstanceReport {
            name: knot.name.clone(),
            pid: Some(process.pid),
            state: "running".into(),
            master: knot.master.clone(),
            fingerprint: knot.fingerprint.clone(),
            uptime_secs: Some(self.uptime(process.start_time)),
            restarts: None,
            cpu_secs: clock::ticks_to_duration(cpu_ticks).as_secs_f64(),
            memory_bytes: rss_pages * page_size(),
            processes: Some(self.node(process.pid)),
        }
    }
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |size| size as u64)
}

/// Returns the absolute master path of a `lithos_tree` process, `None` for other processes.
fn tree_master(proc_root: &Path, process: &ProcInfo) -> Option<PathBuf> {
    let program = process.cmdline.first()?;
    if Path::new(program).file_name()? != "lithos_tree" {
        return None;
    }
    let mut master = PathBuf::from(DEFAULT_MASTER);
    let mut args = process.cmdline[1..].iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--config=") {
            master = PathBuf::from(value);
        } else if arg == "-C" || arg == "--config" {
            master = PathBuf::from(args.next()?);
        } else if let Some(value) = arg.strip_prefix("-C").filter(|v| !v.is_empty()) {
            master = PathBuf::from(value);
        }
    }
    if master.is_relative() {
        let cwd = fs::read_link(proc_root.join(process.pid.to_string()).join("cwd")).ok()?;
        master = cwd.join(master);
    }
    Some(crate::model::master::absolute(&master))
}

/// The parts of the tree's `status.json` that `lithos_ps` shows.
#[derive(Debug, Default, serde::Deserialize)]
struct StatusFile {
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    errors: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    instances: BTreeMap<String, StatusInstance>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct StatusInstance {
    #[serde(default)]
    state: String,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    starts: u64,
}

/// Adds states and restarts from the tree's `status.json`, and lists the instances that
/// have no knot now (waiting out restart-timeout).
fn apply_status(tree: &mut TreeReport) {
    let Ok(master) = crate::model::load_master(&tree.master) else {
        return;
    };
    let Ok(text) = fs::read(master.runtime_dir.join("status.json")) else {
        return;
    };
    let Ok(status) = serde_json::from_slice::<StatusFile>(&text) else {
        return;
    };
    tree.generation = status.generation;
    tree.errors = status.errors;
    for instance in &mut tree.instances {
        match status.instances.get(&instance.name) {
            Some(known) => {
                instance.restarts = Some(known.starts.saturating_sub(1));
                if known.pid == instance.pid {
                    instance.state = display_state(&known.state).to_string();
                } else {
                    // A knot the status does not record as the instance's: a duplicate or
                    // an outdated one the tree is stopping.
                    instance.state = "stopping".into();
                }
            }
            // Not in the config any more: the tree is stopping it.
            None => instance.state = "stopping".into(),
        }
    }
    for (name, known) in &status.instances {
        let has_knot = tree.instances.iter().any(|i| &i.name == name);
        if !has_knot && matches!(known.state.as_str(), "waiting" | "starting") {
            tree.instances.push(InstanceReport {
                name: name.clone(),
                pid: None,
                state: display_state(&known.state).to_string(),
                master: tree.master.display().to_string(),
                fingerprint: String::new(),
                uptime_secs: None,
                restarts: Some(known.starts.saturating_sub(1)),
                cpu_secs: 0.0,
                memory_bytes: 0,
                processes: None,
            });
        }
    }
}

/// Maps a state of `status.json` to the word `lithos_ps` shows.
fn display_state(state: &str) -> &str {
    match state {
        "waiting" => "restarting",
        "" => "running",
        other => other,
    }
}

fn read_processes(proc_root: &Path) -> std::io::Result<Vec<ProcInfo>> {
    let mut processes = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // A process that exits while it is read is skipped.
        if let Some(info) = read_process(&entry.path(), pid) {
            processes.push(info);
        }
    }
    processes.sort_by_key(|p| p.pid);
    Ok(processes)
}

fn read_process(dir: &Path, pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from the state (field 3 of proc(5)) on.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let cmdline_bytes = fs::read(dir.join("cmdline")).ok()?;
    let cmdline = cmdline_bytes
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: field(22)?,
        cpu_ticks: field(14)? + field(15)?,
        rss_pages: field(24)?,
        cmdline,
    })
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Renders the report as indented text.
pub fn render_text(report: &Report, color: bool) -> String {
    let paint = |code: &str, text: &str| {
        if color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    if report.trees.is_empty() {
        out.push_str("no lithos_tree is running\n");
    }
    for tree in &report.trees {
        let generation = tree
            .generation
            .map(|g| format!(" generation {g}"))
            .unwrap_or_default();
        out.push_str(&paint(
            BOLD,
            &format!(
                "lithos_tree pid {} master {} up {}{generation}",
                tree.pid,
                tree.master.display(),
                format_duration(tree.uptime_secs)
            ),
        ));
        out.push('\n');
        for (scope, problems) in &tree.errors {
            for problem in problems {
                out.push_str(&format!("  {} {scope}: {problem}\n", paint(RED, "error")));
            }
        }
        if tree.instances.is_empty() {
            out.push_str("  no containers\n");
        }
        for instance in &tree.instances {
            render_instance(&mut out, instance, &paint);
        }
        for unknown in &tree.unknown {
            out.push_str(&format!(
                "  {} pid {} {}\n",
                paint(RED, "unknown child"),
                unknown.pid,
                unknown.cmdline
            ));
            render_children(&mut out, &unknown.children, "    ");
        }
    }
    if !report.unsupervised.is_empty() {
        out.push_str(&paint(BOLD, "knots without a running tree:"));
        out.push('\n');
        for instance in &report.unsupervised {
            render_instance(&mut out, instance, &paint);
        }
    }
    if !report.commands.is_empty() {
        out.push_str(&paint(BOLD, "commands:"));
        out.push('\n');
        for instance in &report.commands {
            render_instance(&mut out, instance, &paint);
        }
    }
    out
}

fn render_instance(
    out: &mut String,
    instance: &InstanceReport,
    paint: &dyn Fn(&str, &str) -> String,
) {
    let state_color = match instance.state.as_str() {
        "running" | "command" => GREEN,
        "stopping" | "restarting" | "starting" => YELLOW,
        _ => RED,
    };
    let pid = instance
        .pid
        .map_or_else(|| "-".to_string(), |pid| pid.to_string());
    let uptime = instance
        .uptime_secs
        .map_or_else(|| "-".to_string(), format_duration);
    let restarts = instance
        .restarts
        .map_or_else(|| "-".to_string(), |r| r.to_string());
    out.push_str(&format!(
        "  {} pid {pid} {} up {uptime} restarts {restarts} cpu {:.2}s mem {}\n",
        instance.name,
        paint(state_color, &instance.state),
        instance.cpu_secs,
        format_bytes(instance.memory_bytes)
    ));
    if instance.state == "unsupervised" {
        out.push_str(&format!("    master {}\n", instance.master));
    }
    if let Some(root) = &instance.processes {
        render_children(out, &root.children, "    ");
    }
}

fn render_children(out: &mut String, nodes: &[ProcessNode], indent: &str) {
    for node in nodes {
        out.push_str(&format!("{indent}└─ {} {}\n", node.pid, node.cmdline));
        render_children(out, &node.children, &format!("{indent}   "));
    }
}

/// Formats seconds as `1d2h`, `3h4m`, `5m6s` or `7s`.
pub fn format_duration(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format() {
        assert_eq!(format_duration(7.9), "7s");
        assert_eq!(format_duration(366.0), "6m6s");
        assert_eq!(format_duration(3.0 * 3600.0 + 240.0), "3h4m");
        assert_eq!(format_duration(90_000.0), "1d1h");
    }

    #[test]
    fn bytes_format() {
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_bytes(1536), "1.5KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0MiB");
    }
}
