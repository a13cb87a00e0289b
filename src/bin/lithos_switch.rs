//! `lithos_switch`: replace a sandbox's processes file after checking it, then reload.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lithos::exec::tree::switch::{exit_codes, switch, SwitchRequest};

/// Checks NEW_PROCESSES_FILE, installs it as SANDBOX's processes file and reloads lithos_tree.
#[derive(Parser, Debug)]
#[command(name = "lithos_switch", version)]
struct Args {
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

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            let code = if error.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::OK
            };
            return ExitCode::from(code as u8);
        }
    };
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
                lithos::exec::tree::supervisor::error_chain(&error)
            );
            ExitCode::from(error.exit_code() as u8)
        }
    }
}
