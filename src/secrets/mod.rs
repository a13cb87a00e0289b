//! Encrypted secrets, compatible with the `v2` format of the original lithos.
//!
//! A secret is written `v2:KEYHASH:NSHASH:SECRETHASH:PAYLOAD`. Each hash is the base64 of a
//! 6-byte BLAKE2b digest of, in order, the ed25519 public key bytes, the namespace and the
//! secret. `PAYLOAD` is the base64 of a libsodium sealed box (`crypto_box_seal`,
//! curve25519-xsalsa20-poly1305) of `NAMESPACE:SECRET`, sealed to the ed25519 key converted
//! to curve25519. Anyone with the public key can encrypt. Only the knot, which reads the
//! sandbox's private key, decrypts, and only for the namespaces the sandbox allows.
//!
//! No type here prints a secret in its `Debug` output, and no error message contains one.
//! The decrypted values returned by [`decrypt`] and [`decrypt_environ`] are plain strings
//! and bytes, so the caller must keep them out of logs itself.

mod error;
mod format;
mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::model::spec::LaunchSpec;

pub use error::SecretsError;
pub use format::{
    encode_hash, short_hash, validate_namespace, EncryptedValue, ShortHash, SHORT_HASH_LEN, VERSION,
};
pub use keys::{load_private_keys, parse_private_keys, read_private_keys, PrivateKey, PublicKey};

/// Encrypts `secret` for `namespace` with `public_key` and returns the `v2:` string.
///
/// The payload is random each time, so encrypting the same secret twice gives two
/// different strings that both decrypt to it.
pub fn encrypt(
    public_key: &PublicKey,
    namespace: &str,
    secret: &[u8],
) -> Result<String, SecretsError> {
    validate_namespace(namespace)?;
    let mut plaintext = Vec::with_capacity(namespace.len() + 1 + secret.len());
    plaintext.extend_from_slice(namespace.as_bytes());
    plaintext.push(b':');
    plaintext.extend_from_slice(secret);
    let payload = public_key
        .montgomery()
        .seal(&mut crypto_box::aead::OsRng, &plaintext)
        .map_err(|_| SecretsError::Seal)?;
    let value = EncryptedValue {
        key_hash: public_key.hash(),
        namespace_hash: short_hash(namespace.as_bytes()),
        secret_hash: short_hash(secret),
        payload,
    };
    Ok(value.to_string())
}

/// Decrypts a `v2:` string with whichever of `keys` it was made for.
///
/// Returns the namespace and the secret. This function does not check the namespace against
/// an allowed list, because [`decrypt_environ`] does that.
pub fn decrypt(keys: &[PrivateKey], value: &str) -> Result<(String, Vec<u8>), SecretsError> {
    let parsed: EncryptedValue = value.trim().parse()?;
    let mut candidates = keys
        .iter()
        .filter(|key| key.public_key().hash() == parsed.key_hash)
        .peekable();
    if candidates.peek().is_none() {
        return Err(SecretsError::KeyHashMismatch {
            value_key: encode_hash(&parsed.key_hash),
            loaded: key_hashes(keys),
        });
    }
    // Two keys share a 48-bit hash only by accident, but then each gets its try.
    let mut last_error = None;
    for key in candidates {
        match open(key, &parsed) {
            Ok(opened) => return Ok(opened),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.expect("at least one candidate key was tried"))
}

/// Bytes a sealed box adds to its plaintext: the ephemeral public key and the MAC.
const SEAL_OVERHEAD: usize = 32 + 16;

fn open(key: &PrivateKey, value: &EncryptedValue) -> Result<(String, Vec<u8>), SecretsError> {
    if value.payload.len() < SEAL_OVERHEAD {
        return Err(SecretsError::CorruptPayload {
            reason: "it is shorter than the 48 bytes every sealed box has",
        });
    }
    let mut plaintext =
        key.secret()
            .unseal(&value.payload)
            .map_err(|_| SecretsError::OpenPayload {
                key: encode_hash(&key.public_key().hash()),
            })?;
    let colon = plaintext
        .iter()
        .position(|&b| b == b':')
        .ok_or(SecretsError::CorruptPayload {
            reason: "it has no `NAMESPACE:` prefix",
        })?;
    let secret = plaintext.split_off(colon + 1);
    plaintext.truncate(colon);
    let namespace = String::from_utf8(plaintext).map_err(|_| SecretsError::CorruptPayload {
        reason: "its namespace is not valid UTF-8",
    })?;
    if short_hash(namespace.as_bytes()) != value.namespace_hash {
        return Err(SecretsError::NamespaceHashMismatch);
    }
    if short_hash(&secret) != value.secret_hash {
        return Err(SecretsError::SecretHashMismatch);
    }
    Ok((namespace, secret))
}

/// Tells whether the `v2:` string `value` was encrypted for `public_key`.
///
/// Only the key hash is compared, so a malformed value returns `false`.
pub fn check_key(public_key: &PublicKey, value: &str) -> bool {
    match value.trim().parse::<EncryptedValue>() {
        Ok(parsed) => parsed.key_hash == public_key.hash(),
        Err(_) => false,
    }
}

/// Decrypts a container's `secret-environ` with the keys in `key_file`.
///
/// For each variable, the first alternative that decrypts with any key and whose namespace
/// is one of `namespaces` (matched exactly) wins. When none does, the error lists why each
/// alternative failed. The key file is read only when there is something to decrypt, and
/// it must pass the ownership check of [`load_private_keys`].
pub fn decrypt_environ(
    secret_environ: &BTreeMap<String, Vec<String>>,
    key_file: &Path,
    namespaces: &[String],
) -> Result<BTreeMap<String, String>, SecretsError> {
    if secret_environ.is_empty() {
        return Ok(BTreeMap::new());
    }
    let keys = load_private_keys(key_file)?;
    decrypt_environ_with_keys(secret_environ, &keys, namespaces)
}

/// Decrypted environment variables, whose `Debug` output shows only the names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DecryptedEnviron(BTreeMap<String, String>);

impl DecryptedEnviron {
    /// Returns the variables in name order, with their plain values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Returns the plain value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Returns the number of variables.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Tells whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<String, String>> for DecryptedEnviron {
    fn from(variables: BTreeMap<String, String>) -> Self {
        DecryptedEnviron(variables)
    }
}

impl fmt::Debug for DecryptedEnviron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Decrypts the `secret-environ` of a launch spec with its sandbox's key and namespaces.
///
/// This is the knot's entry point. It rejects a spec with encrypted variables but no
/// `secrets-private-key`, and a variable that `environ` or `pid_environ` also sets,
/// because which of the two the program would see is not defined.
pub fn decrypt_launch_spec(spec: &LaunchSpec) -> Result<DecryptedEnviron, SecretsError> {
    let container = &spec.container;
    let secret_environ = &container.secret_environ;
    if secret_environ.is_empty() {
        return Ok(DecryptedEnviron::default());
    }
    let conflict = secret_environ.keys().find(|name| {
        container.environ.contains_key(*name) || container.pid_environ.contains(*name)
    });
    if let Some(variable) = conflict {
        return Err(SecretsError::ConflictsWithEnviron {
            variable: variable.clone(),
        });
    }
    let Some(key_file) = &spec.secrets_private_key else {
        let variables: Vec<&str> = secret_environ.keys().map(String::as_str).collect();
        return Err(SecretsError::MissingPrivateKey {
            variables: variables.join(", "),
        });
    };
    decrypt_environ(secret_environ, key_file, &spec.secrets_namespaces).map(DecryptedEnviron)
}

/// Decrypts a container's `secret-environ` like [`decrypt_environ`], with keys already loaded.
pub fn decrypt_environ_with_keys(
    secret_environ: &BTreeMap<String, Vec<String>>,
    keys: &[PrivateKey],
    namespaces: &[String],
) -> Result<BTreeMap<String, String>, SecretsError> {
    let mut environ = BTreeMap::new();
    for (variable, alternatives) in secret_environ {
        let value = decrypt_alternatives(keys, alternatives, namespaces).map_err(|failures| {
            SecretsError::DecryptVariable {
                variable: variable.clone(),
                failures,
            }
        })?;
        environ.insert(variable.clone(), value);
    }
    Ok(environ)
}

fn decrypt_alternatives(
    keys: &[PrivateKey],
    alternatives: &[String],
    namespaces: &[String],
) -> Result<String, Vec<SecretsError>> {
    let mut failures = Vec::with_capacity(alternatives.len());
    for alternative in alternatives {
        match decrypt_for_environ(keys, alternative, namespaces) {
            Ok(value) => return Ok(value),
            Err(err) => failures.push(err),
        }
    }
    Err(failures)
}

fn decrypt_for_environ(
    keys: &[PrivateKey],
    value: &str,
    namespaces: &[String],
) -> Result<String, SecretsError> {
    let (namespace, secret) = decrypt(keys, value)?;
    if !namespaces.contains(&namespace) {
        return Err(SecretsError::NamespaceNotAllowed {
            namespace,
            allowed: quoted_list(namespaces),
        });
    }
    if secret.contains(&0) {
        return Err(SecretsError::SecretContainsNul);
    }
    String::from_utf8(secret).map_err(|_| SecretsError::SecretNotUtf8)
}

fn key_hashes(keys: &[PrivateKey]) -> String {
    let hashes: Vec<String> = keys
        .iter()
        .map(|key| encode_hash(&key.public_key().hash()))
        .collect();
    if hashes.is_empty() {
        "none".to_string()
    } else {
        hashes.join(", ")
    }
}

fn quoted_list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests;
