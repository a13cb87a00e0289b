//! Builders of desired instances for tests and benchmarks of the reconciler, which need
//! realistic specs without a config tree on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::model::spec::{
    ContainerKind, ContainerSpec, DesiredInstance, EntryKind, HostsFileSpec, InstanceName,
    LaunchSpec, ResolvConfSpec, LAUNCH_SPEC_VERSION,
};

/// Builds a small daemon spec for `name` running `/bin/sleep 3600` from image `test`.
pub fn sample_spec(name: &InstanceName) -> LaunchSpec {
    LaunchSpec {
        version: LAUNCH_SPEC_VERSION,
        name: name.to_string(),
        sandbox: name.sandbox.clone(),
        process: name.process.clone(),
        entry_kind: EntryKind::Daemon,
        image: "test".into(),
        image_root: PathBuf::from("/var/lib/lithos/images/test"),
        config_path: PathBuf::from("/config/daemon.yaml"),
        container: sample_container(),
        readonly_paths: BTreeMap::new(),
        writable_paths: BTreeMap::new(),
        network: None,
        secrets_private_key: None,
        secrets_namespaces: Vec::new(),
        devfs_dir: PathBuf::from("/var/lib/lithos/dev"),
        mount_dir: PathBuf::from("/run/lithos/mnt"),
        state_dir: PathBuf::from("/run/lithos/state").join(name.state_subdir()),
        stdio_log: PathBuf::from(format!("/var/log/lithos/stderr/{}.log", name.sandbox)),
        log_file: PathBuf::from(format!("/var/log/lithos/{}.log", name.sandbox)),
        log_level: "warn".into(),
        syslog: None,
        cgroup: None,
    }
}

fn sample_container() -> ContainerSpec {
    ContainerSpec {
        kind: ContainerKind::Daemon,
        user_id: 1,
        group_id: 1,
        memory_limit: None,
        cpu_shares: None,
        fileno_limit: 1024,
        restart_timeout: Duration::from_secs(1),
        kill_timeout: Duration::from_secs(5),
        executable: "/bin/sleep".into(),
        arguments: vec!["3600".into()],
        environ: BTreeMap::new(),
        pid_environ: Vec::new(),
        secret_environ: BTreeMap::new(),
        workdir: PathBuf::from("/"),
        resolv_conf: ResolvConfSpec {
            mount: None,
            copy_from_host: false,
            host_file: PathBuf::from("/etc/resolv.conf"),
        },
        hosts_file: HostsFileSpec {
            mount: None,
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
    }
}

/// Builds a desired instance of [`sample_spec`] with the given fingerprint and timeouts
/// (also written into the spec's container config).
pub fn sample_instance(
    name: InstanceName,
    fingerprint: &str,
    restart_timeout: Duration,
    kill_timeout: Duration,
) -> DesiredInstance {
    let mut spec = sample_spec(&name);
    spec.container.restart_timeout = restart_timeout;
    spec.container.kill_timeout = kill_timeout;
    DesiredInstance {
        name,
        fingerprint: fingerprint.to_string(),
        restart_timeout,
        kill_timeout,
        spec: Arc::new(spec),
    }
}
