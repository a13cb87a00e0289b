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

/// Builds a launch spec that only carries the secrets fields that matter here.
pub fn launch_spec(
    secret_environ: std::collections::BTreeMap<String, Vec<String>>,
    key_file: Option<&Path>,
    namespaces: &[&str],
) -> lithos::model::spec::LaunchSpec {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use lithos::model::spec::{
        ContainerKind, ContainerSpec, EntryKind, HostsFileSpec, LaunchSpec, ResolvConfSpec,
        LAUNCH_SPEC_VERSION,
    };

    LaunchSpec {
        version: LAUNCH_SPEC_VERSION,
        name: "sandbox/process.0".to_string(),
        sandbox: "sandbox".to_string(),
        process: "process".to_string(),
        entry_kind: EntryKind::Daemon,
        image: "image".to_string(),
        image_root: PathBuf::from("/nonexistent/image"),
        config_path: PathBuf::from("/config/test.yaml"),
        container: ContainerSpec {
            kind: ContainerKind::Daemon,
            user_id: 0,
            group_id: 0,
            memory_limit: None,
            cpu_shares: None,
            fileno_limit: 1024,
            restart_timeout: Duration::from_secs(1),
            kill_timeout: Duration::from_secs(5),
            executable: "/bin/true".to_string(),
            arguments: Vec::new(),
            environ: BTreeMap::new(),
            pid_environ: Vec::new(),
            secret_environ,
            workdir: PathBuf::from("/"),
            resolv_conf: ResolvConfSpec {
                mount: Some(false),
                copy_from_host: false,
                host_file: PathBuf::from("/etc/resolv.conf"),
            },
            hosts_file: HostsFileSpec {
                mount: Some(false),
                localhost: true,
                public_hostname: false,
                copy_from_host: false,
                host_file: PathBuf::from("/etc/hosts"),
                additional_hosts: BTreeMap::new(),
            },
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            stdout_stderr_file: None,
            interactive: false,
            restart_process_only: false,
            volumes: BTreeMap::new(),
            tcp_ports: BTreeMap::new(),
            normal_exit_codes: Vec::new(),
        },
        readonly_paths: BTreeMap::new(),
        writable_paths: BTreeMap::new(),
        network: None,
        secrets_private_key: key_file.map(Path::to_path_buf),
        secrets_namespaces: namespaces.iter().map(|ns| ns.to_string()).collect(),
        devfs_dir: PathBuf::from("/nonexistent/dev"),
        mount_dir: PathBuf::from("/nonexistent/mnt"),
        state_dir: PathBuf::from("/nonexistent/state"),
        stdio_log: PathBuf::from("/nonexistent/log/sandbox.log"),
        log_file: PathBuf::from("/nonexistent/log/knot.log"),
        log_level: "debug".to_string(),
        syslog: None,
        cgroup: None,
    }
}
