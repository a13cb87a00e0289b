//! Side effects: spawning knots, building containers, cgroups and sockets.
