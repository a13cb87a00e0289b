//! The config model: the four config formats, the desired state built from a config tree,
//! and the instantiated [`spec::LaunchSpec`] of each container.
// Problems are returned on the cold path of loading a file, where their size costs nothing.
#![allow(clippy::result_large_err)]

mod collections;
pub mod container;
pub mod container_check;
mod entry_check;
pub mod files;
pub mod fingerprint;
pub mod image;
mod instantiate;
pub mod master;
pub mod problems;
pub mod process;
mod read;
pub mod sandbox;
mod scalar;
mod secrets_check;
pub mod spec;
pub mod tags;
mod tree;
pub mod units;
pub mod vars;

pub use master::{load_master, MasterConfig};
pub use problems::{Problem, Problems, Scope};

pub use fingerprint::fingerprint;
pub use tree::{load_tree, ConfigTree, EntryLoad, LoadOptions, SandboxLoad};
