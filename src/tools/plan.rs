//! `lithos plan`: what the tree would do with the config on disk, without doing it.
//!
//! Loads the desired state as the tree does (a failed sandbox or entry keeps its last good
//! state from `state.bin`), observes the running processes and reads `state.bin`, all
//! read-only: no signal is sent and nothing is written. Then it runs the reconciler once
//! and prints the plan.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::model::spec::DesiredInstance;
use crate::model::{load_tree, ConfigTree, EntryLoad, LoadOptions, SandboxLoad};
use crate::reconcile::{reconcile, render_plan, Desired, Plan, PlanFormat};
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
    /// Reason `state.bin` could not be used, if so (the plan then assumes no history).
    pub state_warning: Option<String>,
    /// The desired state the plan was made for.
    pub desired: Desired,
    /// The persisted state the plan was made with.
    pub persisted: Persisted,
    /// The time the plan was made at.
    pub now: std::time::Duration,
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
    let now = clock::now();
    let plan = reconcile(&desired, &observed, &persisted, now);
    Ok(PlanReport {
        plan,
        tree_pid,
        problems: tree.problems,
        state_warning: persist_error.map(|error| super::cmd::error_chain(&error)),
        desired,
        persisted,
        now,
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
    // Context goes to stderr, so stdout is exactly the rendered plan.
    match report.tree_pid {
        Some(pid) => eprintln!("lithos plan: lithos_tree runs as pid {pid}"),
        None => eprintln!("lithos plan: no lithos_tree runs for this config"),
    }
    if let Some(warning) = &report.state_warning {
        eprintln!("lithos plan: warning: {warning}");
    }
    if !report.problems.is_empty() {
        eprintln!(
            "lithos plan: {} config problem(s); the entries they affect keep their last good state{}",
            report.problems.len(),
            if args.verbose { ":" } else { " (-v lists them)" }
        );
        if args.verbose {
            eprint!("{}", report.problems);
        }
    }
    let format = match args.format {
        super::ps::Format::Text => PlanFormat::Text,
        super::ps::Format::Json => PlanFormat::Json,
    };
    print!(
        "{}",
        render_plan(
            &report.plan,
            &report.desired,
            &report.persisted,
            report.now,
            format,
            args.verbose
        )
    );
    let changes = report.plan.has_changes();
    ExitCode::from(if changes {
        EXIT_CHANGES
    } else {
        EXIT_UNCHANGED
    })
}
