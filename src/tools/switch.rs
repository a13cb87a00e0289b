//! `lithos_switch`: replaces a sandbox's processes file after checking it, then reloads
//! the tree. Exit codes are listed in [`crate::exec::tree::switch::exit_codes`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::exec::tree::switch::{exit_codes, switch, SwitchRequest};
use clap::Parser;

/// Checks NEW_PROCESSES_FILE, installs it as SANDBOX's processes file and reloads lithos_tree.
#[derive(Parser, Debug)]
#[command(name = "lithos_switch", version)]
pub struct Args {
    /// Master config file.
    #[arg(
        short = 'C',
        long = "master",
        visible_alias = "config",
        default_value = "/etc/lithos/master.yaml"
    )]
    master: PathBuf,
    /// Print the plan and stop without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Wait until lithos_tree applied the new file, at most SECONDS (default 60).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
    /// Sandbox name.
    sandbox: String,
    /// The new processes file.
    new_processes_file: PathBuf,
}

/// Parses the command line of `lithos_switch` and runs it, returning its exit status.
pub fn main_from_args() -> ExitCode {
    match Args::try_parse() {
        Ok(args) => run(args),
        Err(error) => {
            let _ = error.print();
            let code = if error.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::OK
            };
            ExitCode::from(code as u8)
        }
    }
}

/// Runs `lithos_switch` with parsed arguments and returns its exit status.
pub fn run(args: Args) -> ExitCode {
    let request = SwitchRequest {
        master: args.master,
        sandbox: args.sandbox,
        new_file: args.new_processes_file,
        dry_run: args.dry_run,
        wait: args.wait.map(Duration::from_secs),
    };
    match switch(&request, &mut std::io::stdout()) {
        Ok(()) => ExitCode::from(exit_codes::OK as u8),
        Err(error) => {
            eprintln!(
                "lithos_switch: {}",
                crate::exec::tree::supervisor::error_chain(&error)
            );
            ExitCode::from(error.exit_code() as u8)
        }
    }
}
