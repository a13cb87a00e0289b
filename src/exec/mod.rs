//! Side effects: spawning knots, building containers, cgroups and sockets.

pub mod sockets;
pub mod tree;
