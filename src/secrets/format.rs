//! The text form of an encrypted value: `v2:KEYHASH:NSHASH:SECRETHASH:PAYLOAD`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

use super::SecretsError;

/// The only supported format version. The original lithos dropped `v1` because it was broken.
pub const VERSION: &str = "v2";

/// Length in bytes of the short BLAKE2b hashes in an encrypted value.
pub const SHORT_HASH_LEN: usize = 6;

/// A 6-byte BLAKE2b digest, the same as `b2sum -l48` computes.
pub type ShortHash = [u8; SHORT_HASH_LEN];

/// Computes the short hash of `data`.
///
/// BLAKE2b puts the output length into its parameter block, so this is not a truncated
/// 64-byte digest.
pub fn short_hash(data: &[u8]) -> ShortHash {
    let mut hasher = Blake2bVar::new(SHORT_HASH_LEN).expect("6 is a valid BLAKE2b output length");
    hasher.update(data);
    let mut out = [0u8; SHORT_HASH_LEN];
    hasher
        .finalize_variable(&mut out)
        .expect("the buffer has the requested output length");
    out
}

/// Encodes a short hash as the 8 base64 characters used in an encrypted value.
pub fn encode_hash(hash: &ShortHash) -> String {
    STANDARD.encode(hash)
}

/// An encrypted value split into its fields, with the base64 decoded.
///
/// The payload is a libsodium sealed box, so neither this type nor its `Debug` output
/// reveals the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedValue {
    /// Short hash of the ed25519 public key the payload is sealed to.
    pub key_hash: ShortHash,
    /// Short hash of the namespace.
    pub namespace_hash: ShortHash,
    /// Short hash of the secret.
    pub secret_hash: ShortHash,
    /// Sealed box of `NAMESPACE:SECRET`.
    pub payload: Vec<u8>,
}

impl FromStr for EncryptedValue {
    type Err = SecretsError;

    /// Parses `v2:KEYHASH:NSHASH:SECRETHASH:PAYLOAD`.
    ///
    /// Error messages never quote the input, because a plain-text secret pasted where an
    /// encrypted one belongs must not end up in a log.
    fn from_str(text: &str) -> Result<Self, SecretsError> {
        let fields: Vec<&str> = text.split(':').collect();
        check_version(fields[0], fields.len())?;
        if fields.len() != 5 {
            return Err(SecretsError::FieldCount {
                count: fields.len(),
            });
        }
        Ok(EncryptedValue {
            key_hash: decode_hash(fields[1], "key")?,
            namespace_hash: decode_hash(fields[2], "namespace")?,
            secret_hash: decode_hash(fields[3], "secret")?,
            payload: STANDARD
                .decode(fields[4])
                .map_err(|source| SecretsError::PayloadBase64 { source })?,
        })
    }
}

impl fmt::Display for EncryptedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION}:{}:{}:{}:{}",
            encode_hash(&self.key_hash),
            encode_hash(&self.namespace_hash),
            encode_hash(&self.secret_hash),
            STANDARD.encode(&self.payload)
        )
    }
}

/// Rejects anything but `v2`, naming the version only when the prefix looks like one.
fn check_version(prefix: &str, field_count: usize) -> Result<(), SecretsError> {
    if prefix == VERSION {
        return Ok(());
    }
    let looks_like_version = field_count > 1
        && prefix.len() <= 4
        && prefix.starts_with('v')
        && prefix.len() > 1
        && prefix[1..].bytes().all(|b| b.is_ascii_digit());
    if looks_like_version {
        Err(SecretsError::UnsupportedVersion {
            version: prefix.to_string(),
        })
    } else {
        Err(SecretsError::NotEncrypted)
    }
}

fn decode_hash(field: &str, which: &'static str) -> Result<ShortHash, SecretsError> {
    let invalid = || SecretsError::InvalidHash { field: which };
    let bytes = STANDARD.decode(field).map_err(|_| invalid())?;
    bytes.try_into().map_err(|_| invalid())
}

/// Checks that a namespace matches `^[a-zA-Z0-9_.-]*$`, the set the original lithos allows.
pub fn validate_namespace(namespace: &str) -> Result<(), SecretsError> {
    let valid = namespace
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(SecretsError::InvalidNamespace {
            namespace: namespace.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_matches_documented_b2sum() {
        // `echo -n "the_secret" | b2sum -l48 | xxd -r -p | base64`
        assert_eq!(encode_hash(&short_hash(b"the_secret")), "8MtOoWUX");
    }

    #[test]
    fn short_hash_of_documented_namespace() {
        // The namespace field of the documented `lithos_crypt encrypt -n myapp` example.
        assert_eq!(encode_hash(&short_hash(b"myapp")), "KqWSX0BY");
    }

    #[test]
    fn parse_documented_example() {
        let text = "v2:ROit92I5:KqWSX0BY:8MtOoWUX:nHcVCIWZG2hivi0rKa8MRnAIbt7TDTHB8YC8bBnac3IGMzk57R/HsBhxeqCdC7Ljyf8pszBBjIGD33f6lwBM7Q==";
        let value: EncryptedValue = text.parse().unwrap();
        assert_eq!(value.namespace_hash, short_hash(b"myapp"));
        assert_eq!(value.secret_hash, short_hash(b"the_secret"));
        // 32-byte ephemeral key, 16-byte tag, then "myapp:the_secret".
        assert_eq!(value.payload.len(), 32 + 16 + "myapp:the_secret".len());
        assert_eq!(value.to_string(), text);
    }

    #[test]
    fn parse_rejects_other_versions() {
        let err = "v1:ROit92I5:KqWSX0BY:8MtOoWUX:AAAA"
            .parse::<EncryptedValue>()
            .unwrap_err();
        assert!(matches!(err, SecretsError::UnsupportedVersion { ref version } if version == "v1"));
    }

    #[test]
    fn parse_never_quotes_plain_text() {
        for text in ["hunter2", "hunter2:with:colons", "v2:hunter2", "v9:hunter2"] {
            let err = text.parse::<EncryptedValue>().unwrap_err();
            let message = err.to_string();
            assert!(!message.contains("hunter2"), "{message:?} quotes {text:?}");
        }
    }

    #[test]
    fn parse_rejects_wrong_field_count() {
        let err = "v2:ROit92I5:KqWSX0BY:8MtOoWUX"
            .parse::<EncryptedValue>()
            .unwrap_err();
        assert!(matches!(err, SecretsError::FieldCount { count: 4 }));
    }

    #[test]
    fn parse_rejects_bad_hashes() {
        let cases = [
            ("v2:ROit92I!:KqWSX0BY:8MtOoWUX:AAAA", "key"),
            ("v2:ROit92I5:KqWSX0:8MtOoWUX:AAAA", "namespace"),
            ("v2:ROit92I5:KqWSX0BY:8MtOoWUXAAAA:AAAA", "secret"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<EncryptedValue>().unwrap_err();
            assert!(
                matches!(err, SecretsError::InvalidHash { field } if field == expected),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn parse_rejects_bad_payload_base64() {
        let err = "v2:ROit92I5:KqWSX0BY:8MtOoWUX:not*base64"
            .parse::<EncryptedValue>()
            .unwrap_err();
        assert!(matches!(err, SecretsError::PayloadBase64 { .. }));
    }

    #[test]
    fn namespace_charset() {
        for good in ["", "myapp", "project1.web", "a-b_c.D9"] {
            assert!(validate_namespace(good).is_ok(), "{good:?}");
        }
        for bad in ["my app", "a:b", "a/b", "ü", "a\n"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
