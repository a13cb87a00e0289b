//! `lithos_switch`: replace a sandbox's processes file safely and reload the tree.
//!
//! The new file is checked with the same loader the tree uses, so a file that would not
//! load changes nothing and signals nothing. It is written next to the target and renamed
//! over it, so the tree never reads a half-written file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::status;
use crate::model::spec::DesiredInstance;
use crate::model::{self, ConfigTree, EntryLoad, LoadOptions, SandboxLoad, Scope};

/// Exit codes of `lithos_switch`.
pub mod exit_codes {
    /// Switched (and with `--wait`, applied without errors in the sandbox).
    pub const OK: i32 = 0;
    /// Invalid command line.
    pub const USAGE: i32 = 2;
    /// The new file, the sandbox or master.yaml is invalid: nothing was changed.
    pub const INVALID: i32 = 3;
    /// Writing the file failed: the old file is still in place.
    pub const WRITE_FAILED: i32 = 4;
    /// The file was replaced but no running lithos_tree could be signalled.
    pub const NOT_SIGNALLED: i32 = 5;
    /// `--wait` timed out before the tree reported the new generation.
    pub const WAIT_TIMED_OUT: i32 = 6;
    /// The tree applied the new generation but reports errors for the sandbox.
    pub const APPLIED_WITH_ERRORS: i32 = 7;
}

/// Settings of one switch.
#[derive(Clone, Debug)]
pub struct SwitchRequest {
    /// master.yaml.
    pub master: PathBuf,
    /// Sandbox whose processes file is replaced.
    pub sandbox: String,
    /// The new processes file.
    pub new_file: PathBuf,
    /// Stop after printing the plan.
    pub dry_run: bool,
    /// Wait this long for the tree to apply the new file.
    pub wait: Option<Duration>,
}

/// Error of a switch; [`SwitchError::exit_code`] maps it to the documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// master.yaml could not be loaded.
    #[error("failed to load master config {path}:\n{problems}")]
    LoadMaster {
        /// master.yaml path.
        path: PathBuf,
        /// The problems, one per line.
        problems: String,
    },
    /// The sandbox has no sandbox file.
    #[error("sandbox {sandbox:?} not found: expected {path}")]
    UnknownSandbox {
        /// Sandbox name.
        sandbox: String,
        /// Expected path of its sandbox file.
        path: PathBuf,
    },
    /// The new processes file could not be read.
    #[error("failed to read {path}")]
    ReadNew {
        /// The new file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The new file does not load; nothing was changed.
    #[error("invalid processes file {path}, nothing was changed:\n{problems}")]
    Invalid {
        /// The new file.
        path: PathBuf,
        /// The problems, one per line.
        problems: String,
    },
    /// The new file changed while it was checked.
    #[error("{path} changed while it was checked, nothing was changed: run lithos_switch again")]
    Changed {
        /// The new file.
        path: PathBuf,
    },
    /// Writing the temporary file, renaming it or syncing failed.
    #[error("failed to write {path}, the old file is still in place")]
    Write {
        /// The target file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// No lithos_tree runs for this master config.
    #[error("{path} was replaced, but no lithos_tree was signalled: {reason}")]
    NotSignalled {
        /// The target file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The tree did not report the new generation in time.
    #[error("timed out after {seconds}s waiting for lithos_tree to apply generation {generation}")]
    WaitTimedOut {
        /// Seconds waited.
        seconds: u64,
        /// Generation waited for.
        generation: u64,
    },
    /// The tree applied the file but reports errors for the sandbox.
    #[error("lithos_tree applied the new file with errors:\n{errors}")]
    AppliedWithErrors {
        /// The errors, one per line.
        errors: String,
    },
}

impl SwitchError {
    /// Returns the process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            SwitchError::LoadMaster { .. }
            | SwitchError::UnknownSandbox { .. }
            | SwitchError::ReadNew { .. }
            | SwitchError::Invalid { .. }
            | SwitchError::Changed { .. } => exit_codes::INVALID,
            SwitchError::Write { .. } => exit_codes::WRITE_FAILED,
            SwitchError::NotSignalled { .. } => exit_codes::NOT_SIGNALLED,
            SwitchError::WaitTimedOut { .. } => exit_codes::WAIT_TIMED_OUT,
            SwitchError::AppliedWithErrors { .. } => exit_codes::APPLIED_WITH_ERRORS,
        }
    }
}

/// Runs a switch, printing the plan and progress to `out`.
pub fn switch(request: &SwitchRequest, out: &mut dyn Write) -> Result<(), SwitchError> {
    let load_master = |problems: model::Problems| SwitchError::LoadMaster {
        path: request.master.clone(),
        problems: problems.to_string(),
    };
    let current =
        model::load_tree(&request.master, &LoadOptions::default()).map_err(load_master)?;
    if !current.sandboxes.contains_key(&request.sandbox) {
        return Err(SwitchError::UnknownSandbox {
            sandbox: request.sandbox.clone(),
            path: current
                .master
                .sandboxes_dir
                .join(format!("{}.yaml", request.sandbox)),
        });
    }
    let contents = read_new(&request.new_file)?;
    let options = LoadOptions {
        alternate: Some((request.sandbox.clone(), request.new_file.clone())),
    };
    let next = model::load_tree(&request.master, &options).map_err(load_master)?;
    check_sandbox(&next, &request.sandbox, &request.new_file)?;
    if read_new(&request.new_file)? != contents {
        return Err(SwitchError::Changed {
            path: request.new_file.clone(),
        });
    }
    let _ = write!(out, "{}", plan_summary(&current, &next, &request.sandbox));
    if request.dry_run {
        let _ = writeln!(out, "dry run: nothing was changed");
        return Ok(());
    }
    let runtime_dir = &current.master.runtime_dir;
    let generation_before = status::read(runtime_dir).map(|s| s.generation).unwrap_or(0);
    let target = super::paths::processes_file(&current.master, &request.sandbox);
    write_atomically(&target, &contents)?;
    let _ = writeln!(out, "wrote {}", target.display());
    let pid = signal_tree(runtime_dir, &target)?;
    let _ = writeln!(out, "sent SIGQUIT to lithos_tree (pid {pid})");
    if let Some(timeout) = request.wait {
        wait_applied(
            runtime_dir,
            pid,
            generation_before,
            timeout,
            &request.sandbox,
            out,
        )?;
    }
    Ok(())
}

fn read_new(path: &Path) -> Result<Vec<u8>, SwitchError> {
    fs::read(path).map_err(|source| SwitchError::ReadNew {
        path: path.to_path_buf(),
        source,
    })
}

/// Fails unless the sandbox and every entry of it load from the new file.
fn check_sandbox(next: &ConfigTree, sandbox: &str, new_file: &Path) -> Result<(), SwitchError> {
    let problems: Vec<String> = next
        .problems
        .0
        .iter()
        .filter(|problem| match &problem.scope {
            Scope::Master => false,
            Scope::Sandbox(name) | Scope::Entry(name, _) => name == sandbox,
        })
        .map(ToString::to_string)
        .collect();
    let loaded = matches!(
        next.sandboxes.get(sandbox),
        Some(SandboxLoad::Loaded { .. })
    );
    if problems.is_empty() && loaded {
        return Ok(());
    }
    Err(SwitchError::Invalid {
        path: new_file.to_path_buf(),
        problems: problems.join("\n"),
    })
}

fn instances_of(tree: &ConfigTree, sandbox: &str) -> BTreeMap<String, DesiredInstance> {
    let Some(SandboxLoad::Loaded { entries }) = tree.sandboxes.get(sandbox) else {
        return BTreeMap::new();
    };
    entries
        .values()
        .filter_map(|entry| match entry {
            EntryLoad::Daemon { instances } => Some(instances),
            _ => None,
        })
        .flatten()
        .map(|instance| (instance.name.to_string(), instance.clone()))
        .collect()
}

/// Describes what the tree will do with the sandbox, one line per changed instance.
pub fn plan_summary(current: &ConfigTree, next: &ConfigTree, sandbox: &str) -> String {
    let before = instances_of(current, sandbox);
    let after = instances_of(next, sandbox);
    let mut lines = String::new();
    let (mut started, mut restarted, mut stopped, mut kept) = (0, 0, 0, 0);
    for (name, instance) in &after {
        match before.get(name) {
            None => {
                started += 1;
                lines.push_str(&format!("start   {name}\n"));
            }
            Some(old) if old.fingerprint != instance.fingerprint => {
                restarted += 1;
                lines.push_str(&format!("restart {name} (config changed)\n"));
            }
            Some(_) => kept += 1,
        }
    }
    for name in before.keys().filter(|name| !after.contains_key(*name)) {
        stopped += 1;
        lines.push_str(&format!("stop    {name}\n"));
    }
    lines.push_str(&format!(
        "sandbox {sandbox}: {started} to start, {restarted} to restart, {stopped} to stop, {kept} unchanged\n"
    ));
    lines
}

/// Replaces `target` with `contents`: temporary file, fsync, rename, fsync of the directory.
///
/// The temporary file is removed on every failure, so a full disk leaves the old file and
/// nothing else.
pub fn write_atomically(target: &Path, contents: &[u8]) -> Result<(), SwitchError> {
    let fail = |source| SwitchError::Write {
        path: target.to_path_buf(),
        source,
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    let file_name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.switch-{}.tmp", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        if let Ok(old) = fs::metadata(target) {
            file.set_permissions(old.permissions())?;
        }
        fs::rename(&temporary, target)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(fail(error));
    }
    File::open(dir).and_then(|dir| dir.sync_all()).map_err(fail)
}

/// Sends SIGQUIT to the tree named in `master.pid` after checking it is a lithos_tree.
fn signal_tree(runtime_dir: &Path, target: &Path) -> Result<i32, SwitchError> {
    let not_signalled = |reason: String| SwitchError::NotSignalled {
        path: target.to_path_buf(),
        reason,
    };
    let pid = super::setup::read_pid(runtime_dir).ok_or_else(|| {
        not_signalled(format!(
            "no pid in {}",
            runtime_dir.join(super::setup::PID_FILE).display()
        ))
    })?;
    if !is_lithos_tree(pid) {
        return Err(not_signalled(format!(
            "pid {pid} from master.pid is not a lithos_tree (stale pid file)"
        )));
    }
    kill(Pid::from_raw(pid), Signal::SIGQUIT)
        .map_err(|error| not_signalled(format!("failed to signal pid {pid}: {error}")))?;
    Ok(pid)
}

/// Returns whether `pid` runs lithos_tree, by its executable or its argument zero.
pub fn is_lithos_tree(pid: i32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let is_tree_name = |name: &str| name == "lithos_tree" || name.starts_with("lithos_tree ");
    if let Ok(exe) = fs::read_link(proc_dir.join("exe")) {
        let name = exe.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.as_deref().is_some_and(is_tree_name) {
            return true;
        }
    }
    let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&byte| byte == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .is_some_and(|name| name == "lithos_tree")
}

fn wait_applied(
    runtime_dir: &Path,
    pid: i32,
    generation_before: u64,
    timeout: Duration,
    sandbox: &str,
    out: &mut dyn Write,
) -> Result<(), SwitchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(current) = status::read(runtime_dir) {
            if current.pid == pid as u32 && current.generation > generation_before {
                let _ = writeln!(out, "lithos_tree applied generation {}", current.generation);
                return report_errors(&current, sandbox);
            }
        }
        if Instant::now() >= deadline {
            return Err(SwitchError::WaitTimedOut {
                seconds: timeout.as_secs(),
                generation: generation_before + 1,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report_errors(current: &status::Status, sandbox: &str) -> Result<(), SwitchError> {
    let prefix = format!("{sandbox}/");
    let errors: Vec<String> = current
        .errors
        .iter()
        .filter(|(scope, _)| *scope == sandbox || scope.starts_with(&prefix))
        .flat_map(|(_, messages)| messages.iter().cloned())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SwitchError::AppliedWithErrors {
            errors: errors.join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomically_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("web.yaml");
        fs::write(&target, "old").unwrap();
        write_atomically(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomically_failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing-dir/web.yaml");
        let error = write_atomically(&target, b"new").unwrap_err();
        assert_eq!(error.exit_code(), exit_codes::WRITE_FAILED);
        assert!(!target.exists());
    }

    #[test]
    fn own_process_is_not_a_tree() {
        assert!(!is_lithos_tree(std::process::id() as i32));
    }
}
