//! The error type of the secrets module.

use std::fmt;
use std::path::PathBuf;

/// Errors of loading keys and of encrypting and decrypting secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The public key file could not be read.
    #[error("failed to read public key file {path}")]
    ReadPublicKey {
        /// The public key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The public key file does not hold a usable key.
    #[error("invalid public key file {path}")]
    PublicKeyFile {
        /// The public key file.
        path: PathBuf,
        /// The problem with the key.
        #[source]
        source: Box<SecretsError>,
    },
    /// The text is not an OpenSSH public key.
    #[error("failed to parse OpenSSH public key")]
    ParsePublicKey {
        /// The parser's error.
        #[source]
        source: ssh_key::Error,
    },
    /// A private key was given where a public key belongs.
    #[error("this is a private key: give the public key, the `.pub` file next to it")]
    NotPublicKey,
    /// The public key is not ed25519.
    #[error(
        "unsupported {algorithm} key: only ed25519 keys (`ssh-keygen -t ed25519`) are supported"
    )]
    UnsupportedPublicKey {
        /// The key's algorithm name.
        algorithm: String,
    },
    /// The key bytes are not a usable ed25519 point.
    #[error("invalid ed25519 public key: not a curve point of large order")]
    InvalidEd25519Key,
    /// The private key file could not be opened.
    #[error("failed to open private key file {path}")]
    OpenKeyFile {
        /// The private key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The private key file could not be read.
    #[error("failed to read private key file {path}")]
    ReadKeyFile {
        /// The private key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The private key file is not owned by root.
    #[error(
        "private key file {path} is owned by uid {uid} (mode {mode:04o}) but must be owned \
         by root: run `chown root {path}`"
    )]
    KeyFileOwner {
        /// The private key file.
        path: PathBuf,
        /// The file's owner.
        uid: u32,
        /// The file's permission bits.
        mode: u32,
    },
    /// The private key file gives permissions to group or others.
    #[error(
        "private key file {path} has mode {mode:04o} (owner uid {uid}) but must give no \
         permission to group or others: run `chmod 600 {path}`"
    )]
    KeyFileMode {
        /// The private key file.
        path: PathBuf,
        /// The file's owner.
        uid: u32,
        /// The file's permission bits.
        mode: u32,
    },
    /// The private key file is not a sequence of PEM blocks.
    #[error("invalid private key file {path}, line {line}: {reason}")]
    KeyFileSyntax {
        /// The private key file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// Description of the problem.
        reason: &'static str,
    },
    /// The private key file contains a PEM block of another format.
    #[error(
        "private key file {path} contains a {label} block: only OpenSSH ed25519 keys \
         (`ssh-keygen -t ed25519`) are supported"
    )]
    UnsupportedKeyFormat {
        /// The private key file.
        path: PathBuf,
        /// The PEM label, for example `RSA PRIVATE KEY`.
        label: String,
    },
    /// The private key file contains no key.
    #[error("private key file {path} contains no key")]
    NoPrivateKeys {
        /// The private key file.
        path: PathBuf,
    },
    /// A key in the private key file is not a valid OpenSSH private key.
    #[error("failed to parse private key {index} of {path}")]
    ParsePrivateKey {
        /// The private key file.
        path: PathBuf,
        /// One-based position of the key in the file.
        index: usize,
        /// The parser's error.
        #[source]
        source: ssh_key::Error,
    },
    /// A key in the private key file is protected by a passphrase.
    #[error(
        "private key {index} of {path} is protected by a passphrase, which lithos cannot \
         enter: remove it with `ssh-keygen -p -N \"\" -f FILE` on a copy holding only that key"
    )]
    EncryptedPrivateKey {
        /// The private key file.
        path: PathBuf,
        /// One-based position of the key in the file.
        index: usize,
    },
    /// A key in the private key file is not ed25519.
    #[error(
        "private key {index} of {path} is a {algorithm} key: only ed25519 keys \
         (`ssh-keygen -t ed25519`) are supported"
    )]
    UnsupportedPrivateKey {
        /// The private key file.
        path: PathBuf,
        /// One-based position of the key in the file.
        index: usize,
        /// The key's algorithm name.
        algorithm: String,
    },
    /// The public half stored with a private key does not belong to it.
    #[error("private key {index} of {path} is damaged: its public key does not match")]
    PrivateKeyMismatch {
        /// The private key file.
        path: PathBuf,
        /// One-based position of the key in the file.
        index: usize,
    },
    /// The namespace contains a character outside `[a-zA-Z0-9_.-]`.
    #[error("invalid namespace {namespace:?}: only letters, digits, `_`, `.` and `-` are allowed")]
    InvalidNamespace {
        /// The rejected namespace.
        namespace: String,
    },
    /// Sealing the payload failed.
    #[error("failed to seal the secret")]
    Seal,
    /// The value does not start with a version prefix at all.
    #[error("not an encrypted value: it does not start with `v2:` (encrypt it with `lithos_crypt encrypt`)")]
    NotEncrypted,
    /// The value has a version other than `v2`.
    #[error("unsupported encryption version {version}: only v2 is supported")]
    UnsupportedVersion {
        /// The version prefix.
        version: String,
    },
    /// The value does not have the five fields of `v2:KEYHASH:NSHASH:SECRETHASH:PAYLOAD`.
    #[error("invalid v2 value: expected 5 colon-separated fields, found {count}")]
    FieldCount {
        /// The number of fields found.
        count: usize,
    },
    /// A hash field is not the base64 of 6 bytes.
    #[error("invalid v2 value: the {field} hash is not 8 base64 characters encoding 6 bytes")]
    InvalidHash {
        /// Name of the hash field: `key`, `namespace` or `secret`.
        field: &'static str,
    },
    /// The payload field is not valid base64.
    #[error("invalid v2 value: the payload is not valid base64")]
    PayloadBase64 {
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The value was encrypted for a key that is not loaded.
    #[error("key hash differs: the value was encrypted for key {value_key}, but the loaded keys are {loaded}")]
    KeyHashMismatch {
        /// The value's key hash.
        value_key: String,
        /// The hashes of the loaded keys, comma-separated.
        loaded: String,
    },
    /// The sealed box does not open with the key its hash names.
    #[error("corrupt payload: the sealed box does not open with key {key}")]
    OpenPayload {
        /// Hash of the key tried.
        key: String,
    },
    /// The opened payload is not `NAMESPACE:SECRET`.
    #[error("corrupt payload: {reason}")]
    CorruptPayload {
        /// Description of the problem.
        reason: &'static str,
    },
    /// The namespace in the payload does not match the value's namespace hash.
    ///
    /// The message leaves out what the payload holds: when the hash does not match, the
    /// part before the first colon may be a piece of the secret.
    #[error("namespace hash mismatch: the decrypted namespace does not match the namespace hash")]
    NamespaceHashMismatch,
    /// The secret in the payload does not match the value's secret hash.
    #[error("secret hash mismatch: the decrypted secret does not match the secret hash")]
    SecretHashMismatch,
    /// The value decrypts, but its namespace is not allowed for this container.
    #[error(
        "namespace not allowed: the value is for namespace {namespace:?}, allowed are {allowed}"
    )]
    NamespaceNotAllowed {
        /// The value's namespace.
        namespace: String,
        /// The allowed namespaces, quoted and comma-separated.
        allowed: String,
    },
    /// The secret is not valid UTF-8, so it cannot be an environment value here.
    #[error("the decrypted secret is not valid UTF-8")]
    SecretNotUtf8,
    /// The secret contains a NUL byte, which an environment value cannot hold.
    #[error("the decrypted secret contains a NUL byte")]
    SecretContainsNul,
    /// The container has encrypted variables but its sandbox names no key to decrypt them.
    #[error(
        "secret-environ sets {variables}, but the sandbox has no secrets-private-key to \
         decrypt them: set secrets-private-key in the sandbox config"
    )]
    MissingPrivateKey {
        /// The encrypted variables, comma-separated.
        variables: String,
    },
    /// A variable is set both in `secret-environ` and in `environ`.
    #[error("variable {variable} is set in both environ and secret-environ: remove one of them")]
    ConflictsWithEnviron {
        /// The variable name.
        variable: String,
    },
    /// No alternative of a secret variable decrypted.
    #[error("failed to decrypt secret variable {variable}: {}", Failures(.failures))]
    DecryptVariable {
        /// The environment variable.
        variable: String,
        /// The failure of each alternative, in the order they are listed.
        failures: Vec<SecretsError>,
    },
}

/// Lists per-alternative failures in one line, each with its own cause chain.
struct Failures<'a>(&'a [SecretsError]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("it has no alternatives");
        }
        for (index, failure) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { "; " };
            write!(f, "{separator}alternative {}: {failure}", index + 1)?;
            let mut source = std::error::Error::source(failure);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}
