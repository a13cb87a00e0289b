//! Helpers shared by the secrets and `lithos_crypt` tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns the path of a file in `fixtures/secrets`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/secrets")
        .join(name)
}

/// Returns the path of a script in `tests/interop`.
pub fn interop_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Tells whether the test runs as root, printing the skip reason when it does not.
pub fn require_root(reason: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("skipped: needs root ({reason})");
    false
}

/// Copies a fixture key into `dir` with mode 0600, which git does not preserve.
pub fn install_fixture_key(dir: &Path, names: &[&str]) -> PathBuf {
    let path = dir.join(names.join("+"));
    let mut text = String::new();
    for name in names {
        text.push_str(&fs::read_to_string(fixture(name)).unwrap());
    }
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Runs `ssh-keygen -t TYPE -N PASSPHRASE -f dir/name` and returns the private key path.
///
/// Returns `None` after printing the skip reason when `ssh-keygen` is not installed.
pub fn ssh_keygen(dir: &Path, name: &str, key_type: &str, passphrase: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    let output = match Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", passphrase, "-C", name, "-f"])
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: ssh-keygen is not installed (apt-get install openssh-client)");
            return None;
        }
        Err(err) => panic!("failed to run ssh-keygen: {err}"),
    };
    assert!(
        output.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(path)
}

/// Returns the `.pub` file next to a private key made by `ssh-keygen`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Tells whether `python3` with PyNaCl is available, printing the skip reason when not.
pub fn python_nacl_available() -> bool {
    match Command::new("python3")
        .args(["-c", "import nacl.public, nacl.bindings"])
        .output()
    {
        Ok(output) if output.status.success() => true,
        Ok(_) => {
            println!("skipped: PyNaCl is not installed (pip install pynacl)");
            false
        }
        Err(_) => {
            println!("skipped: python3 is not installed");
            false
        }
    }
}

/// One line of `fixtures/secrets/pynacl_vectors.tsv`.
pub struct Vector {
    /// Namespace the value was encrypted for.
    pub namespace: String,
    /// The plain secret.
    pub secret: String,
    /// The `v2:` string PyNaCl built.
    pub value: String,
}

/// Reads the values PyNaCl built for the fixture keys.
pub fn pynacl_vectors() -> Vec<Vector> {
    fs::read_to_string(fixture("pynacl_vectors.tsv"))
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "malformed vector line {line:?}");
            Vector {
                namespace: fields[0].to_string(),
                secret: fields[1].to_string(),
                value: fields[2].to_string(),
            }
        })
        .collect()
}
