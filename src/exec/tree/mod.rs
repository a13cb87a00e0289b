//! `lithos_tree`: the supervisor loop and `lithos_switch`.
//!
//! The tree runs one loop: observe what runs, reconcile it with the desired state from the
//! config tree and the persisted state, execute the plan, persist, write `status.json`, and
//! sleep until the plan's wake-up or a signal. Reload (SIGQUIT, SIGHUP) re-executes the
//! binary with the same pid, so the config is loaded exactly once per image.

pub mod config_log;
pub mod logging;
pub mod notify;
pub mod reexec;
pub mod setup;
pub mod signals;
pub mod status;
pub mod timefmt;
