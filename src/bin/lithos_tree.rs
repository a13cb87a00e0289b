//! `lithos_tree`: the supervisor. Keeps every configured process running in its container.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lithos::exec::tree::{exit_codes, start, TreeOptions};

/// Runs every process of the lithos config tree in its container and keeps it running.
#[derive(Parser, Debug)]
#[command(name = "lithos_tree", version)]
struct Args {
    /// Master config file.
    #[arg(
        short = 'C',
        long = "config",
        default_value = "/etc/lithos/master.yaml"
    )]
    config: PathBuf,
    /// Log to stderr instead of the master log file or syslog.
    #[arg(long)]
    log_stderr: bool,
    /// Log level (error, warn, info, debug, trace); overrides log-level of master.yaml.
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            let code = if error.use_stderr() {
                exit_codes::USAGE
            } else {
                0
            };
            return ExitCode::from(code as u8);
        }
    };
    let argv: Vec<_> = std::env::args_os().collect();
    let options = TreeOptions {
        config: args.config,
        log_stderr: args.log_stderr,
        log_level: args.log_level,
        argv0: argv.first().map(PathBuf::from).unwrap_or_default(),
        args: argv,
    };
    match start::run(&options) {
        Ok(()) => ExitCode::from(exit_codes::STOPPED as u8),
        Err(error) => {
            eprintln!("lithos_tree: {}", error_chain(&error));
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    lithos::exec::tree::supervisor::error_chain(error)
}
