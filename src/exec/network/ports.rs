//! Internal `tcp-ports` of a bridged sandbox: bound by the knot inside the container's
//! namespace and placed at their descriptor numbers, which the program inherits.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};

use super::{container_ports, NetworkError};
use crate::model::spec::{LaunchSpec, TcpPortSpec};

/// Binds every internal port of `spec` in `namespace`, returns to `host`, and moves each
/// socket onto its descriptor number reserved by [`super::reserve_port_fds`].
pub(super) fn bind_container_ports(
    spec: &LaunchSpec,
    host: BorrowedFd<'_>,
    namespace: BorrowedFd<'_>,
) -> Result<(), NetworkError> {
    let ports: Vec<&TcpPortSpec> = container_ports(spec).collect();
    if ports.is_empty() {
        return Ok(());
    }
    setns(namespace, CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::EnterNamespace {
        which: "container",
        source: e.into(),
    })?;
    // A socket belongs to the namespace it was created in, so all of them are created
    // before the knot goes back.
    let bound: Result<Vec<(OwnedFd, &TcpPortSpec)>, NetworkError> = ports
        .into_iter()
        .map(|port| {
            let address = SocketAddr::new(port.host, port.port);
            bind(port)
                .map(|fd| (fd, port))
                .map_err(|source| NetworkError::BindPort { address, source })
        })
        .collect();
    setns(host, CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::EnterNamespace {
        which: "host",
        source: e.into(),
    })?;
    for (socket, port) in bound? {
        // dup2 clears close-on-exec on the copy, so the program inherits it.
        // The copy at `port.fd` replaces the placeholder, serves every restart in place
        // and stays open for the life of the knot; `socket` itself closes here.
        nix::unistd::dup2(socket.as_raw_fd(), port.fd).map_err(|e| NetworkError::PortFd {
            port: port.port,
            fd: port.fd,
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Creates, binds and listens on one socket with the options of `port`.
fn bind(port: &TcpPortSpec) -> io::Result<OwnedFd> {
    let family = match port.host {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    if port.reuse_addr {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    if port.reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    let address = SocketAddr::new(port.host, port.port);
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    let backlog =
        Backlog::new(port.listen_backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog)?;
    if port.set_non_block {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    Ok(fd)
}
