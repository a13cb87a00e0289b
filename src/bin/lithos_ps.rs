//! `lithos_ps`: shows trees, containers and their processes; see [`lithos::tools::ps`].

use clap::Parser;
use lithos::tools::ps;

fn main() -> std::process::ExitCode {
    ps::run(ps::Args::parse())
}
