//! The operator tools: `lithos_check`, `lithos_switch`, `lithos_cmd`, `lithos_ps`,
//! `lithos_clean`, `lithos_crypt`, `lithos_mkdev` and `lithos plan`.
//!
//! Each tool is a module with a clap `Args` struct and a `run(args) -> ExitCode`
//! function, shared by its own `lithos_NAME` binary and by the `lithos` front door.

pub mod check;
pub mod clean;
pub mod cmd;
pub mod crypt;
mod log;
pub mod mkdev;
pub mod plan;
pub mod ps;
pub mod switch;

use std::path::{Path, PathBuf};

pub use log::{Level, ToolLog};

/// Default master config path of every tool.
pub const DEFAULT_MASTER: &str = "/etc/lithos/master.yaml";

/// Returns the path of binary `name` installed next to the running executable, or the
/// bare name (looked up in `PATH` by exec) when the running executable is unknown.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Returns true when `path` lies below `base` lexically (no `..` after `base`).
pub(crate) fn is_below(path: &Path, base: &Path) -> bool {
    path != base
        && path.starts_with(base)
        && path
            .strip_prefix(base)
            .map(|rest| {
                rest.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .unwrap_or(false)
}
