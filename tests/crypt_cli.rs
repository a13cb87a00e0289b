//! The `lithos_crypt` binary: subcommands, stdin input and exit codes.

mod secrets_common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use secrets_common::{fixture, install_fixture_key, pynacl_vectors};

const BINARY: &str = env!("CARGO_BIN_EXE_lithos_crypt");

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn encrypt(key: &str, namespace: &str, data: &str) -> String {
    let public = fixture(&format!("{key}.pub"));
    let output = run(
        &[
            "encrypt",
            "-k",
            public.to_str().unwrap(),
            "-n",
            namespace,
            "-d",
            data,
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output).trim_end().to_string()
}

#[test]
fn encrypt_prints_documented_hashes() {
    let value = encrypt("test_key_1", "myapp", "the_secret");
    let fields: Vec<&str> = value.split(':').collect();
    assert_eq!(fields.len(), 5, "{value}");
    assert_eq!(fields[0], "v2");
    assert_eq!(fields[2], "KqWSX0BY");
    assert_eq!(fields[3], "8MtOoWUX");
}

#[test]
fn decrypt_splits_namespace_and_secret() {
    let value = encrypt("test_key_1", "myapp", "the_secret");
    let private = fixture("test_key_1");

    let output = run(
        &["decrypt", "-i", private.to_str().unwrap(), "-d", &value],
        None,
    );

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "the_secret");
    assert!(stderr(&output).contains("\"myapp\""), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("the_secret"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn decrypt_accepts_key_file_alias() {
    let value = encrypt("test_key_1", "", "x");
    let private = fixture("test_key_1");
    let output = run(
        &[
            "decrypt",
            "--key-file",
            private.to_str().unwrap(),
            "-d",
            &value,
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "x");
}

#[test]
fn data_from_stdin() {
    let public = fixture("test_key_1.pub");
    let private = fixture("test_key_1");

    let encrypted = run(
        &["encrypt", "-k", public.to_str().unwrap(), "-d", "-"],
        Some(b"from stdin\n"),
    );
    assert_eq!(encrypted.status.code(), Some(0), "{}", stderr(&encrypted));
    let decrypted = run(
        &["decrypt", "-i", private.to_str().unwrap(), "-d", "-"],
        Some(&encrypted.stdout),
    );

    assert_eq!(decrypted.status.code(), Some(0), "{}", stderr(&decrypted));
    assert_eq!(stdout(&decrypted), "from stdin");
}

#[test]
fn decrypt_pynacl_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let both = install_fixture_key(dir.path(), &["test_key_1", "test_key_2"]);
    for vector in pynacl_vectors() {
        let output = run(
            &["decrypt", "-i", both.to_str().unwrap(), "-d", &vector.value],
            None,
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_eq!(stdout(&output), vector.secret);
        let namespace = format!("{:?}", vector.namespace);
        assert!(stderr(&output).contains(&namespace), "{}", stderr(&output));
    }
}

#[test]
fn decrypt_with_wrong_key_fails() {
    let value = encrypt("test_key_1", "", "do not print me");
    let private = fixture("test_key_2");

    let output = run(
        &["decrypt", "-i", private.to_str().unwrap(), "-d", &value],
        None,
    );

    assert_eq!(output.status.code(), Some(3));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("key hash differs"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("do not print me"));
}

#[test]
fn check_key_exit_codes() {
    let value = encrypt("test_key_1", "", "x");
    let key_1 = fixture("test_key_1.pub");
    let key_2 = fixture("test_key_2.pub");

    let matching = run(
        &["check-key", "-k", key_1.to_str().unwrap(), "-d", &value],
        None,
    );
    let other = run(
        &["check-key", "-k", key_2.to_str().unwrap(), "-d", "-"],
        Some(value.as_bytes()),
    );
    let malformed = run(
        &["check-key", "-k", key_1.to_str().unwrap(), "-d", "v2:nope"],
        None,
    );

    assert_eq!(matching.status.code(), Some(0), "{}", stderr(&matching));
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert_eq!(malformed.status.code(), Some(3), "{}", stderr(&malformed));
}

#[test]
fn encrypt_rejects_invalid_namespace() {
    let public = fixture("test_key_1.pub");
    let output = run(
        &[
            "encrypt",
            "-k",
            public.to_str().unwrap(),
            "-n",
            "my/app",
            "-d",
            "x",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("invalid namespace"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn encrypt_rejects_nul_from_stdin() {
    let public = fixture("test_key_1.pub");
    let output = run(
        &["encrypt", "-k", public.to_str().unwrap(), "-d", "-"],
        Some(b"a\0b"),
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("NUL"), "{}", stderr(&output));
}

#[test]
fn encrypt_with_private_key_file_fails() {
    let private = fixture("test_key_1");
    let output = run(
        &["encrypt", "-k", private.to_str().unwrap(), "-d", "x"],
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains(".pub"), "{}", stderr(&output));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["bogus"], None).status.code(), Some(2));
    assert_eq!(run(&["encrypt", "-d", "x"], None).status.code(), Some(2));
}

#[test]
fn help_lists_exit_codes() {
    let output = run(&["--help"], None);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("Exit codes:"),
        "{}",
        stdout(&output)
    );
}
