//! Secrets with real OpenSSH key files: loading, permission checks and decryption.

mod secrets_common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use lithos::secrets::{
    self, decrypt_environ, decrypt_launch_spec, load_private_keys, read_private_keys, PublicKey,
    SecretsError,
};
use secrets_common::{
    fixture, install_fixture_key, launch_spec, public_key_path, pynacl_vectors, require_root,
    ssh_keygen,
};

fn environ(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries
        .iter()
        .map(|(name, alternatives)| {
            let alternatives = alternatives.iter().map(|a| a.to_string()).collect();
            (name.to_string(), alternatives)
        })
        .collect()
}

fn namespaces(list: &[&str]) -> Vec<String> {
    list.iter().map(|ns| ns.to_string()).collect()
}

#[test]
fn ssh_keygen_key_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "main.key", "ed25519", "") else {
        return;
    };
    let public = PublicKey::read_file(&public_key_path(&private)).unwrap();
    assert_eq!(public.comment(), "main.key");

    let value = secrets::encrypt(&public, "myapp", b"the_secret").unwrap();
    let keys = read_private_keys(&private).unwrap();

    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].public_key().as_bytes(), public.as_bytes());
    let (namespace, secret) = secrets::decrypt(&keys, &value).unwrap();
    assert_eq!(namespace, "myapp");
    assert_eq!(secret, b"the_secret");
}

#[test]
fn key_file_with_several_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (Some(first), Some(second)) = (
        ssh_keygen(dir.path(), "first", "ed25519", ""),
        ssh_keygen(dir.path(), "second", "ed25519", ""),
    ) else {
        return;
    };
    let both = dir.path().join("both");
    let text = fs::read_to_string(&first).unwrap() + &fs::read_to_string(&second).unwrap();
    fs::write(&both, text).unwrap();

    let keys = read_private_keys(&both).unwrap();

    assert_eq!(keys.len(), 2);
    for (index, private) in [first, second].iter().enumerate() {
        let public = PublicKey::read_file(&public_key_path(private)).unwrap();
        let value = secrets::encrypt(&public, "", format!("secret {index}").as_bytes()).unwrap();
        let (_, secret) = secrets::decrypt(&keys, &value).unwrap();
        assert_eq!(secret, format!("secret {index}").as_bytes());
    }
}

#[test]
fn passphrase_protected_key_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "locked", "ed25519", "a passphrase") else {
        return;
    };
    let err = read_private_keys(&private).unwrap_err();
    assert!(
        matches!(err, SecretsError::EncryptedPrivateKey { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("passphrase"), "{err}");
}

#[test]
fn passphrase_protected_fixture_rejected() {
    let err = read_private_keys(&fixture("test_key_passphrase")).unwrap_err();
    assert!(
        matches!(err, SecretsError::EncryptedPrivateKey { .. }),
        "{err}"
    );
}

#[test]
fn passphrase_protected_second_key_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let both = install_fixture_key(dir.path(), &["test_key_1", "test_key_passphrase"]);
    let err = read_private_keys(&both).unwrap_err();
    assert!(
        matches!(err, SecretsError::EncryptedPrivateKey { index: 2, .. }),
        "{err}"
    );
}

#[test]
fn ecdsa_keys_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let Some(private) = ssh_keygen(dir.path(), "ecdsa", "ecdsa", "") else {
        return;
    };
    let err = read_private_keys(&private).unwrap_err();
    assert!(
        matches!(err, SecretsError::UnsupportedPrivateKey { .. }),
        "{err}"
    );
    let err = PublicKey::read_file(&public_key_path(&private)).unwrap_err();
    let SecretsError::PublicKeyFile { source, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert!(
        matches!(*source, SecretsError::UnsupportedPublicKey { .. }),
        "{source}"
    );
    assert!(source.to_string().contains("only ed25519"), "{source}");
}

#[test]
fn private_key_as_public_key_rejected() {
    let err = PublicKey::read_file(&fixture("test_key_1")).unwrap_err();
    let SecretsError::PublicKeyFile { source, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert!(matches!(*source, SecretsError::NotPublicKey), "{source}");
}

#[test]
fn missing_key_file_names_path() {
    let err = load_private_keys("/nonexistent/lithos.key".as_ref()).unwrap_err();
    assert!(matches!(err, SecretsError::OpenKeyFile { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/lithos.key"), "{err}");
}

#[test]
fn key_file_readable_by_group_rejected() {
    if !require_root("the key file must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = install_fixture_key(dir.path(), &["test_key_1"]);
    for mode in [0o640, 0o604, 0o660, 0o644, 0o700 | 0o001] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = load_private_keys(&path).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SecretsError::KeyFileMode { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(message.contains("uid 0"), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }
    for mode in [0o600, 0o400] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(load_private_keys(&path).unwrap().len(), 1, "mode {mode:o}");
    }
}

#[test]
fn key_file_owned_by_other_user_rejected() {
    if !require_root("chown to another user") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = install_fixture_key(dir.path(), &["test_key_1"]);
    std::os::unix::fs::chown(&path, Some(1000), Some(1000)).unwrap();

    let err = load_private_keys(&path).unwrap_err();
    let message = err.to_string();

    assert!(
        matches!(err, SecretsError::KeyFileOwner { uid: 1000, .. }),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("0600"), "{message}");
    assert!(message.contains("chown root"), "{message}");
}

#[test]
fn pynacl_vectors_decrypt() {
    let keys = read_private_keys(&install_fixture_key(
        tempfile::tempdir().unwrap().path(),
        &["test_key_1", "test_key_2"],
    ))
    .unwrap();
    for vector in pynacl_vectors() {
        let (namespace, secret) = secrets::decrypt(&keys, &vector.value).unwrap();
        assert_eq!(namespace, vector.namespace);
        assert_eq!(secret, vector.secret.as_bytes());
    }
}

#[test]
fn decrypt_environ_with_key_file() {
    if !require_root("the key file must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = install_fixture_key(dir.path(), &["test_key_2", "test_key_1"]);
    let vectors = pynacl_vectors();
    let secret_environ = environ(&[
        ("DATABASE_URL", &[&vectors[1].value]),
        // The first alternative is for the empty namespace, which is not allowed here.
        ("UNICODE", &[&vectors[0].value, &vectors[2].value]),
        ("EMPTY", &[&vectors[3].value]),
    ]);

    let decrypted = decrypt_environ(
        &secret_environ,
        &key_file,
        &namespaces(&["myapp", "project1.web"]),
    )
    .unwrap();

    assert_eq!(decrypted.len(), 3);
    assert_eq!(decrypted["DATABASE_URL"], "postgres://user:pa ss@db/app");
    assert_eq!(decrypted["UNICODE"], "ünïcödé");
    assert_eq!(decrypted["EMPTY"], "");
}

#[test]
fn launch_spec_decrypts_with_sandbox_key() {
    if !require_root("the key file must be owned by root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = install_fixture_key(dir.path(), &["test_key_1"]);
    let vectors = pynacl_vectors();
    let secret_environ = environ(&[("DATABASE_URL", &[&vectors[1].value])]);

    let allowed = launch_spec(secret_environ.clone(), Some(&key_file), &["", "myapp"]);
    let foreign = launch_spec(secret_environ, Some(&key_file), &[""]);

    let decrypted = decrypt_launch_spec(&allowed).unwrap();
    assert_eq!(
        decrypted.get("DATABASE_URL"),
        Some("postgres://user:pa ss@db/app")
    );
    assert_eq!(format!("{decrypted:?}"), r#"{"DATABASE_URL"}"#);
    let err = decrypt_launch_spec(&foreign).unwrap_err();
    assert!(err.to_string().contains("namespace not allowed"), "{err}");
}

#[test]
fn launch_spec_without_key_file_fails() {
    let vectors = pynacl_vectors();
    let secret_environ = environ(&[("A", &[&vectors[0].value]), ("B", &[&vectors[1].value])]);
    let spec = launch_spec(secret_environ, None, &[""]);

    let err = decrypt_launch_spec(&spec).unwrap_err();

    assert!(
        matches!(err, SecretsError::MissingPrivateKey { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("A, B"), "{err}");
}

#[test]
fn launch_spec_without_secrets_reads_no_key() {
    let spec = launch_spec(BTreeMap::new(), None, &[""]);
    assert!(decrypt_launch_spec(&spec).unwrap().is_empty());
}

#[test]
fn launch_spec_variable_in_both_environs_fails() {
    let vectors = pynacl_vectors();
    let mut spec = launch_spec(environ(&[("A", &[&vectors[0].value])]), None, &[""]);
    spec.container
        .environ
        .insert("A".to_string(), "plain".to_string());

    let err = decrypt_launch_spec(&spec).unwrap_err();

    assert!(
        matches!(err, SecretsError::ConflictsWithEnviron { ref variable } if variable == "A"),
        "{err}"
    );
}
