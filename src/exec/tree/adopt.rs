//! Taking listening sockets back from containers that outlived an earlier tree.
//!
//! The sockets of a tree that died (SIGKILL, crash) are gone from the tree, but its
//! containers still listen on their duplicates. Binding the port again would fail with
//! EADDRINUSE while they run, so the new tree copies the socket out of a surviving
//! container with `pidfd_getfd` instead, and the port never stops accepting connections.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use slog::{debug, info};

use super::supervisor::Supervisor;
use crate::exec::{network, sockets};
use crate::model::spec::InstanceName;
use crate::state::{Observed, ProcId, ProcessKind};

/// Depth of the search for a socket below a knot: the knot, the container's pid 1 and its
/// children.
const SEARCH_DEPTH: usize = 3;

impl Supervisor {
    /// Copies each missing shared socket from a live knot whose instance names it.
    pub(super) fn take_sockets_from_survivors(&mut self, observed: &Observed) {
        let missing: BTreeSet<SocketAddr> = super::desired::used_addresses(&self.desired)
            .into_iter()
            .filter(|address| !self.sockets.contains(address))
            .collect();
        if missing.is_empty() {
            return;
        }
        for process in observed.processes.iter().filter(|process| !process.zombie) {
            let ProcessKind::Knot { name, .. } = &process.kind else {
                continue;
            };
            for (target_fd, address) in self.ports_of(name) {
                if !missing.contains(&address) || self.sockets.contains(&address) {
                    continue;
                }
                if let Some(fd) = self.find_socket(process.id, target_fd, address) {
                    info!(self.log, "took listening socket from running container";
                        "address" => %address, "instance" => %name, "pid" => process.id.pid);
                    self.sockets.insert(address, fd);
                }
            }
        }
    }

    /// Returns `(fd in the program, address)` of the shared ports the instance was started
    /// with, or else of its desired config.
    fn ports_of(&self, name: &InstanceName) -> Vec<(i32, SocketAddr)> {
        let spec = self
            .persisted
            .instances
            .get(name)
            .and_then(|record| record.spec.clone())
            .or_else(|| self.desired.instances.get(name).map(|i| i.spec.clone()));
        let Some(spec) = spec else {
            return Vec::new();
        };
        network::host_ports(&spec)
            .filter(|port| !port.reuse_port)
            .map(|port| (port.fd, sockets::address_of(port)))
            .collect()
    }

    /// Searches the knot and its descendants for a listening socket on `address` at
    /// descriptor `target_fd`.
    fn find_socket(&self, knot: ProcId, target_fd: i32, address: SocketAddr) -> Option<OwnedFd> {
        let proc_root = &self.roots.proc_root;
        let knot_fd = super::pidfd::open(proc_root, knot).ok()??;
        if let Some(fd) = copy_if_listening(&knot_fd, target_fd, address) {
            return Some(fd);
        }
        let mut level = vec![knot.pid];
        for _ in 1..SEARCH_DEPTH {
            let next: Vec<i32> = level
                .iter()
                .flat_map(|&pid| super::pidfd::children(proc_root, pid))
                .collect();
            for &pid in &next {
                let Some(start_time) = super::pidfd::start_time(proc_root, pid) else {
                    continue;
                };
                let process = ProcId { pid, start_time };
                let Ok(Some(pidfd)) = super::pidfd::open(proc_root, process) else {
                    continue;
                };
                if let Some(fd) = copy_if_listening(&pidfd, target_fd, address) {
                    return Some(fd);
                }
            }
            level = next;
        }
        debug!(self.log, "socket not found in any running container"; "address" => %address);
        None
    }
}

fn copy_if_listening(pidfd: &OwnedFd, target_fd: i32, address: SocketAddr) -> Option<OwnedFd> {
    let fd = super::pidfd::get_fd(pidfd, target_fd).ok()?;
    (sockets::listening_address(fd.as_fd()) == Some(address)).then_some(fd)
}
