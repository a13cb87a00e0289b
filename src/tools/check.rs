//! `lithos_check`: validates a lithos config tree (or single container configs) and prints
//! every problem found. Exit status 0 means valid, 1 invalid, 2 a usage error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::model::files::check_container_file;
use crate::model::{load_tree, LoadOptions, Problem, Problems, SandboxLoad, Scope};
use clap::{Parser, ValueEnum};

/// Exit status of a valid config.
const EXIT_VALID: u8 = 0;
/// Exit status when any problem is found.
const EXIT_INVALID: u8 = 1;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// One `FILE:LINE:COLUMN: KEY: MESSAGE` line per problem.
    Text,
    /// A JSON array of problems.
    Json,
}

/// Checks lithos configuration files before a deploy.
#[derive(Parser, Debug)]
#[command(name = "lithos_check", version)]
pub struct Args {
    /// Master config file.
    #[arg(
        short = 'C',
        long = "config",
        default_value = "/etc/lithos/master.yaml"
    )]
    config: PathBuf,
    /// Check only this sandbox (with --alternate-config, check a new processes file for it).
    #[arg(
        long = "sandbox",
        short = 'T',
        visible_alias = "sandbox-name",
        alias = "tree",
        alias = "subtree-name"
    )]
    sandbox: Option<String>,
    /// Processes file to check in place of the sandbox's current one.
    #[arg(long = "alternate-config", requires = "sandbox")]
    alternate_config: Option<PathBuf>,
    /// Check these container configs alone (no master config needed).
    #[arg(long = "check-container", num_args = 1.., value_name = "FILE")]
    check_container: Vec<PathBuf>,
    /// Also print what was checked.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Output format of the problems.
    #[arg(long = "format", value_enum, default_value = "text")]
    format: Format,
}

/// Runs `lithos_check` with parsed arguments and returns its exit status.
pub fn run(args: Args) -> ExitCode {
    let (problems, summary) = if args.check_container.is_empty() {
        check_tree(&args)
    } else {
        check_containers(&args.check_container)
    };
    let output = match args.format {
        Format::Text => problems.to_string(),
        Format::Json => match serde_json::to_string_pretty(&problems) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("failed to encode problems as JSON: {error}");
                String::new()
            }
        },
    };
    // A closed pipe (`lithos_check | head`) is not worth a panic; the exit status still
    // tells whether the configuration is valid.
    let _ = std::io::stdout().lock().write_all(output.as_bytes());
    if args.verbose {
        for line in &summary {
            eprintln!("{line}");
        }
    }
    if problems.is_empty() {
        if args.verbose {
            eprintln!("configuration is valid");
        }
        ExitCode::from(EXIT_VALID)
    } else {
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::from(EXIT_INVALID)
    }
}

fn check_containers(files: &[PathBuf]) -> (Problems, Vec<String>) {
    let mut problems = Problems::default();
    let mut summary = Vec::new();
    for file in files {
        match check_container_file(file) {
            Ok(config) => summary.push(format!(
                "{}: valid {:?} container",
                file.display(),
                config.kind
            )),
            Err(more) => problems.extend(more),
        }
    }
    (problems, summary)
}

fn check_tree(args: &Args) -> (Problems, Vec<String>) {
    let mut problems = check_binaries();
    let mut summary = Vec::new();
    let options = LoadOptions {
        alternate: match (&args.sandbox, &args.alternate_config) {
            (Some(sandbox), Some(file)) => Some((sandbox.clone(), file.clone())),
            _ => None,
        },
    };
    let tree = match load_tree(&args.config, &options) {
        Ok(tree) => tree,
        Err(more) => {
            problems.extend(more);
            return (problems, summary);
        }
    };
    if let Some(sandbox) = &args.sandbox {
        if !tree.sandboxes.contains_key(sandbox) {
            problems.push(Problem {
                file: tree.master.sandboxes_dir.join(format!("{sandbox}.yaml")),
                line: None,
                column: None,
                key: String::new(),
                message: format!(
                    "sandbox {sandbox:?} not found in {}",
                    tree.master.sandboxes_dir.display()
                ),
                scope: Scope::Sandbox(sandbox.clone()),
            });
        }
    }
    for problem in tree.problems.0.clone() {
        let selected = match (&args.sandbox, &problem.scope) {
            (None, _) | (_, Scope::Master) => true,
            (Some(wanted), Scope::Sandbox(name) | Scope::Entry(name, _)) => wanted == name,
        };
        if selected {
            problems.push(problem);
        }
    }
    for (name, sandbox) in &tree.sandboxes {
        if let SandboxLoad::Loaded { entries } = sandbox {
            summary.push(format!("sandbox {name}: {} process entries", entries.len()));
        }
    }
    summary.push(format!(
        "{} daemon instances desired",
        tree.desired_instances().count()
    ));
    (problems, summary)
}

/// Reports `lithos_tree` or `lithos_knot` missing next to this executable, because the tree
/// starts knots from its own directory.
fn check_binaries() -> Problems {
    let mut problems = Problems::default();
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    else {
        return problems;
    };
    for binary in ["lithos_tree", "lithos_knot"] {
        let path = dir.join(binary);
        if !path.is_file() {
            problems.push(Problem {
                file: path,
                line: None,
                column: None,
                key: String::new(),
                message: format!(
                    "{binary} not found next to lithos_check: install it in {}",
                    dir.display()
                ),
                scope: Scope::Master,
            });
        }
    }
    problems
}
