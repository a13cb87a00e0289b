//! `lithos_cmd`: runs a command entry of a sandbox; see [`lithos::tools::cmd`].

use clap::Parser;
use lithos::tools::cmd;

fn main() -> std::process::ExitCode {
    cmd::run(cmd::Args::parse())
}
