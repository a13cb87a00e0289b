//! `lithos_switch`: replaces a sandbox's processes file after checking it, then reloads.

use std::process::ExitCode;

fn main() -> ExitCode {
    lithos::tools::switch::main_from_args()
}
