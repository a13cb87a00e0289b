//! `lithos`: one front door to the operator tools, sharing their code with the
//! `lithos_*` binaries.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use lithos::tools::{check, clean, cmd, crypt, mkdev, plan, ps, switch};

/// Supervisor and containerizer: operator commands.
#[derive(Parser)]
#[command(name = "lithos", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the tree would do with the config on disk (read-only).
    Plan(plan::Args),
    /// Show trees, containers and the processes inside them.
    Ps(ps::Args),
    /// Run a command entry of a sandbox in a container.
    Cmd(cmd::Args),
    /// List or delete images no sandbox uses.
    Clean(clean::Args),
    /// Check a config tree, or single container configs, before a deploy.
    Check(check::Args),
    /// Install a new processes file for a sandbox and reload the tree.
    Switch(switch::Args),
    /// Encrypt secrets for secret-environ and inspect encrypted values.
    Crypt(crypt::Cli),
    /// Create the devfs directory containers mount as /dev.
    Mkdev(mkdev::Args),
    /// Print a shell completion script.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // `lithos switch` accepts `--wait N` like `lithos_switch` does.
    let args = switch::join_wait_value(std::env::args_os().collect());
    match Cli::parse_from(args).command {
        Command::Plan(args) => plan::run(args),
        Command::Ps(args) => ps::run(args),
        Command::Cmd(args) => cmd::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Check(args) => check::run(args),
        Command::Switch(args) => switch::run(args),
        Command::Crypt(cli) => crypt::run_cli(cli),
        Command::Mkdev(args) => mkdev::run(args),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "lithos", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
