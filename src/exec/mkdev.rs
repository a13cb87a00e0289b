//! Populating a devfs directory, the `/dev` every container bind-mounts.
//!
//! The directory holds the harmless character devices a program expects, `ptmx` as a link
//! into the container's own devpts instance, and empty `pts/` and `shm/` mount points.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// Character devices created by [`populate`]: name, major, minor.
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Error of [`populate`].
#[derive(Debug, thiserror::Error)]
pub enum MkdevError {
    /// A directory could not be created.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A device node could not be created.
    #[error("failed to create device node {path}")]
    Mknod {
        /// Device node.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The `ptmx` link could not be created.
    #[error("failed to create symlink {path}")]
    Symlink {
        /// Link path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Permissions could not be set.
    #[error("failed to set the mode of {path}")]
    Chmod {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Something else already exists at a path the devfs needs.
    #[error("{path} exists but is not {expected}: remove it and run again")]
    Conflict {
        /// Existing path.
        path: PathBuf,
        /// What was expected there.
        expected: String,
    },
}

/// Creates the devfs in `dir`; running it again on a complete devfs changes nothing.
pub fn populate(dir: &Path) -> Result<(), MkdevError> {
    create_dir(dir, 0o755)?;
    for &(name, major, minor) in DEVICES {
        create_device(&dir.join(name), major, minor)?;
    }
    let ptmx = dir.join("ptmx");
    match fs::read_link(&ptmx) {
        Ok(target) if target == Path::new("pts/ptmx") => {}
        Ok(_) => return Err(conflict(&ptmx, "a symlink to pts/ptmx")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink("pts/ptmx", &ptmx)
                .map_err(|source| MkdevError::Symlink { path: ptmx, source })?;
        }
        Err(_) => return Err(conflict(&ptmx, "a symlink to pts/ptmx")),
    }
    create_dir(&dir.join("pts"), 0o755)?;
    create_dir(&dir.join("shm"), 0o1777)
}

fn conflict(path: &Path, expected: &str) -> MkdevError {
    MkdevError::Conflict {
        path: path.to_path_buf(),
        expected: expected.to_string(),
    }
}

fn create_dir(path: &Path, mode: u32) -> Result<(), MkdevError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(conflict(path, "a directory")),
        Err(_) => fs::create_dir(path).map_err(|source| MkdevError::CreateDir {
            path: path.to_path_buf(),
            source,
        })?,
    }
    chmod(path, mode)
}

fn create_device(path: &Path, major: u64, minor: u64) -> Result<(), MkdevError> {
    let device = makedev(major, minor);
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_char_device() && meta.rdev() == device => {}
        Ok(_) => return Err(conflict(path, &format!("character device {major}:{minor}"))),
        Err(_) => mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            device,
        )
        .map_err(|e| MkdevError::Mknod {
            path: path.to_path_buf(),
            source: e.into(),
        })?,
    }
    // mknod applies the umask, and every device here is meant for every user.
    chmod(path, 0o666)
}

fn chmod(path: &Path, mode: u32) -> Result<(), MkdevError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        MkdevError::Chmod {
            path: path.to_path_buf(),
            source,
        }
    })
}
