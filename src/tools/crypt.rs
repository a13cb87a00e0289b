//! `lithos_crypt`: encrypts secrets for container configs and inspects encrypted values.
//!
//! Anyone with the cluster's public key can encrypt a secret for a namespace. The printed
//! `v2:` string goes into a container's `secret-environ`. Whoever holds the private key
//! can decrypt a value to debug it.
//!
//! # Exit codes
//!
//! - 0: success. For `check-key`, the value was encrypted for the given key.
//! - 1: `check-key` only: the value was encrypted for another key.
//! - 2: invalid command line.
//! - 3: any other failure: a key file that cannot be read or parsed, malformed data, or a
//!   value that does not decrypt.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::secrets::{self, EncryptedValue, PublicKey};

/// Exit code of a successful run, and of `check-key` when the key matches.
const EXIT_OK: u8 = 0;
/// Exit code of `check-key` when the value was encrypted for another key.
const EXIT_OTHER_KEY: u8 = 1;
/// Exit code of an invalid command line, the code clap uses.
const EXIT_USAGE: u8 = 2;
/// Exit code of any other failure.
const EXIT_FAILURE: u8 = 3;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success; for check-key, the value was encrypted for the given key
  1  check-key only: the value was encrypted for another key
  2  invalid command line
  3  any other failure: unreadable or invalid key file, malformed data, or a value
     that does not decrypt";

/// Encrypts secrets for lithos container configs.
///
/// Only the public key is needed to encrypt. Decrypting needs the private key and is
/// meant for debugging by whoever holds it.
#[derive(Parser)]
#[command(name = "lithos_crypt", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt a secret and print the `v2:` string for `secret-environ`.
    Encrypt {
        /// OpenSSH ed25519 public key file (`KEY.pub`) to encrypt for.
        #[arg(short = 'k', long = "key-file", value_name = "KEY.pub")]
        key_file: PathBuf,
        /// The secret, or `-` to read it from stdin (one trailing newline is removed).
        /// Prefer `-`: a secret on the command line is visible to other users in `ps`.
        #[arg(short = 'd', long = "data", value_name = "DATA")]
        data: String,
        /// Secrets namespace: only sandboxes allowing it can decrypt the value.
        /// Letters, digits, `_`, `.` and `-`.
        #[arg(short = 'n', long = "namespace", value_name = "NS", default_value = "")]
        namespace: String,
    },
    /// Decrypt a value: the namespace goes to stderr, the secret to stdout.
    Decrypt {
        /// OpenSSH ed25519 private key file, which may contain several keys.
        #[arg(
            short = 'i',
            long = "identity",
            visible_alias = "key-file",
            value_name = "PRIVATE_KEY"
        )]
        identity: PathBuf,
        /// The `v2:` string, or `-` to read it from stdin.
        #[arg(short = 'd', long = "data", value_name = "V2STRING")]
        data: String,
    },
    /// Check whether a value was encrypted for a public key (exit code 0 yes, 1 no).
    CheckKey {
        /// OpenSSH ed25519 public key file (`KEY.pub`).
        #[arg(short = 'k', long = "key-file", value_name = "KEY.pub")]
        key_file: PathBuf,
        /// The `v2:` string, or `-` to read it from stdin.
        #[arg(short = 'd', long = "data", value_name = "V2STRING")]
        data: String,
    },
}

/// Parses the command line of `lithos_crypt` and runs it, returning its exit status.
pub fn main_from_args() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let usage_error = err.use_stderr();
            // clap prints help and version through the same error path.
            let _ = err.print();
            return ExitCode::from(if usage_error { EXIT_USAGE } else { EXIT_OK });
        }
    };
    run_cli(cli)
}

/// Runs `lithos_crypt` with parsed arguments and returns its exit status.
pub fn run_cli(cli: Cli) -> ExitCode {
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("lithos_crypt: error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Encrypt {
            key_file,
            data,
            namespace,
        } => encrypt(&key_file, &data, &namespace),
        Command::Decrypt { identity, data } => decrypt(&identity, &data),
        Command::CheckKey { key_file, data } => check_key(&key_file, &data),
    }
}

fn encrypt(key_file: &Path, data: &str, namespace: &str) -> anyhow::Result<u8> {
    let public_key = PublicKey::read_file(key_file)?;
    let secret = read_secret(data)?;
    let value = secrets::encrypt(&public_key, namespace, &secret)?;
    println!("{value}");
    Ok(EXIT_OK)
}

fn decrypt(identity: &Path, data: &str) -> anyhow::Result<u8> {
    let keys = secrets::read_private_keys(identity)?;
    let value = read_value(data)?;
    let (namespace, secret) = secrets::decrypt(&keys, &value)?;
    eprintln!("namespace: {namespace:?}");
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&secret)
        .and_then(|()| stdout.flush())
        .context("failed to write the secret to stdout")?;
    Ok(EXIT_OK)
}

fn check_key(key_file: &Path, data: &str) -> anyhow::Result<u8> {
    let public_key = PublicKey::read_file(key_file)?;
    let value = read_value(data)?;
    // Parse first so malformed data is a failure, not a "no".
    value.parse::<EncryptedValue>()?;
    if secrets::check_key(&public_key, &value) {
        println!("the value was encrypted for {}", key_file.display());
        Ok(EXIT_OK)
    } else {
        println!("the value was not encrypted for {}", key_file.display());
        Ok(EXIT_OTHER_KEY)
    }
}

/// Returns the secret to encrypt, from the argument or, for `-`, from stdin.
///
/// The knot puts secrets into environment variables, which cannot hold a NUL byte and which
/// it requires to be UTF-8, so such secrets are rejected here already.
fn read_secret(data: &str) -> anyhow::Result<Vec<u8>> {
    let secret = if data == "-" {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("failed to read the secret from stdin")?;
        // `echo secret | lithos_crypt encrypt -d -` should not encrypt the newline.
        if input.ends_with(b"\n") {
            input.pop();
        }
        input
    } else {
        data.as_bytes().to_vec()
    };
    if secret.contains(&0) {
        bail!("the secret contains a NUL byte, which an environment variable cannot hold");
    }
    if std::str::from_utf8(&secret).is_err() {
        bail!("the secret is not valid UTF-8, which lithos requires of environment variables");
    }
    Ok(secret)
}

/// Returns the `v2:` string, from the argument or, for `-`, from stdin, trimmed.
fn read_value(data: &str) -> anyhow::Result<String> {
    if data != "-" {
        return Ok(data.trim().to_string());
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("failed to read the value from stdin")?;
    Ok(input.trim().to_string())
}
