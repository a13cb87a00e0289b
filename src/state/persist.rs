//! Reading and writing `state.bin`.
//!
//! Layout: the 8-byte magic `LITHOSST`, the format version (u32, little endian), the
//! payload length (u64, little endian), a BLAKE2s-256 checksum of the payload, then the
//! payload: [`Persisted`] encoded with bincode 1.3 (fixed-width integers). The checksum
//! turns a torn or corrupted file into an error instead of a state that decodes by chance.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bincode::Options;
use blake2::{Blake2s256, Digest};

use super::Persisted;

/// Version of the `state.bin` format; a file of another version is ignored.
pub const STATE_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"LITHOSST";
const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Failure to read or write `state.bin`.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// There is no state file yet (the first start on this runtime dir).
    #[error("state file {path} does not exist")]
    Missing {
        /// State file path.
        path: PathBuf,
    },
    /// The state file exists but could not be read.
    #[error("failed to read state file {path}")]
    Read {
        /// State file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a state file, or is truncated or corrupted.
    #[error("invalid state file {path}: {problem}")]
    Invalid {
        /// State file path.
        path: PathBuf,
        /// Description of the defect.
        problem: String,
    },
    /// The file was written by another format version.
    #[error("state file {path} has format version {found}, expected {STATE_FORMAT_VERSION}")]
    Version {
        /// State file path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
    },
    /// The payload could not be decoded.
    #[error("failed to decode state file {path}")]
    Decode {
        /// State file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: bincode::Error,
    },
    /// The state could not be encoded.
    #[error("failed to encode the state for {path}")]
    Encode {
        /// State file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: bincode::Error,
    },
    /// Writing the temporary file, renaming it or syncing the directory failed.
    #[error("failed to write state file {path}")]
    Write {
        /// The file or directory the failing step worked on.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

impl Persisted {
    /// Loads the state from `path`.
    ///
    /// Never fails: a missing, unreadable, truncated, corrupted or foreign-version file
    /// gives an empty state together with the error, which the caller logs.
    pub fn load(path: &Path) -> (Persisted, Option<PersistError>) {
        match Self::try_load(path) {
            Ok(state) => (state, None),
            Err(error) => (Persisted::default(), Some(error)),
        }
    }

    fn try_load(path: &Path) -> Result<Persisted, PersistError> {
        let bytes = fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => PersistError::Missing {
                path: path.to_path_buf(),
            },
            _ => PersistError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let invalid = |problem: &str| PersistError::Invalid {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        };
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(invalid("no state file header"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != STATE_FORMAT_VERSION {
            return Err(PersistError::Version {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != length {
            return Err(invalid("truncated or extended payload"));
        }
        if Blake2s256::digest(payload).as_slice() != &bytes[20..HEADER_LEN] {
            return Err(invalid("checksum mismatch"));
        }
        codec()
            .with_limit(length)
            .deserialize(payload)
            .map_err(|source| PersistError::Decode {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Saves the state to `path` atomically: a temporary file next to it is written and
    /// synced, renamed over `path`, and the directory is synced, so a crash at any point
    /// leaves either the old or the new file. No temporary file is left behind on failure.
    pub fn save(&self, path: &Path) -> Result<(), PersistError> {
        let payload = codec()
            .serialize(self)
            .map_err(|source| PersistError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Blake2s256::digest(&payload));
        bytes.extend_from_slice(&payload);
        write_atomically(path, &bytes)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Write { path, source }
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{}.tmp.{}", file_name, std::process::id()));
    let written = write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if let Err(error) = written {
        // The temporary file is ours alone (its name carries our pid), so removing it
        // cannot hurt another writer.
        let _ = fs::remove_file(&temp);
        return Err(write_error(&temp)(error));
    }
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(write_error(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
