//! `lithos plan`: what the tree would do with the config on disk, without doing it.
//!
//! Loads the desired state as the tree does (a failed sandbox or entry keeps its last good
//! state from `state.bin`), observes the running processes and reads `state.bin`, all
//! read-only: no signal is sent and nothing is written. Then it runs the reconciler once
//! and prints the plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::model::spec::DesiredInstance;
use crate::model::{load_tree, ConfigTree, EntryLoad, LoadOptions, SandboxLoad};
use crate::reconcile::{reconcile, Action, Desired, Plan};
use crate::state::{clock, observe, ObserveRoots, Observed, Persisted};

use super::DEFAULT_MASTER;

/// Exit status when nothing would change.
pub const EXIT_UNCHANGED: u8 = 0;
/// Exit status when the config or the state cannot be read.
pub const EXIT_ERROR: u8 = 1;
/// Exit status when the tree would start, stop or retire something.
pub const EXIT_CHANGES: u8 = 2;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  nothing would change
  1  the master config or the running processes could not be read
  2  the tree would start, stop or retire something (also: invalid command line)";

/// Shows what the tree would do with the config on disk (read-only).
#[derive(Parser, Debug, Clone)]
#[command(name = "lithos plan", version, after_help = EXIT_CODES_HELP)]
pub struct Args {
    /// Master config file.
    #[arg(short = 'C', long = "config", value_name = "FILE", default_value = DEFAULT_MASTER)]
    pub config: PathBuf,
    /// Sandbox whose processes file --alternate-config replaces.
    #[arg(long = "sandbox", value_name = "NAME", requires = "alternate_config")]
    pub sandbox: Option<String>,
    /// Processes file to plan with in place of the sandbox's current one.
    #[arg(long = "alternate-config", value_name = "FILE", requires = "sandbox")]
    pub alternate_config: Option<PathBuf>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value = "text")]
    pub format: super::ps::Format,
    /// Also print the state of every instance and the config problems.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// Error of `lithos plan`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The master config could not be loaded.
    #[error("failed to load master config {path}:\n{problems}")]
    LoadMaster {
        /// Master config path.
        path: PathBuf,
        /// Problems of the master config.
        problems: crate::model::Problems,
    },
    /// The running processes could not be read.
    #[error("failed to observe running processes")]
    Observe(#[source] crate::state::ObserveError),
}

/// A plan with what it was made from.
#[derive(Debug)]
pub struct PlanReport {
    /// The plan.
    pub plan: Plan,
    /// Pid of the running tree, if one runs.
    pub tree_pid: Option<i32>,
    /// Config problems; the instances they affect keep their last good state.
    pub problems: crate::model::Problems,
    /// Why `state.bin` could not be used, if so (the plan then assumes no history).
    pub state_warning: Option<String>,
}

/// Builds the plan for the tree of `args.config`, read-only.
pub fn make_plan(args: &Args, roots: &ObserveRoots) -> Result<PlanReport, PlanError> {
    let options = LoadOptions {
        alternate: args.sandbox.clone().zip(args.alternate_config.clone()),
    };
    let tree = load_tree(&args.config, &options).map_err(|problems| PlanError::LoadMaster {
        path: args.config.clone(),
        problems,
    })?;
    let (persisted, persist_error) = Persisted::load(&tree.master.runtime_dir.join("state.bin"));
    let desired = desired_state(&tree, &persisted);
    let tree_pid = running_tree(&roots.proc_root, &tree.master.runtime_dir);
    let observed = match tree_pid {
        // Empty cgroup dirs make the observer look for knots of this master in every
        // process, which needs no cgroup to be created.
        Some(pid) => observe(roots, pid, &tree.master_path, &[]).map_err(PlanError::Observe)?,
        None => observe_without_tree(roots, &tree.master_path)?,
    };
    let plan = reconcile(&desired, &observed, &persisted, clock::now());
    Ok(PlanReport {
        plan,
        tree_pid,
        problems: tree.problems,
        state_warning: persist_error.map(|error| super::cmd::error_chain(&error)),
    })
}

/// Observes the knots of `master` as a tree started now would: this process has no
/// children, so only knots left by an earlier tree show up.
fn observe_without_tree(roots: &ObserveRoots, master: &Path) -> Result<Observed, PlanError> {
    let own = std::process::id() as i32;
    let mut observed = observe(roots, own, master, &[]).map_err(PlanError::Observe)?;
    // Threads or helpers of this process are not a tree's children.
    observed.processes.retain(|process| !process.is_child);
    Ok(observed)
}

/// Returns the desired instances as the tree derives them: what loaded, and the last good
/// state of sandboxes and entries that failed to load.
pub fn desired_state(tree: &ConfigTree, persisted: &Persisted) -> Desired {
    let mut instances: Vec<DesiredInstance> = Vec::new();
    for (sandbox, load) in &tree.sandboxes {
        match load {
            SandboxLoad::Loaded { entries } => {
                for (entry, load) in entries {
                    match load {
                        EntryLoad::Daemon { instances: loaded } => {
                            instances.extend(loaded.iter().cloned())
                        }
                        EntryLoad::Command { .. } => {}
                        EntryLoad::Failed => instances
                            .extend(persisted.last_good(sandbox, entry).unwrap_or_default()),
                    }
                }
            }
            SandboxLoad::Failed => {
                let entries = persisted
                    .sandboxes
                    .get(sandbox)
                    .map(|record| record.last_good.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                for entry in entries {
                    instances.extend(persisted.last_good(sandbox, &entry).unwrap_or_default());
                }
            }
        }
    }
    instances.into_iter().collect()
}

/// Returns the pid in `runtime-dir/master.pid` when that process is a `lithos_tree`.
fn running_tree(proc_root: &Path, runtime_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(runtime_dir.join("master.pid")).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(proc_root.join(pid.to_string()).join("cmdline")).ok()?;
    let program = cmdline.split(|&b| b == 0).next()?;
    let name = Path::new(std::str::from_utf8(program).ok()?).file_name()?;
    (name == "lithos_tree").then_some(pid)
}

/// One action in the JSON output.
#[derive(Serialize)]
struct ActionJson {
    action: &'static str,
    name: Option<String>,
    pid: Option<i32>,
    reason: String,
    text: String,
}

impl From<&Action> for ActionJson {
    fn from(action: &Action) -> Self {
        let (kind, pid) = match action {
            Action::Spawn { .. } => ("start", None),
            Action::Signal { target, .. } => ("sigterm", Some(target.pid)),
            Action::Kill { target, .. } => ("sigkill", Some(target.pid)),
            Action::Retire { .. } => ("retire", None),
            Action::Wait { .. } => ("wait", None),
        };
        ActionJson {
            action: kind,
            name: action.name().map(ToString::to_string),
            pid,
            reason: action.reason().to_string(),
            text: action.to_string(),
        }
    }
}

#[derive(Serialize)]
struct PlanJson<'a> {
    changes: bool,
    tree_pid: Option<i32>,
    actions: Vec<ActionJson>,
    states: BTreeMap<String, &'a crate::reconcile::InstanceState>,
    problems: &'a crate::model::Problems,
    state_warning: &'a Option<String>,
}

/// Runs `lithos plan`: exit 0 when nothing would change, 2 when something would, 1 on
/// error.
pub fn run(args: Args) -> ExitCode {
    let report = match make_plan(&args, &ObserveRoots::default()) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("lithos plan: {}", super::cmd::error_chain(&error));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let changes = report.plan.has_changes();
    match args.format {
        super::ps::Format::Json => {
            let json = PlanJson {
                changes,
                tree_pid: report.tree_pid,
                actions: report.plan.actions.iter().map(ActionJson::from).collect(),
                states: report
                    .plan
                    .states
                    .iter()
                    .map(|(name, state)| (name.to_string(), state))
                    .collect(),
                problems: &report.problems,
                state_warning: &report.state_warning,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
        super::ps::Format::Text => print_text(&args, &report),
    }
    ExitCode::from(if changes {
        EXIT_CHANGES
    } else {
        EXIT_UNCHANGED
    })
}

fn print_text(args: &Args, report: &PlanReport) {
    match report.tree_pid {
        Some(pid) => println!("lithos_tree runs as pid {pid}"),
        None => println!("no lithos_tree runs for this config"),
    }
    if let Some(warning) = &report.state_warning {
        eprintln!("lithos plan: warning: {warning}");
    }
    if !report.problems.is_empty() {
        eprintln!(
            "lithos plan: {} config problem(s); affected entries keep their last good state{}",
            report.problems.len(),
            if args.verbose {
                ":"
            } else {
                " (-v lists them)"
            }
        );
        if args.verbose {
            eprint!("{}", report.problems);
        }
    }
    if report.plan.actions.is_empty() {
        println!("nothing to do");
    }
    for action in &report.plan.actions {
        println!("{action}");
    }
    if args.verbose {
        for (name, state) in &report.plan.states {
            println!("state {name}: {state:?}");
        }
    }
}
