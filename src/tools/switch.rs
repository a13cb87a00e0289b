//! `lithos_switch`: replaces a sandbox's processes file after checking it, then reloads
//! the tree. Exit codes are listed in [`crate::exec::tree::switch::exit_codes`].

use std::ffi::OsString;
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
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "60"
    )]
    wait: Option<u64>,
    /// Sandbox name.
    sandbox: String,
    /// The new processes file.
    new_processes_file: PathBuf,
}

/// Rewrites `--wait N` to `--wait=N` when N is a number of seconds.
///
/// `--wait` takes an optional value, which clap only accepts as `--wait=N` here so that
/// `--wait SANDBOX FILE` keeps the sandbox name; this keeps the spaced form working too.
pub fn join_wait_value(args: Vec<OsString>) -> Vec<OsString> {
    let mut joined = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let numeric_next = args
            .peek()
            .and_then(|next| next.to_str())
            .is_some_and(|next| next.parse::<u64>().is_ok());
        if arg == "--wait" && numeric_next {
            let mut with_value = OsString::from("--wait=");
            with_value.push(args.next().unwrap_or_default());
            joined.push(with_value);
        } else {
            joined.push(arg);
        }
    }
    joined
}

/// Parses the command line of `lithos_switch` and runs it, returning its exit status.
pub fn main_from_args() -> ExitCode {
    match Args::try_parse_from(join_wait_value(std::env::args_os().collect())) {
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

#[cfg(test)]
mod tests {
    use super::{join_wait_value, Args};
    use clap::Parser;
    use std::ffi::OsString;

    fn parse(line: &[&str]) -> Args {
        let args: Vec<OsString> = line.iter().map(OsString::from).collect();
        Args::try_parse_from(join_wait_value(args)).unwrap()
    }

    #[test]
    fn wait_accepts_every_documented_form() {
        let spaced = parse(&["lithos_switch", "--wait", "20", "sb", "new.yaml"]);
        assert_eq!(spaced.wait, Some(20));
        assert_eq!(spaced.sandbox, "sb");

        let bare = parse(&["lithos_switch", "--wait", "sb", "new.yaml"]);
        assert_eq!(bare.wait, Some(60));
        assert_eq!(bare.sandbox, "sb");

        let equals = parse(&["lithos_switch", "sb", "new.yaml", "--wait=5"]);
        assert_eq!(equals.wait, Some(5));

        let last = parse(&["lithos_switch", "sb", "new.yaml", "--wait"]);
        assert_eq!(last.wait, Some(60));
        assert_eq!(last.new_processes_file.to_str(), Some("new.yaml"));
    }
}
