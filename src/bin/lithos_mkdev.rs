//! `lithos_mkdev DIR`: creates the devfs directory that containers mount as `/dev`.

use std::process::ExitCode;

use clap::Parser;
use lithos::tools::mkdev::{run, Args};

fn main() -> ExitCode {
    run(Args::parse())
}
