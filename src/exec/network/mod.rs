//! The bridged network of a sandbox: each container gets its own network namespace with
//! one end of a veth pair on the sandbox's host bridge.
//!
//! The knot does the set-up while it is still in the host's network namespace, so it can
//! reach the bridge. It stays there afterwards, and only the program enters the
//! container's namespace. The steps, in order:
//!
//! 1. [`reserve_port_fds`], first thing in the knot: the descriptor numbers of the
//!    internal `tcp-ports` are taken before the knot opens its own files there.
//! 2. [`set_up`], before the container's file system is built: lock the address, create
//!    the namespace, replace a stale veth pair, create the pair with the peer directly in
//!    the namespace, attach the host end to the bridge, configure the address, loopback
//!    and default route, run `after-setup-command`, bind the internal ports and record
//!    the interface names in the state dir.
//! 3. [`enter_program_namespace`], in the program's process before it changes user.
//!
//! The namespace lives while the program, the knot or a socket in it lives. When the
//! container dies the kernel destroys the namespace, and with it the peer, which takes
//! the host end along; that happens asynchronously, so the next start of the same
//! instance deletes a host end that is still there.

mod command;
mod netlink;
mod ports;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use blake2::{Blake2s256, Digest};
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, unshare, CloneFlags};

use crate::model::spec::{LaunchSpec, NetworkSpec, TcpPortSpec};

use netlink::Netlink;

pub use command::{substitute_container_ip, AFTER_SETUP_TIMEOUT};

/// Name of the container's end of the veth pair, inside its namespace.
pub const CONTAINER_INTERFACE: &str = "eth0";

/// File in the instance's state dir that records the interface names and the address.
pub const RECORD_FILE: &str = "network.json";

/// Error of setting up the bridged network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The sandbox's `network` is not in CIDR notation.
    #[error("invalid bridged network {network:?}: expected CIDR notation like 10.0.0.0/24")]
    InvalidNetwork {
        /// The configured value.
        network: String,
    },
    /// The address and the network are of different families.
    #[error("address {address} does not fit bridged network {network}")]
    AddressFamily {
        /// This instance's address.
        address: IpAddr,
        /// The sandbox's network.
        network: String,
    },
    /// Another running container has locked the address.
    #[error("address {address} is in use by {holder} (lock file {path}): stop that container or give this one another address")]
    AddressInUse {
        /// The address.
        address: IpAddr,
        /// Instance name written by the holder, or `another container` when unreadable.
        holder: String,
        /// Lock file.
        path: PathBuf,
    },
    /// The address lock file could not be opened or written.
    #[error("failed to lock address {address} with {path}")]
    Lock {
        /// The address.
        address: IpAddr,
        /// Lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A descriptor number for an internal port could not be reserved or placed.
    #[error("failed to place tcp port {port} at fd {fd}")]
    PortFd {
        /// Port number.
        port: u16,
        /// Descriptor number in the program.
        fd: i32,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An internal port could not be bound in the container's namespace.
    #[error("failed to bind tcp port {address} in the container's network namespace")]
    BindPort {
        /// Address and port.
        address: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The container's network namespace could not be created.
    #[error("failed to create the container's network namespace")]
    CreateNamespace(#[source] io::Error),
    /// The knot could not switch between the host's and the container's namespaces.
    #[error("failed to enter the {which} network namespace")]
    EnterNamespace {
        /// `host` or `container`.
        which: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A netlink socket could not be opened.
    #[error("failed to open a netlink socket")]
    Netlink(#[source] io::Error),
    /// The sandbox's bridge does not exist.
    #[error("bridge {bridge} not found: create it or fix bridged-network.bridge")]
    BridgeNotFound {
        /// Bridge name.
        bridge: String,
    },
    /// Looking up an interface failed.
    #[error("failed to look up interface {name}")]
    LookUp {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A stale veth pair of an earlier start could not be deleted.
    #[error("failed to delete stale interface {name}")]
    DeleteStale {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The veth pair could not be created.
    #[error("failed to create veth pair {host} and {container}")]
    CreateVeth {
        /// Host end.
        host: String,
        /// Container end.
        container: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The host end could not be attached to the bridge or brought up.
    #[error("failed to attach {name} to bridge {bridge} and bring it up")]
    AttachHost {
        /// Host end.
        name: String,
        /// Bridge name.
        bridge: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An interface inside the container could not be brought up.
    #[error("failed to bring up {name} in the container")]
    LinkUp {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The address could not be added.
    #[error("failed to add address {address}/{prefix_len} to {name}")]
    AddAddress {
        /// The address.
        address: IpAddr,
        /// Prefix length of the sandbox's network.
        prefix_len: u8,
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The default route could not be added.
    #[error("failed to add the default route via {gateway}")]
    AddRoute {
        /// Gateway.
        gateway: IpAddr,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The interface record could not be written.
    #[error("failed to write {path}")]
    Record {
        /// Record file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The network was set up twice in one process.
    #[error("the container's network namespace is already set up")]
    AlreadySetUp,
}

/// Names of the two ends of an instance's veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethNames {
    /// End on the host, attached to the bridge.
    pub host: String,
    /// End in the container's namespace.
    pub container: String,
}

/// Returns the veth names of instance `name`. The host end is `li-` and 12 hex digits of
/// a BLAKE2s hash of the name: it fits the kernel's 15-byte limit (`IFNAMSIZ` minus the
/// NUL) and is the same at every start, so a stale pair can be found.
pub fn veth_names(name: &str) -> VethNames {
    let digest = Blake2s256::digest(name.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    VethNames {
        host: format!("li-{hex}"),
        container: CONTAINER_INTERFACE.to_string(),
    }
}

/// Returns the ports the tree binds in the host's namespace and passes to the knot: every
/// port without a bridged network, only `external: true` ones with it.
pub fn host_ports(spec: &LaunchSpec) -> impl Iterator<Item = &TcpPortSpec> {
    let bridged = spec.network.is_some();
    spec.container
        .tcp_ports
        .values()
        .filter(move |port| !bridged || port.external)
}

/// Returns the ports the knot binds inside the container's namespace: the ports without
/// `external: true` of a bridged sandbox, none otherwise.
pub fn container_ports(spec: &LaunchSpec) -> impl Iterator<Item = &TcpPortSpec> {
    let bridged = spec.network.is_some();
    spec.container
        .tcp_ports
        .values()
        .filter(move |port| bridged && !port.external)
}

/// Takes the descriptor numbers of the container's internal ports with close-on-exec
/// placeholders, so the knot's own files never land on them. [`set_up`] puts the bound
/// sockets there. The numbers stay taken for the life of the knot. Call it before the
/// knot opens anything.
pub fn reserve_port_fds(spec: &LaunchSpec) -> Result<(), NetworkError> {
    for port in container_ports(spec) {
        let fail = |source| NetworkError::PortFd {
            port: port.port,
            fd: port.fd,
            source,
        };
        if port.fd < 3 {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptors 0, 1 and 2 are the program's stdio: use 3 or more",
            )));
        }
        let null = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
            .map_err(fail)?;
        if null.as_raw_fd() == port.fd {
            // The lowest free number was the one wanted; it stays open for the knot's life.
            let _ = null.into_raw_fd();
        } else {
            nix::unistd::dup3(null.as_raw_fd(), port.fd, nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| fail(e.into()))?;
        }
    }
    Ok(())
}

/// Parts of the network set-up that the knot keeps for the life of its process.
struct ProgramNetwork {
    namespace: OwnedFd,
    _address_lock: Option<Flock<File>>,
}

/// The container's namespace, set once by [`set_up`] and entered by every start of the
/// program, including restarts in place. The knot is single-threaded and sets it before
/// the first fork, so the forked children see it.
static PROGRAM_NETWORK: OnceLock<ProgramNetwork> = OnceLock::new();

/// Sets up the bridged network of `spec` from the host's namespace, which the calling
/// knot stays in. Does nothing without a bridged network. Without an address (a command
/// with loopback only) there is no veth pair and no `after-setup-command`. Failures of
/// `after-setup-command` are logged, not returned.
pub fn set_up(spec: &LaunchSpec, log: &slog::Logger) -> Result<(), NetworkError> {
    let Some(network) = &spec.network else {
        return Ok(());
    };
    if PROGRAM_NETWORK.get().is_some() {
        return Err(NetworkError::AlreadySetUp);
    }
    let addressed = check_address(network)?;
    let address_lock = match addressed {
        Some((address, _)) => Some(lock_address(spec, address)?),
        None => None,
    };
    let host = open_namespace().map_err(|source| NetworkError::EnterNamespace {
        which: "host",
        source,
    })?;
    let (namespace, mut inside) = create_namespace(host.as_fd())?;
    configure_loopback(&mut inside)?;
    if let Some((address, prefix_len)) = addressed {
        let names = veth_names(&spec.name);
        create_veth(network, &names, namespace.as_fd())?;
        configure_inside(&mut inside, network, &names, address, prefix_len)?;
        write_record(spec, &names, address, prefix_len)?;
        slog::info!(log, "bridged network ready"; "address" => %address,
            "host_interface" => &names.host, "bridge" => &network.bridge);
        command::run_after_setup(network, address, namespace.as_fd(), log);
    } else {
        slog::info!(log, "network namespace with loopback only ready");
    }
    ports::bind_container_ports(spec, host.as_fd(), namespace.as_fd())?;
    PROGRAM_NETWORK
        .set(ProgramNetwork {
            namespace,
            _address_lock: address_lock,
        })
        .map_err(|_| NetworkError::AlreadySetUp)
}

/// Moves the calling process, a freshly forked program, into the container's network
/// namespace. A program that is not root and has no user namespace keeps
/// `CAP_NET_BIND_SERVICE` through its change of user, since ports below 1024 of its own
/// namespace harm no one else. Call it before the program changes user or creates its
/// user namespace. The error is one line for the knot's error pipe.
pub fn enter_program_namespace(spec: &LaunchSpec) -> Result<(), String> {
    if spec.network.is_none() {
        return Ok(());
    }
    let network = PROGRAM_NETWORK
        .get()
        .ok_or("the container's network namespace was not set up")?;
    setns(network.namespace.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("failed to enter the container's network namespace: {e}"))?;
    if spec.container.user_id != 0 && spec.container.uid_map.is_empty() {
        command::keep_bind_service()?;
    }
    Ok(())
}

/// Returns the instance's address with the prefix length of the sandbox's network, after
/// checking that both are of one family. Returns `None` for a command with loopback only.
fn check_address(network: &NetworkSpec) -> Result<Option<(IpAddr, u8)>, NetworkError> {
    let Some(address) = network.ip_address else {
        return Ok(None);
    };
    let parsed: ipnetwork::IpNetwork =
        network
            .network
            .parse()
            .map_err(|_| NetworkError::InvalidNetwork {
                network: network.network.clone(),
            })?;
    if parsed.is_ipv4() != address.is_ipv4() {
        return Err(NetworkError::AddressFamily {
            address,
            network: network.network.clone(),
        });
    }
    Ok(Some((address, parsed.prefix())))
}

/// Takes an exclusive lock on `state-dir/SANDBOX/ip-ADDRESS.lock` for the life of the
/// knot, so two running containers never share an address. The lock dies with the
/// knot's process, however it exits.
fn lock_address(spec: &LaunchSpec, address: IpAddr) -> Result<Flock<File>, NetworkError> {
    let dir = spec.state_dir.parent().unwrap_or(Path::new("/"));
    let path = dir.join(format!("ip-{address}.lock"));
    let fail = |source| NetworkError::Lock {
        address,
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(fail)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::Error::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(NetworkError::AddressInUse {
                address,
                holder: if holder.is_empty() {
                    "another container".to_string()
                } else {
                    holder.to_string()
                },
                path,
            });
        }
        Err((_, e)) => return Err(fail(e.into())),
    };
    lock.set_len(0).map_err(fail)?;
    lock.rewind().map_err(fail)?;
    writeln!(lock, "{}", spec.name).map_err(fail)?;
    Ok(lock)
}

/// Opens the calling thread's network namespace.
fn open_namespace() -> io::Result<OwnedFd> {
    Ok(File::open("/proc/thread-self/ns/net")?.into())
}

/// Creates a new network namespace and a netlink socket in it, and returns to `host`.
fn create_namespace(host: std::os::fd::BorrowedFd<'_>) -> Result<(OwnedFd, Netlink), NetworkError> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::CreateNamespace(e.into()))?;
    let inside = open_namespace()
        .map_err(NetworkError::CreateNamespace)
        .and_then(|namespace| {
            let netlink = Netlink::open().map_err(NetworkError::Netlink)?;
            Ok((namespace, netlink))
        });
    setns(host, CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::EnterNamespace {
        which: "host",
        source: e.into(),
    })?;
    inside
}

fn configure_loopback(inside: &mut Netlink) -> Result<(), NetworkError> {
    let name = "lo";
    let index = link_index(inside, name)?.ok_or_else(|| NetworkError::LookUp {
        name: name.to_string(),
        source: io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    inside
        .set_up(index, None)
        .map_err(|source| NetworkError::LinkUp {
            name: name.to_string(),
            source,
        })
}

/// Replaces a stale pair, creates the new one with its peer directly in `namespace`, and
/// attaches the host end to the bridge.
fn create_veth(
    network: &NetworkSpec,
    names: &VethNames,
    namespace: std::os::fd::BorrowedFd<'_>,
) -> Result<(), NetworkError> {
    let mut host = Netlink::open().map_err(NetworkError::Netlink)?;
    let bridge =
        link_index(&mut host, &network.bridge)?.ok_or_else(|| NetworkError::BridgeNotFound {
            bridge: network.bridge.clone(),
        })?;
    // A knot that died uncleanly may leave its host end behind until the kernel has
    // destroyed the old namespace. Deleting one end of a pair deletes both, but a pair
    // the kernel is still tearing down keeps its name a little longer, so creation is
    // retried on EEXIST for up to two seconds.
    let mut attempts = 0;
    loop {
        host.delete_link(&names.host)
            .map_err(|source| NetworkError::DeleteStale {
                name: names.host.clone(),
                source,
            })?;
        match host.create_veth(&names.host, &names.container, namespace.as_raw_fd()) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(source) => {
                return Err(NetworkError::CreateVeth {
                    host: names.host.clone(),
                    container: names.container.clone(),
                    source,
                })
            }
        }
    }
    let attach = |source| NetworkError::AttachHost {
        name: names.host.clone(),
        bridge: network.bridge.clone(),
        source,
    };
    let index = host
        .link_index(&names.host)
        .map_err(attach)?
        .ok_or_else(|| attach(io::Error::from_raw_os_error(libc::ENODEV)))?;
    host.set_up(index, Some(bridge)).map_err(attach)
}

fn configure_inside(
    inside: &mut Netlink,
    network: &NetworkSpec,
    names: &VethNames,
    address: IpAddr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    let name = &names.container;
    let index = link_index(inside, name)?.ok_or_else(|| NetworkError::LookUp {
        name: name.clone(),
        source: io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    inside
        .add_address(index, address, prefix_len)
        .map_err(|source| NetworkError::AddAddress {
            address,
            prefix_len,
            name: name.clone(),
            source,
        })?;
    inside
        .set_up(index, None)
        .map_err(|source| NetworkError::LinkUp {
            name: name.clone(),
            source,
        })?;
    if let Some(gateway) = network.default_gateway {
        inside
            .add_default_route(gateway)
            .map_err(|source| NetworkError::AddRoute { gateway, source })?;
    }
    Ok(())
}

fn link_index(netlink: &mut Netlink, name: &str) -> Result<Option<u32>, NetworkError> {
    netlink
        .link_index(name)
        .map_err(|source| NetworkError::LookUp {
            name: name.to_string(),
            source,
        })
}

/// Writes `network.json` into the state dir, so an operator can tell which host
/// interface belongs to which container.
fn write_record(
    spec: &LaunchSpec,
    names: &VethNames,
    address: IpAddr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    let path = spec.state_dir.join(RECORD_FILE);
    let record = serde_json::json!({
        "instance": spec.name,
        "host_interface": names.host,
        "container_interface": names.container,
        "bridge": spec.network.as_ref().map(|n| n.bridge.as_str()),
        "address": format!("{address}/{prefix_len}"),
    });
    fs::write(&path, format!("{record}\n")).map_err(|source| NetworkError::Record {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        for name in [
            "a/b.0",
            "sandbox/process.12",
            &format!("{}/cmd.x.4194304", "s".repeat(200)),
        ] {
            let names = veth_names(name);
            assert!(names.host.len() <= 15, "{}", names.host);
            assert!(names.host.starts_with("li-"), "{}", names.host);
            assert_eq!(names.container, CONTAINER_INTERFACE);
        }
    }

    #[test]
    fn veth_names_are_stable_and_distinct() {
        assert_eq!(veth_names("sb/web.0"), veth_names("sb/web.0"));
        assert_ne!(veth_names("sb/web.0").host, veth_names("sb/web.1").host);
    }

    #[test]
    fn container_ip_replaced_everywhere() {
        let address: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            substitute_container_ip("-I@{container_ip},@{container_ip}", address),
            "-I10.0.0.7,10.0.0.7"
        );
        assert_eq!(substitute_container_ip("-c1", address), "-c1");
    }

    #[test]
    fn ports_split_by_external() {
        let name = crate::model::spec::InstanceName::new("sb", "web", 0);
        let mut spec = crate::reconcile::testing::sample_spec(&name);
        let port = |fd: i32, external: bool| TcpPortSpec {
            port: 8000 + fd as u16,
            host: "0.0.0.0".parse().unwrap(),
            fd,
            listen_backlog: 128,
            reuse_addr: true,
            reuse_port: false,
            set_non_block: false,
            external,
        };
        spec.container.tcp_ports.insert(3, port(3, false));
        spec.container.tcp_ports.insert(4, port(4, true));
        let fds = |ports: Vec<&TcpPortSpec>| ports.iter().map(|p| p.fd).collect::<Vec<_>>();
        spec.network = None;
        assert_eq!(fds(host_ports(&spec).collect()), vec![3, 4]);
        assert!(container_ports(&spec).next().is_none());
        spec.network = Some(NetworkSpec {
            bridge: "br0".to_string(),
            network: "10.0.0.0/24".to_string(),
            default_gateway: None,
            after_setup_command: Vec::new(),
            ip_address: None,
        });
        assert_eq!(fds(host_ports(&spec).collect()), vec![4]);
        assert_eq!(fds(container_ports(&spec).collect()), vec![3]);
    }
}
