//! OpenSSH ed25519 keys and their conversion to the curve25519 keys of a sealed box.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;

use super::format::{encode_hash, short_hash, ShortHash};
use super::SecretsError;

/// The PEM label `ssh-keygen` writes around a private key.
const OPENSSH_LABEL: &str = "OPENSSH PRIVATE KEY";

/// An ed25519 public key, as published for people who encrypt secrets.
#[derive(Clone)]
pub struct PublicKey {
    ed25519: [u8; 32],
    montgomery: crypto_box::PublicKey,
    hash: ShortHash,
    comment: String,
}

impl PublicKey {
    /// Builds a public key from the 32 bytes of an ed25519 public key.
    ///
    /// Rejects bytes that are not a point on the curve or are a point of small order, as
    /// libsodium's `crypto_sign_ed25519_pk_to_curve25519` does.
    pub fn from_ed25519_bytes(bytes: [u8; 32]) -> Result<Self, SecretsError> {
        let verifying =
            VerifyingKey::from_bytes(&bytes).map_err(|_| SecretsError::InvalidEd25519Key)?;
        if verifying.is_weak() {
            return Err(SecretsError::InvalidEd25519Key);
        }
        Ok(PublicKey {
            ed25519: bytes,
            montgomery: crypto_box::PublicKey::from_bytes(verifying.to_montgomery().to_bytes()),
            hash: short_hash(&bytes),
            comment: String::new(),
        })
    }

    /// Parses one line of an OpenSSH `.pub` file, `ssh-ed25519 BASE64 [COMMENT]`.
    pub fn from_openssh(line: &str) -> Result<Self, SecretsError> {
        if line.trim_start().starts_with("-----BEGIN ") {
            return Err(SecretsError::NotPublicKey);
        }
        let parsed = ssh_key::PublicKey::from_openssh(line.trim())
            .map_err(|source| SecretsError::ParsePublicKey { source })?;
        let KeyData::Ed25519(key) = parsed.key_data() else {
            return Err(SecretsError::UnsupportedPublicKey {
                algorithm: parsed.algorithm().to_string(),
            });
        };
        let mut public = PublicKey::from_ed25519_bytes(key.0)?;
        public.comment = parsed.comment().to_string();
        Ok(public)
    }

    /// Reads an OpenSSH `.pub` file such as the one `ssh-keygen` writes next to a key.
    pub fn read_file(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::ReadPublicKey {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_openssh(&text).map_err(|source| SecretsError::PublicKeyFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Returns the 32 bytes of the ed25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.ed25519
    }

    /// Returns the short hash of the key bytes, the `KEYHASH` field of values sealed to it.
    pub fn hash(&self) -> ShortHash {
        self.hash
    }

    /// Returns the comment of the OpenSSH key, often `user@host`.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    pub(super) fn montgomery(&self) -> &crypto_box::PublicKey {
        &self.montgomery
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("hash", &encode_hash(&self.hash))
            .field("comment", &self.comment)
            .finish()
    }
}

/// An ed25519 private key converted for opening sealed boxes.
///
/// `Debug` shows only the public half.
#[derive(Clone)]
pub struct PrivateKey {
    public: PublicKey,
    secret: crypto_box::SecretKey,
}

impl PrivateKey {
    /// Builds a private key from the 32-byte ed25519 seed.
    ///
    /// The curve25519 scalar is derived as libsodium's `crypto_sign_ed25519_sk_to_curve25519`
    /// does: the first 32 bytes of SHA-512 of the seed, clamped.
    pub fn from_ed25519_seed(seed: &[u8; 32]) -> Result<Self, SecretsError> {
        let signing = SigningKey::from_bytes(seed);
        let mut scalar = signing.to_scalar_bytes();
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        Ok(PrivateKey {
            public: PublicKey::from_ed25519_bytes(signing.verifying_key().to_bytes())?,
            secret: crypto_box::SecretKey::from_bytes(scalar),
        })
    }

    /// Returns the public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub(super) fn secret(&self) -> &crypto_box::SecretKey {
        &self.secret
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Loads the private keys of a sandbox's `secrets-private-key` file.
///
/// The file must be owned by root and give no permission to group or others, because
/// whoever reads it can decrypt every secret of the cluster. It may hold several
/// concatenated OpenSSH ed25519 keys, none of them protected by a passphrase.
pub fn load_private_keys(path: &Path) -> Result<Vec<PrivateKey>, SecretsError> {
    load_private_keys_owned_by(path, 0)
}

/// Loads private keys like [`load_private_keys`], with the owner given as a uid.
pub(super) fn load_private_keys_owned_by(
    path: &Path,
    owner: u32,
) -> Result<Vec<PrivateKey>, SecretsError> {
    let mut file = File::open(path).map_err(|source| SecretsError::OpenKeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    // Check the opened file, not the path, so a swapped file cannot slip past the check.
    let metadata = file
        .metadata()
        .map_err(|source| SecretsError::ReadKeyFile {
            path: path.to_path_buf(),
            source,
        })?;
    let mode = metadata.mode() & 0o7777;
    if metadata.uid() != owner {
        return Err(SecretsError::KeyFileOwner {
            path: path.to_path_buf(),
            uid: metadata.uid(),
            mode,
        });
    }
    if mode & 0o077 != 0 {
        return Err(SecretsError::KeyFileMode {
            path: path.to_path_buf(),
            uid: metadata.uid(),
            mode,
        });
    }
    read_keys_from(&mut file, path)
}

/// Reads every private key in `path` without checking who owns the file.
///
/// Meant for `lithos_crypt decrypt`, which a key holder runs on a copy of the key.
pub fn read_private_keys(path: &Path) -> Result<Vec<PrivateKey>, SecretsError> {
    let mut file = File::open(path).map_err(|source| SecretsError::OpenKeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    read_keys_from(&mut file, path)
}

fn read_keys_from(file: &mut File, path: &Path) -> Result<Vec<PrivateKey>, SecretsError> {
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| SecretsError::ReadKeyFile {
            path: path.to_path_buf(),
            source,
        })?;
    parse_private_keys(&text, path)
}

/// Parses every private key in `text`, the contents of the key file `path`.
///
/// `path` only names the file in errors.
pub fn parse_private_keys(text: &str, path: &Path) -> Result<Vec<PrivateKey>, SecretsError> {
    let blocks = split_pem_blocks(text, path)?;
    if blocks.is_empty() {
        return Err(SecretsError::NoPrivateKeys {
            path: path.to_path_buf(),
        });
    }
    blocks
        .iter()
        .enumerate()
        .map(|(index, block)| parse_one_key(block, path, index + 1))
        .collect()
}

fn parse_one_key(pem: &str, path: &Path, index: usize) -> Result<PrivateKey, SecretsError> {
    let parsed =
        ssh_key::PrivateKey::from_openssh(pem).map_err(|source| SecretsError::ParsePrivateKey {
            path: path.to_path_buf(),
            index,
            source,
        })?;
    if parsed.is_encrypted() {
        return Err(SecretsError::EncryptedPrivateKey {
            path: path.to_path_buf(),
            index,
        });
    }
    let KeypairData::Ed25519(pair) = parsed.key_data() else {
        return Err(SecretsError::UnsupportedPrivateKey {
            path: path.to_path_buf(),
            index,
            algorithm: parsed.algorithm().to_string(),
        });
    };
    let key = PrivateKey::from_ed25519_seed(&pair.private.to_bytes())?;
    // A key whose public half does not belong to its seed is damaged, and decrypting with it
    // would report every value as made for another key.
    if key.public.ed25519 != pair.public.0 {
        return Err(SecretsError::PrivateKeyMismatch {
            path: path.to_path_buf(),
            index,
        });
    }
    Ok(key)
}

/// Splits concatenated PEM blocks, rejecting blocks that are not OpenSSH private keys.
fn split_pem_blocks(text: &str, path: &Path) -> Result<Vec<String>, SecretsError> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let syntax = |reason: &'static str| SecretsError::KeyFileSyntax {
            path: path.to_path_buf(),
            line: number + 1,
            reason,
        };
        match current.as_mut() {
            None if line.is_empty() => {}
            None => {
                let label = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|rest| rest.strip_suffix("-----"))
                    .ok_or_else(|| syntax("expected a `-----BEGIN ...-----` line"))?;
                if label != OPENSSH_LABEL {
                    return Err(SecretsError::UnsupportedKeyFormat {
                        path: path.to_path_buf(),
                        label: label.to_string(),
                    });
                }
                current = Some(format!("{line}\n"));
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
                if line.starts_with("-----END ") {
                    if line != format!("-----END {OPENSSH_LABEL}-----") {
                        return Err(syntax("the END line does not match the BEGIN line"));
                    }
                    blocks.extend(current.take());
                }
            }
        }
    }
    if current.is_some() {
        return Err(SecretsError::KeyFileSyntax {
            path: path.to_path_buf(),
            line: text.lines().count(),
            reason: "the last key has no `-----END OPENSSH PRIVATE KEY-----` line",
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret_scalar() {
        let key = PrivateKey::from_ed25519_seed(&[7u8; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("PrivateKey"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("scalar"), "{debug}");
    }

    #[test]
    fn weak_public_key_rejected() {
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_ed25519_bytes(identity),
            Err(SecretsError::InvalidEd25519Key)
        ));
    }

    #[test]
    fn pem_split_rejects_other_formats() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = split_pem_blocks(text, Path::new("/k")).unwrap_err();
        assert!(
            matches!(err, SecretsError::UnsupportedKeyFormat { ref label, .. } if label == "RSA PRIVATE KEY")
        );
    }

    #[test]
    fn pem_split_rejects_unterminated_block() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n";
        let err = split_pem_blocks(text, Path::new("/k")).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFileSyntax { .. }), "{err}");
    }

    #[test]
    fn pem_split_rejects_text_between_blocks() {
        let text = "garbage\n";
        let err = split_pem_blocks(text, Path::new("/k")).unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyFileSyntax { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn empty_key_file_rejected() {
        let err = parse_private_keys("\n\n", Path::new("/k")).unwrap_err();
        assert!(matches!(err, SecretsError::NoPrivateKeys { .. }), "{err}");
    }
}
