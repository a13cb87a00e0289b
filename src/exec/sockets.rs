//! Listening TCP sockets that the tree binds for `tcp-ports` and hands to knots.
//!
//! The tree binds as root, so programs that are not root can serve ports below 1024. One
//! socket exists per address and every process that names the address, in any sandbox,
//! gets a duplicate of it at its configured descriptor. The socket stays open while any
//! configured process names it, even while every user waits out its restart-timeout, so a
//! restart never races another bind. With `reuse-port` each start gets a socket of its own
//! instead, bound with `SO_REUSEPORT` and closed in the tree once the knot has it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};

use crate::model::spec::TcpPortSpec;

/// Error binding or recovering a listening socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// `socket()` failed.
    #[error("failed to create a socket for {address}")]
    Create {
        /// Address the socket was for.
        address: SocketAddr,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// Setting an option (reuse-addr, reuse-port, non-blocking) failed.
    #[error("failed to set socket option {option} on {address}")]
    SetOption {
        /// Option name.
        option: &'static str,
        /// Socket address.
        address: SocketAddr,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// `bind()` failed, for example with EADDRINUSE.
    #[error("failed to bind {address}")]
    Bind {
        /// Socket address.
        address: SocketAddr,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// `listen()` failed.
    #[error("failed to listen on {address}")]
    Listen {
        /// Socket address.
        address: SocketAddr,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// An inherited descriptor is not a listening TCP socket.
    #[error("inherited descriptor {fd} is not a listening TCP socket")]
    NotListening {
        /// Descriptor number.
        fd: RawFd,
    },
}

/// Returns the address a port spec binds.
pub fn address_of(spec: &TcpPortSpec) -> SocketAddr {
    SocketAddr::new(spec.host, spec.port)
}

/// Returns the shared (not `reuse-port`) addresses named by `ports`.
pub fn shared_addresses<'a>(
    ports: impl IntoIterator<Item = &'a TcpPortSpec>,
) -> BTreeSet<SocketAddr> {
    ports
        .into_iter()
        .filter(|spec| !spec.reuse_port)
        .map(address_of)
        .collect()
}

/// Binds and listens on a new socket with the options of `spec`, close-on-exec.
pub fn bind_listener(spec: &TcpPortSpec) -> Result<OwnedFd, SocketError> {
    let address = address_of(spec);
    let family = match spec.host {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|source| SocketError::Create { address, source })?;
    let option = |option: &'static str| {
        move |source| SocketError::SetOption {
            option,
            address,
            source,
        }
    };
    if spec.reuse_addr {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(option("SO_REUSEADDR"))?;
    }
    if spec.reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true).map_err(option("SO_REUSEPORT"))?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(address))
        .map_err(|source| SocketError::Bind { address, source })?;
    let backlog =
        Backlog::new(spec.listen_backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog).map_err(|source| SocketError::Listen { address, source })?;
    if spec.set_non_block {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(option("O_NONBLOCK"))?;
    }
    Ok(fd)
}

/// Returns the local address of `fd` when it is a listening TCP socket.
pub fn listening_address(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    if !socket::getsockopt(&fd, sockopt::AcceptConn).ok()? {
        return None;
    }
    if socket::getsockopt(&fd, sockopt::SockType).ok()? != SockType::Stream {
        return None;
    }
    let storage: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).ok()?;
    to_socket_addr(&storage)
}

fn to_socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    match storage.family()? {
        AddressFamily::Inet => {
            let v4 = storage.as_sockaddr_in()?;
            Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)))
        }
        AddressFamily::Inet6 => {
            let v6 = storage.as_sockaddr_in6()?;
            Some(SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
        }
        _ => None,
    }
}

/// Descriptors to hand to one knot start: `(fd in the program, fd in the tree)` pairs.
///
/// Holds the per-start `reuse-port` sockets, which close in the tree when this is dropped
/// after the spawn.
#[derive(Debug, Default)]
pub struct StartSockets {
    pairs: Vec<(i32, RawFd)>,
    fresh: Vec<OwnedFd>,
}

impl StartSockets {
    /// Returns the pairs in the shape the spawner takes.
    pub fn pairs(&self) -> &[(i32, RawFd)] {
        &self.pairs
    }

    /// Returns the number of per-start sockets held.
    pub fn fresh_count(&self) -> usize {
        self.fresh.len()
    }
}

/// The shared listening sockets the tree holds, one per address.
#[derive(Debug, Default)]
pub struct SocketTable {
    shared: BTreeMap<SocketAddr, OwnedFd>,
}

impl SocketTable {
    /// Creates an empty table.
    pub fn new() -> SocketTable {
        SocketTable::default()
    }

    /// Rebuilds the table from descriptors inherited across the tree's own re-exec.
    ///
    /// Each descriptor is identified by `getsockname`; one that is not a listening TCP
    /// socket is closed and reported.
    ///
    /// # Safety
    /// Every descriptor in `fds` must be open and owned by nothing else in this process.
    pub unsafe fn recover(fds: &[RawFd]) -> (SocketTable, Vec<SocketError>) {
        let mut table = SocketTable::new();
        let mut errors = Vec::new();
        for &fd in fds {
            // SAFETY: the caller guarantees each descriptor is open and unowned.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = fcntl(owned.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            match listening_address(owned.as_fd()) {
                Some(address) => table.insert(address, owned),
                None => errors.push(SocketError::NotListening { fd }),
            }
        }
        (table, errors)
    }

    /// Adds a listening socket for `address`, replacing (and closing) any previous one.
    pub fn insert(&mut self, address: SocketAddr, fd: OwnedFd) {
        self.shared.insert(address, fd);
    }

    /// Returns whether the table contains a socket for `address`.
    pub fn contains(&self, address: &SocketAddr) -> bool {
        self.shared.contains_key(address)
    }

    /// Returns the addresses held.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.shared.keys().copied().collect()
    }

    /// Returns the raw descriptors held, for passing across the tree's own re-exec.
    pub fn descriptors(&self) -> Vec<RawFd> {
        self.shared.values().map(|fd| fd.as_raw_fd()).collect()
    }

    /// Collects the sockets for one start of a process with `ports`, binding what is missing.
    ///
    /// A shared address is bound once, with the options of the first process that needs it.
    pub fn prepare(
        &mut self,
        ports: &BTreeMap<i32, TcpPortSpec>,
    ) -> Result<StartSockets, SocketError> {
        let mut start = StartSockets::default();
        for (&target, spec) in ports {
            if spec.reuse_port {
                let fd = bind_listener(spec)?;
                start.pairs.push((target, fd.as_raw_fd()));
                start.fresh.push(fd);
                continue;
            }
            let address = address_of(spec);
            let fd = match self.shared.entry(address) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(bind_listener(spec)?),
            };
            start.pairs.push((target, fd.as_raw_fd()));
        }
        Ok(start)
    }

    /// Closes every socket whose address is not in `used`; returns the closed addresses.
    pub fn retain_used(&mut self, used: &BTreeSet<SocketAddr>) -> Vec<SocketAddr> {
        let unused: Vec<SocketAddr> = self
            .shared
            .keys()
            .filter(|address| !used.contains(address))
            .copied()
            .collect();
        for address in &unused {
            self.shared.remove(address);
        }
        unused
    }

    /// Clears close-on-exec on every socket so they survive the tree's own `execve`.
    pub fn keep_across_exec(&self) -> io::Result<()> {
        for fd in self.shared.values() {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// Sets close-on-exec again, after an `execve` that failed.
    pub fn close_on_exec(&self) {
        for fd in self.shared.values() {
            let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }

    /// Closes every socket.
    pub fn close_all(&mut self) {
        self.shared.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn spec(port: u16, reuse_port: bool) -> TcpPortSpec {
        TcpPortSpec {
            port,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            fd: 3,
            listen_backlog: 128,
            reuse_addr: true,
            reuse_port,
            set_non_block: false,
            external: false,
        }
    }

    #[test]
    fn shared_address_is_bound_once() {
        let port = free_port();
        let mut table = SocketTable::new();
        let ports = BTreeMap::from([(3, spec(port, false))]);
        let first = table.prepare(&ports).unwrap();
        let second = table
            .prepare(&BTreeMap::from([(7, spec(port, false))]))
            .unwrap();
        assert_eq!(first.pairs()[0].1, second.pairs()[0].1);
        assert_eq!(second.pairs()[0].0, 7);
        assert_eq!(first.fresh_count(), 0);
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn reuse_port_binds_per_start() {
        let port = free_port();
        let mut table = SocketTable::new();
        let ports = BTreeMap::from([(3, spec(port, true))]);
        let first = table.prepare(&ports).unwrap();
        let second = table.prepare(&ports).unwrap();
        assert_ne!(first.pairs()[0].1, second.pairs()[0].1);
        assert_eq!(first.fresh_count(), 1);
        assert!(table.addresses().is_empty());
    }

    #[test]
    fn unused_socket_is_closed() {
        let port = free_port();
        let mut table = SocketTable::new();
        drop(
            table
                .prepare(&BTreeMap::from([(3, spec(port, false))]))
                .unwrap(),
        );
        let closed = table.retain_used(&BTreeSet::new());
        assert_eq!(closed, vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }

    #[test]
    fn recover_identifies_listening_socket() {
        let port = free_port();
        let fd = bind_listener(&spec(port, false)).unwrap();
        let raw = fd.as_raw_fd();
        std::mem::forget(fd);
        // SAFETY: `raw` was just leaked from an OwnedFd, so only the table owns it.
        let (table, errors) = unsafe { SocketTable::recover(&[raw]) };
        assert!(errors.is_empty());
        assert_eq!(
            table.addresses(),
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
        );
    }
}
