//! The config model: the four config formats, the desired state built from a config tree,
//! and the instantiated [`spec::LaunchSpec`] of each container.

pub mod spec;
