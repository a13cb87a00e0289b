//! End-to-end tests of `secret-environ` in `lithos_knot` on a busybox image, as root.

mod knot_support;
mod secrets_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use knot_support::{container_root, root_or_skip, run_script};
use lithos::exec::knot::exit_codes;
use secrets_common::{
    install_fixture_key, interop_script, public_key_path, pynacl_vectors, python_nacl_available,
    ssh_keygen,
};

/// Runs `echo` of `$VARIABLE` in a container whose `secret-environ` sets it, and returns
/// the knot's exit code, the stdio log and the knot's own log.
fn run_with_secret(
    root: &Path,
    name: &str,
    key_file: &Path,
    namespaces: &[&str],
    alternatives: &[&str],
) -> (Option<i32>, String, String) {
    let secret_environ = BTreeMap::from([(
        "DB_PASSWORD".to_string(),
        alternatives.iter().map(|a| a.to_string()).collect(),
    )]);
    let (code, stdio_log) = run_script(root, name, "echo \"DB_PASSWORD=$DB_PASSWORD\"", |s| {
        s.container.normal_exit_codes = vec![0];
        s.container.secret_environ = secret_environ;
        s.secrets_private_key = Some(key_file.to_path_buf());
        s.secrets_namespaces = namespaces.iter().map(|ns| ns.to_string()).collect();
    });
    let knot_log = std::fs::read_to_string(root.join("log/knot.log")).unwrap_or_default();
    (code, stdio_log, knot_log)
}

#[test]
fn program_sees_decrypted_secret() {
    if !root_or_skip("namespaces and mounts") {
        return;
    }
    let tmp = container_root();
    let key_file = install_fixture_key(tmp.path(), &["test_key_2", "test_key_1"]);
    let vectors = pynacl_vectors();
    let vector = &vectors[1];
    // The first alternative is for a namespace this sandbox does not allow.
    let alternatives = [vectors[0].value.as_str(), vector.value.as_str()];

    let (code, stdio_log, knot_log) = run_with_secret(
        tmp.path(),
        "sb/secret.0",
        &key_file,
        &["myapp"],
        &alternatives,
    );

    assert_eq!(code, Some(exit_codes::SUCCESS), "{stdio_log}");
    let expected = format!("DB_PASSWORD={}\n", vector.secret);
    assert!(stdio_log.contains(&expected), "{stdio_log}");
    assert_eq!(stdio_log.matches(&vector.secret).count(), 1, "{stdio_log}");
    assert!(!knot_log.contains(&vector.secret), "{knot_log}");
}

#[test]
fn wrong_namespace_fails_start() {
    if !root_or_skip("namespaces and mounts") {
        return;
    }
    let tmp = container_root();
    let key_file = install_fixture_key(tmp.path(), &["test_key_1"]);
    let vector = &pynacl_vectors()[1];

    let (code, stdio_log, knot_log) = run_with_secret(
        tmp.path(),
        "sb/foreign.0",
        &key_file,
        &["", "otherapp"],
        &[&vector.value],
    );

    assert_eq!(code, Some(exit_codes::SETUP_FAILED), "{stdio_log}");
    for log in [&stdio_log, &knot_log] {
        assert!(log.contains("failed to decrypt secret-environ"), "{log}");
        assert!(log.contains("DB_PASSWORD"), "{log}");
        assert!(log.contains("namespace not allowed"), "{log}");
        assert!(log.contains("\"myapp\""), "{log}");
        assert!(!log.contains(&vector.secret), "{log}");
        assert!(!log.contains("DB_PASSWORD=postgres"), "{log}");
    }
}

#[test]
fn unprotected_key_file_fails_start() {
    if !root_or_skip("namespaces and mounts") {
        return;
    }
    let tmp = container_root();
    let key_file = install_fixture_key(tmp.path(), &["test_key_1"]);
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let vector = &pynacl_vectors()[1];

    let (code, stdio_log, _) = run_with_secret(
        tmp.path(),
        "sb/mode.0",
        &key_file,
        &["myapp"],
        &[&vector.value],
    );

    assert_eq!(code, Some(exit_codes::SETUP_FAILED), "{stdio_log}");
    assert!(stdio_log.contains("chmod 600"), "{stdio_log}");
}

#[test]
fn knot_opens_live_pynacl_value() {
    if !root_or_skip("namespaces and mounts") || !python_nacl_available() {
        return;
    }
    let tmp = container_root();
    let Some(key_file) = ssh_keygen(tmp.path(), "cluster.key", "ed25519", "") else {
        return;
    };
    let output = Command::new("python3")
        .arg(interop_script("nacl_seal.py"))
        .arg(public_key_path(&key_file))
        .args(["team.web", "made by libsodium"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let value = String::from_utf8(output.stdout).unwrap();

    let (code, stdio_log, _) = run_with_secret(
        tmp.path(),
        "sb/live.0",
        &key_file,
        &["", "team.web"],
        &[value.trim_end()],
    );

    assert_eq!(code, Some(exit_codes::SUCCESS), "{stdio_log}");
    assert!(
        stdio_log.contains("DB_PASSWORD=made by libsodium\n"),
        "{stdio_log}"
    );
}
