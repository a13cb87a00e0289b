//! `lithos_check`: validates a lithos config tree (or single container configs) and prints
//! every problem found. Exit status 0 means valid, 1 invalid, 2 a usage error.

use std::process::ExitCode;

use clap::Parser;
use lithos::tools::check::{run, Args};

fn main() -> ExitCode {
    run(Args::parse())
}
