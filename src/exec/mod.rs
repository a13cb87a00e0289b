//! Side effects: spawning knots, building containers, cgroups and sockets.

pub mod cgroup;
pub mod knot;
pub mod metrics;
pub mod mkdev;
pub mod network;
pub mod sockets;
pub mod spawn;
pub(crate) mod sys;
pub mod tree;
