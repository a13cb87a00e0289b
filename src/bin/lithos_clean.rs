//! `lithos_clean`: lists and removes unused images; see [`lithos::tools::clean`].

use clap::Parser;
use lithos::tools::clean;

fn main() -> std::process::ExitCode {
    clean::run(clean::Args::parse())
}
