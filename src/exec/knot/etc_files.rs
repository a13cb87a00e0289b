//! `/etc/resolv.conf` and `/etc/hosts`: generated into the state dir and mounted over the
//! image's files.
//!
//! `mount: None` mounts only over a regular file, so an image that links
//! `/etc/resolv.conf` elsewhere keeps its own; `Some(true)` fails unless the file is a
//! regular one; `Some(false)` leaves it alone. The target is opened without following any
//! symlink, so a mount never lands on what a link points to.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::exec::sys::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use crate::model::spec::{HostsFileSpec, LaunchSpec, ResolvConfSpec};

/// Error while generating or mounting an `/etc` file.
#[derive(Debug, thiserror::Error)]
pub enum EtcError {
    /// The host file to copy could not be read.
    #[error("failed to read {path}")]
    ReadHost {
        /// Host file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The generated file could not be written to the state dir.
    #[error("failed to write {path}")]
    Write {
        /// File in the state dir.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `mount: true` but the image's file is missing or not a regular file.
    #[error(
        "{path} in the image is {found}, not a regular file: make it one or set mount to false"
    )]
    NotAFile {
        /// Path inside the container.
        path: &'static str,
        /// Kind of file found instead.
        found: &'static str,
    },
    /// Looking at or mounting over the image's file failed.
    #[error("failed to mount {source_path} over {path}")]
    Mount {
        /// Generated file.
        source_path: PathBuf,
        /// Path inside the container.
        path: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Kind of file the image has at the path of an `/etc` file.
enum Target {
    Regular(OwnedFd),
    Other(&'static str),
}

/// Writes `resolv.conf` and `hosts` into the state dir and mounts them over the image's
/// files where their `mount` settings require it.
pub(crate) fn set_up(
    spec: &LaunchSpec,
    root: BorrowedFd<'_>,
    log: &slog::Logger,
) -> Result<(), EtcError> {
    let resolv = &spec.container.resolv_conf;
    let text = resolv_conf(resolv)?;
    let path = write(&spec.state_dir, "resolv.conf", &text)?;
    let auto = resolv.copy_from_host;
    place(root, &path, "/etc/resolv.conf", resolv.mount, auto, log)?;

    let hosts = &spec.container.hosts_file;
    let text = hosts_file(hosts, log)?;
    let path = write(&spec.state_dir, "hosts", &text)?;
    place(root, &path, "/etc/hosts", hosts.mount, true, log)
}

fn resolv_conf(spec: &ResolvConfSpec) -> Result<String, EtcError> {
    if spec.copy_from_host {
        read_host(&spec.host_file)
    } else {
        Ok(String::new())
    }
}

fn hosts_file(spec: &HostsFileSpec, log: &slog::Logger) -> Result<String, EtcError> {
    let mut text = if spec.copy_from_host {
        read_host(&spec.host_file)?
    } else {
        String::new()
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if spec.localhost {
        text.push_str("127.0.0.1 localhost\n");
    }
    if spec.public_hostname {
        match public_address() {
            Ok((name, address)) => {
                let _ = writeln!(text, "{address} {name}");
            }
            Err(e) => slog::warn!(log, "public hostname left out of /etc/hosts"; "error" => %e),
        }
    }
    for (name, address) in &spec.additional_hosts {
        let _ = writeln!(text, "{address} {name}");
    }
    Ok(text)
}

/// Returns the host name and the first address it resolves to.
fn public_address() -> io::Result<(String, std::net::IpAddr)> {
    let name = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0))?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} has no address")))?;
    Ok((name, address.ip()))
}

fn read_host(path: &Path) -> Result<String, EtcError> {
    fs::read_to_string(path).map_err(|source| EtcError::ReadHost {
        path: path.to_path_buf(),
        source,
    })
}

fn write(state_dir: &Path, name: &str, text: &str) -> Result<PathBuf, EtcError> {
    let path = state_dir.join(name);
    fs::write(&path, text).map_err(|source| EtcError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Opens `path` in the image without following any symlink, the last component included.
fn inspect(root: BorrowedFd<'_>, path: &'static str) -> io::Result<Target> {
    let relative = Path::new(path.trim_start_matches('/'));
    let resolve = sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_BENEATH;
    match sys::openat2(root, relative, libc::O_PATH | libc::O_NOFOLLOW, 0, resolve) {
        Ok(fd) => {
            let stat = nix::sys::stat::fstat(fd.as_raw_fd())?;
            // O_PATH with O_NOFOLLOW opens a symlink itself rather than failing.
            match stat.st_mode & libc::S_IFMT {
                libc::S_IFREG => Ok(Target::Regular(fd)),
                libc::S_IFLNK => Ok(Target::Other("a symlink")),
                _ => Ok(Target::Other("neither a file nor a symlink")),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(Target::Other("below a symlink")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target::Other("missing")),
        Err(e) => Err(e),
    }
}

fn place(
    root: BorrowedFd<'_>,
    source_path: &Path,
    path: &'static str,
    mount: Option<bool>,
    auto: bool,
    log: &slog::Logger,
) -> Result<(), EtcError> {
    let fail = |source| EtcError::Mount {
        source_path: source_path.to_path_buf(),
        path,
        source,
    };
    if mount == Some(false) {
        return Ok(());
    }
    let target = match inspect(root, path).map_err(fail)? {
        Target::Regular(fd) => fd,
        Target::Other(found) if mount == Some(true) => {
            return Err(EtcError::NotAFile { path, found })
        }
        Target::Other(found) => {
            slog::info!(log, "image file left alone"; "path" => path, "found" => found);
            return Ok(());
        }
    };
    if mount.is_none() && !auto {
        return Ok(());
    }
    let source = fs::File::open(source_path).map_err(fail)?;
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    sys::bind_mount(source.as_fd(), target.as_fd(), attrs).map_err(fail)
}
