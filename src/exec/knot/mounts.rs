//! The container's file system: the image, the volumes, `/dev`, `/proc`, then `pivot_root`.
//!
//! Every path inside the new root is opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink
//! in the image resolves inside the image and never to the host. Host paths of volumes are
//! opened with `RESOLVE_BENEATH` below the configured directory, so a symlink there cannot
//! lead out of it. Mounts are attached to those descriptors with `move_mount`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chown, pivot_root, Gid, Uid};

use crate::exec::sys::{
    self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
    RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS,
};
use crate::model::spec::{LaunchSpec, Volume};

/// Flags of `!Readonly` volumes: ro, nosuid, noexec, nodev.
const READONLY: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV;
/// Flags of `!Persistent` and `!Statedir` volumes: rw, nosuid, noexec, nodev.
const WRITABLE: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV;

/// Error while building the container's file system.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Mount propagation could not be made private.
    #[error("failed to make mount propagation private")]
    Private(#[source] io::Error),
    /// A host directory could not be opened.
    #[error("failed to open {path}")]
    OpenHost {
        /// Host path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A mount point does not exist in the image or in an earlier volume.
    #[error("failed to open mount point {path} in the container")]
    MountPoint {
        /// Path inside the container.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// No readonly-paths or writable-paths entry covers a volume's path.
    #[error("volume {mount_point}: no {allowed} entry covers {path}")]
    NotAllowed {
        /// Path inside the container.
        mount_point: PathBuf,
        /// Virtual path of the volume.
        path: PathBuf,
        /// Which sandbox setting was searched.
        allowed: &'static str,
    },
    /// A volume's host path is missing, leaves its allowed directory or is not a directory.
    #[error("volume {mount_point}: failed to open {path} below {allowed_dir}")]
    Resolve {
        /// Path inside the container.
        mount_point: PathBuf,
        /// Path below the allowed directory.
        path: PathBuf,
        /// The readonly-paths or writable-paths directory.
        allowed_dir: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A directory of a volume could not be created or given its mode and owner.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// Host path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A mount failed.
    #[error("failed to mount {what} at {path}")]
    Mount {
        /// What was mounted.
        what: String,
        /// Path inside the container.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `pivot_root` or detaching the old root failed.
    #[error("failed to pivot into {path}")]
    Pivot {
        /// The new root on the host.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Makes mount propagation private and bind-mounts the image read-only at the mount dir.
/// Returns the new root, for [`mount_volumes`] and the `/etc` files.
pub(crate) fn mount_image(spec: &LaunchSpec) -> Result<OwnedFd, MountError> {
    // Nothing mounted below may propagate back to the host's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| MountError::Private(e.into()))?;
    let image = open_host_dir(&spec.image_root)?;
    let mount_dir = open_host_dir(&spec.mount_dir)?;
    sys::bind_mount(image.as_fd(), mount_dir.as_fd(), MOUNT_ATTR_RDONLY).map_err(|source| {
        MountError::Mount {
            what: spec.image_root.display().to_string(),
            path: PathBuf::from("/"),
            source,
        }
    })?;
    // The descriptor opened before the mount still points below it.
    open_host_dir(&spec.mount_dir)
}

/// Mounts the volumes in path order, so a parent comes before anything inside it.
pub(crate) fn mount_volumes(spec: &LaunchSpec, root: BorrowedFd<'_>) -> Result<(), MountError> {
    // Each source is prepared before its mount point is looked up, because a Statedir
    // subdir may be the mount point of a later volume inside the Statedir.
    for (mount_point, volume) in &spec.container.volumes {
        let target = || open_in_root(root, mount_point);
        match volume {
            Volume::Readonly { path } => {
                let source = open_allowed(spec, mount_point, path, true, None)?;
                bind(&source, &target()?, READONLY, path, mount_point)?;
            }
            Volume::Persistent {
                path,
                mkdir,
                mode,
                user,
                group,
            } => {
                let create = mkdir.then_some((*mode, *user, *group));
                let source = open_allowed(spec, mount_point, path, false, create)?;
                bind(&source, &target()?, WRITABLE, path, mount_point)?;
            }
            Volume::Statedir {
                path,
                mode,
                user,
                group,
            } => {
                let dir = spec.state_dir.join(relative(path));
                create_dir(&dir, *mode, *user, *group)?;
                let source = open_host_dir(&dir)?;
                bind(&source, &target()?, WRITABLE, &dir, mount_point)?;
            }
            Volume::Tmpfs { size, mode } => {
                let size = size.to_string();
                let mode = format!("{mode:o}");
                let mut options = vec![("mode", mode.as_str())];
                // Size 0 keeps the kernel's default of half the RAM.
                if size != "0" {
                    options.push(("size", size.as_str()));
                }
                mount_fs(
                    "tmpfs",
                    &options,
                    &target()?,
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                    mount_point,
                )?;
            }
        }
    }
    Ok(())
}

/// Mounts `/dev` from the devfs dir, a private devpts instance with a ptmx every user may
/// open (the host's ptmx is left alone), `/dev/shm` and a `/proc` of the knot's new pid
/// namespace.
pub(crate) fn mount_system(spec: &LaunchSpec, root: BorrowedFd<'_>) -> Result<(), MountError> {
    let dev = open_in_root(root, Path::new("/dev"))?;
    let devfs = open_host_dir(&spec.devfs_dir)?;
    bind(
        &devfs,
        &dev,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        &spec.devfs_dir,
        Path::new("/dev"),
    )?;
    let pts = open_in_root(root, Path::new("/dev/pts"))?;
    let options = [("ptmxmode", "0666"), ("mode", "0620")];
    mount_fs(
        "devpts",
        &options,
        &pts,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        Path::new("/dev/pts"),
    )?;
    let shm = open_in_root(root, Path::new("/dev/shm"))?;
    let flags = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    mount_fs(
        "tmpfs",
        &[("mode", "1777")],
        &shm,
        flags,
        Path::new("/dev/shm"),
    )?;
    let proc = open_in_root(root, Path::new("/proc"))?;
    mount_fs("proc", &[], &proc, flags, Path::new("/proc"))
}

/// Makes the mount dir the root and detaches the old root, so no host path stays
/// reachable from the container.
pub(crate) fn pivot(spec: &LaunchSpec) -> Result<(), MountError> {
    let fail = |e: nix::Error| MountError::Pivot {
        path: spec.mount_dir.clone(),
        source: e.into(),
    };
    chdir(&spec.mount_dir).map_err(fail)?;
    // pivot_root(".", ".") stacks the old root on top of the new one, so it can be
    // detached without a directory for it in the image.
    pivot_root(".", ".").map_err(fail)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail)?;
    chdir("/").map_err(fail)
}

/// Opens `path` inside the container root; symlinks resolve inside the root.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, MountError> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    sys::openat2(
        root,
        &relative(path),
        flags,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|source| MountError::MountPoint {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn open_host_dir(path: &Path) -> Result<OwnedFd, MountError> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map_err(|source| MountError::OpenHost {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(dir.into())
}

/// Strips the leading `/` and any `.` so the path can be opened relative to a directory.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Finds the longest configured prefix of the virtual `path`: readonly-paths and
/// writable-paths for `!Readonly`, writable-paths only otherwise.
fn map_path<'a>(
    readonly_paths: Option<&'a BTreeMap<PathBuf, PathBuf>>,
    writable_paths: &'a BTreeMap<PathBuf, PathBuf>,
    path: &Path,
) -> Option<(&'a Path, PathBuf)> {
    let maps = readonly_paths
        .into_iter()
        .chain(std::iter::once(writable_paths));
    let mut best: Option<(&Path, &Path)> = None;
    for map in maps {
        for (prefix, host) in map.iter() {
            let longer =
                best.is_none_or(|(b, _)| prefix.components().count() > b.components().count());
            if path.starts_with(prefix) && longer {
                best = Some((prefix.as_path(), host.as_path()));
            }
        }
    }
    best.map(|(prefix, host)| {
        (
            host,
            path.strip_prefix(prefix)
                .unwrap_or(Path::new(""))
                .to_path_buf(),
        )
    })
}

/// Opens the host directory of a volume below its allowed directory, creating it first
/// when `create` gives the mode, user and group of a `mkdir: true` volume.
fn open_allowed(
    spec: &LaunchSpec,
    mount_point: &Path,
    path: &Path,
    readonly: bool,
    create: Option<(u32, u32, u32)>,
) -> Result<OwnedFd, MountError> {
    let allowed = if readonly {
        "readonly-paths or writable-paths"
    } else {
        "writable-paths"
    };
    let (allowed_dir, rest) = map_path(
        readonly.then_some(&spec.readonly_paths),
        &spec.writable_paths,
        path,
    )
    .ok_or_else(|| MountError::NotAllowed {
        mount_point: mount_point.to_path_buf(),
        path: path.to_path_buf(),
        allowed,
    })?;
    let base = open_host_dir(allowed_dir)?;
    let resolve_error = |source| MountError::Resolve {
        mount_point: mount_point.to_path_buf(),
        path: rest.clone(),
        allowed_dir: allowed_dir.to_path_buf(),
        source,
    };
    let open = || {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let path = if rest.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rest.as_path()
        };
        sys::openat2(
            base.as_fd(),
            path,
            flags,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        )
    };
    match (open(), create) {
        (Ok(fd), _) => Ok(fd),
        (Err(e), Some((mode, user, group))) if e.kind() == io::ErrorKind::NotFound => {
            create_beneath(&base, &rest, mode, user, group).map_err(resolve_error)?;
            open().map_err(resolve_error)
        }
        (Err(e), _) => Err(resolve_error(e)),
    }
}

/// Creates the missing components of `rest` below `base` without following symlinks;
/// the last one gets `mode` and its owner, the others mode 0755.
fn create_beneath(base: &OwnedFd, rest: &Path, mode: u32, user: u32, group: u32) -> io::Result<()> {
    let mut dir = sys::openat2(
        base.as_fd(),
        Path::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        0,
    )?;
    let components: Vec<_> = rest.components().collect();
    for (index, component) in components.iter().enumerate() {
        let name = Path::new(component.as_os_str());
        let last = index + 1 == components.len();
        let created = match nix::sys::stat::mkdirat(
            Some(dir.as_raw_fd()),
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) => true,
            Err(nix::Error::EEXIST) => false,
            Err(e) => return Err(e.into()),
        };
        let next = sys::openat2(
            dir.as_fd(),
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
            RESOLVE_BENEATH,
        )?;
        if last && created {
            nix::unistd::fchown(
                next.as_raw_fd(),
                Some(Uid::from_raw(user)),
                Some(Gid::from_raw(group)),
            )?;
            nix::sys::stat::fchmod(
                next.as_raw_fd(),
                nix::sys::stat::Mode::from_bits_truncate(mode),
            )?;
        }
        dir = next;
    }
    Ok(())
}

fn create_dir(path: &Path, mode: u32, user: u32, group: u32) -> Result<(), MountError> {
    let fail = |source: io::Error| MountError::CreateDir {
        path: path.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(fail)?;
    chown(path, Some(Uid::from_raw(user)), Some(Gid::from_raw(group)))
        .map_err(|e| fail(e.into()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)
}

fn bind(
    source: &OwnedFd,
    target: &OwnedFd,
    attrs: u64,
    what: &Path,
    mount_point: &Path,
) -> Result<(), MountError> {
    sys::bind_mount(source.as_fd(), target.as_fd(), attrs).map_err(|source| MountError::Mount {
        what: what.display().to_string(),
        path: mount_point.to_path_buf(),
        source,
    })
}

fn mount_fs(
    fstype: &str,
    options: &[(&str, &str)],
    target: &OwnedFd,
    attrs: u64,
    path: &Path,
) -> Result<(), MountError> {
    let fail = |source: io::Error| MountError::Mount {
        what: fstype.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let to_c = |s: &str| CString::new(s).map_err(|_| fail(io::ErrorKind::InvalidInput.into()));
    let fstype_c = to_c(fstype)?;
    let mut pairs = Vec::new();
    for (key, value) in options {
        pairs.push((to_c(key)?, to_c(value)?));
    }
    let borrowed: Vec<_> = pairs
        .iter()
        .map(|(k, v)| (k.as_c_str(), v.as_c_str()))
        .collect();
    sys::mount_new(&fstype_c, &borrowed, target.as_fd(), attrs).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(entries: &[(&str, &str)]) -> BTreeMap<PathBuf, PathBuf> {
        entries
            .iter()
            .map(|(k, v)| (PathBuf::from(k), PathBuf::from(v)))
            .collect()
    }

    #[test]
    fn longest_prefix_wins() {
        let writable = paths(&[("/storage", "/srv/st"), ("/storage/redis", "/srv/redis")]);
        let readonly = paths(&[("/etc-data", "/srv/etc")]);
        let (host, rest) = map_path(None, &writable, Path::new("/storage/redis/db")).unwrap();
        assert_eq!(
            (host, rest.as_path()),
            (Path::new("/srv/redis"), Path::new("db"))
        );
        let (host, rest) =
            map_path(Some(&readonly), &writable, Path::new("/storage/other")).unwrap();
        assert_eq!(
            (host, rest.as_path()),
            (Path::new("/srv/st"), Path::new("other"))
        );
        let (host, rest) = map_path(Some(&readonly), &writable, Path::new("/etc-data")).unwrap();
        assert_eq!(
            (host, rest.as_path()),
            (Path::new("/srv/etc"), Path::new(""))
        );
        assert!(map_path(None, &writable, Path::new("/etc-data/x")).is_none());
        assert!(map_path(None, &writable, Path::new("/storagex")).is_none());
    }
}
