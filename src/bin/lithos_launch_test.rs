//! `lithos_launch_test SPEC.json`: starts one knot from a launch spec written as JSON, the
//! way the tree would, and waits for it. For tests and manual checks of the knot before a
//! tree runs it; it prints `knot pid N` once the knot runs.
//!
//! Exit codes: the knot's exit code; 2 on bad usage or an unreadable spec; 3 when the
//! knot could not be started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lithos::exec::cgroup::Cgroups;
use lithos::exec::spawn::{spawn_knot, SpawnRequest};
use lithos::model::spec::LaunchSpec;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: lithos_launch_test SPEC.json");
        return ExitCode::from(2);
    };
    let spec: LaunchSpec = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("lithos_launch_test: failed to read launch spec {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&spec) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lithos_launch_test: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(spec: &LaunchSpec) -> anyhow::Result<u8> {
    use anyhow::Context;
    let cgroups = match &spec.cgroup {
        Some(cgroup) => Some(
            Cgroups::discover(Path::new("/proc"), &cgroup.parent, &cgroup.controllers)
                .with_context(|| format!("failed to find the cgroups for {}", cgroup.parent))?,
        ),
        None => None,
    };
    let knot_binary = knot_binary()?;
    let request = SpawnRequest {
        spec,
        fingerprint: "0",
        master: Path::new("/nonexistent/lithos-launch-test.yaml"),
        knot_binary: &knot_binary,
        cgroups: cgroups.as_ref(),
        sockets: &[],
        extra_env: &[],
    };
    let knot = spawn_knot(&request)
        .with_context(|| format!("failed to start the knot for {}", spec.name))?;
    println!("knot pid {}", knot.pid);
    let status = waitpid(Pid::from_raw(knot.pid), None).context("failed to wait for the knot")?;
    if let Some(cgroup) = &spec.cgroup {
        if let Some(cgroups) = &cgroups {
            cgroups
                .remove_instance(&cgroup.leaf)
                .with_context(|| format!("failed to remove cgroup {}", cgroup.leaf))?;
        }
    }
    Ok(match status {
        WaitStatus::Exited(_, code) => code as u8,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as u8,
        _ => 1,
    })
}

/// Finds `lithos_knot` next to this binary.
fn knot_binary() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe()?;
    Ok(own.with_file_name("lithos_knot"))
}
