//! `lithos_mkdev DIR`: creates the devfs directory that containers mount as `/dev`.
//!
//! Exit codes: 0 on success, 1 when the devfs could not be created, 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::exec::tree::supervisor::error_chain;

/// Creates the device nodes, `pts/` and `shm/` of a devfs directory (`devfs-dir` in the
/// master config); running it again on a complete directory changes nothing.
#[derive(Parser, Debug)]
#[command(name = "lithos_mkdev", version)]
pub struct Args {
    /// Directory to populate, created when missing.
    dir: PathBuf,
}

/// Runs `lithos_mkdev` with parsed arguments and returns its exit status.
pub fn run(args: Args) -> ExitCode {
    match crate::exec::mkdev::populate(&args.dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lithos_mkdev: {}", error_chain(&error));
            ExitCode::from(1)
        }
    }
}
