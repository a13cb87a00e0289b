//! Interoperability with libsodium through PyNaCl, using keys made by `ssh-keygen`.
//!
//! The Python scripts in `tests/interop` parse the OpenSSH keys themselves and convert them
//! with libsodium's `crypto_sign_ed25519_{pk,sk}_to_curve25519`, so they share no code with
//! the Rust side.

mod secrets_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use lithos::secrets::{decrypt_environ, SecretsError};
use secrets_common::{
    interop_script, public_key_path, python_nacl_available, require_root, ssh_keygen,
};

const BINARY: &str = env!("CARGO_BIN_EXE_lithos_crypt");

fn checked(output: Output, program: &str) -> String {
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn lithos_crypt(args: &[&str]) -> String {
    checked(
        Command::new(BINARY).args(args).output().unwrap(),
        "lithos_crypt",
    )
}

fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(interop_script(script))
        .args(args)
        .output()
        .unwrap()
}

fn pynacl_seal(public: &Path, namespace: &str, secret: &str) -> String {
    let output = python(
        "nacl_seal.py",
        &[public.to_str().unwrap(), namespace, secret],
    );
    checked(output, "nacl_seal.py").trim_end().to_string()
}

#[test]
fn pynacl_opens_lithos_crypt_output() {
    if !python_nacl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "main.key", "ed25519", "") else {
        return;
    };
    let public = public_key_path(&private);
    let cases = [
        ("", "the_secret"),
        ("myapp", "pass:with:colons"),
        ("a.b-c_d", "ünï"),
    ];
    for (namespace, secret) in cases {
        let value = lithos_crypt(&[
            "encrypt",
            "-k",
            public.to_str().unwrap(),
            "-n",
            namespace,
            "-d",
            secret,
        ]);

        let output = python(
            "nacl_open.py",
            &[private.to_str().unwrap(), value.trim_end()],
        );

        assert_eq!(
            checked(output, "nacl_open.py"),
            format!("{namespace}:{secret}")
        );
    }
}

#[test]
fn pynacl_rejects_value_for_other_key() {
    if !python_nacl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (Some(first), Some(second)) = (
        ssh_keygen(dir.path(), "first", "ed25519", ""),
        ssh_keygen(dir.path(), "second", "ed25519", ""),
    ) else {
        return;
    };
    let public = public_key_path(&first);
    let value = lithos_crypt(&["encrypt", "-k", public.to_str().unwrap(), "-d", "x"]);

    let output = python(
        "nacl_open.py",
        &[second.to_str().unwrap(), value.trim_end()],
    );

    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn lithos_crypt_opens_pynacl_value() {
    if !python_nacl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "main.key", "ed25519", "") else {
        return;
    };
    let value = pynacl_seal(&public_key_path(&private), "myapp", "from libsodium");

    let secret = lithos_crypt(&["decrypt", "-i", private.to_str().unwrap(), "-d", &value]);
    let matches = lithos_crypt(&[
        "check-key",
        "-k",
        public_key_path(&private).to_str().unwrap(),
        "-d",
        &value,
    ]);

    assert_eq!(secret, "from libsodium");
    assert!(matches.contains("was encrypted"), "{matches}");
}

#[test]
fn decrypt_environ_opens_pynacl_values() {
    if !python_nacl_available() || !require_root("the key file must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "main.key", "ed25519", "") else {
        return;
    };
    let public = public_key_path(&private);
    let allowed = BTreeMap::from([(
        "DB_PASSWORD".to_string(),
        vec![pynacl_seal(&public, "myapp", "s3cret")],
    )]);
    let mut with_foreign = allowed.clone();
    with_foreign.insert(
        "OTHER".to_string(),
        vec![pynacl_seal(&public, "otherapp", "stolen")],
    );
    let namespaces = vec!["".to_string(), "myapp".to_string()];

    let decrypted = decrypt_environ(&allowed, &private, &namespaces).unwrap();
    let err = decrypt_environ(&with_foreign, &private, &namespaces).unwrap_err();

    assert!(
        matches!(err, SecretsError::DecryptVariable { ref variable, .. } if variable == "OTHER"),
        "{err}"
    );
    assert!(err.to_string().contains("namespace not allowed"), "{err}");
    assert!(err.to_string().contains("\"otherapp\""), "{err}");
    assert!(!err.to_string().contains("stolen"), "{err}");
    assert_eq!(decrypted["DB_PASSWORD"], "s3cret");
}
