//! Parsing single config files: spellings, units, tags, nil, and the form of errors.

use std::path::Path;
use std::time::Duration;

use lithos::model::files::{check_text, FileKind};
use lithos::model::master::parse_master;
use lithos::model::spec::Volume;
use lithos::model::tags::{Activation, VariableType};
use lithos::model::Problems;

fn container(text: &str) -> lithos::model::container::ContainerConfig {
    let path = Path::new("/images/app/config/c.yaml");
    let problems = check_text(path, text, FileKind::Container);
    assert!(problems.is_empty(), "{problems}");
    serde_yaml::from_str(text).unwrap()
}

fn problems(text: &str, kind: FileKind) -> Problems {
    check_text(Path::new("/t/f.yaml"), text, kind)
}

fn first_problem(text: &str, kind: FileKind) -> lithos::model::Problem {
    let problems = problems(text, kind);
    problems
        .0
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("accepted:\n{text}"))
}

#[test]
fn master_empty_file_gives_defaults() {
    let master = parse_master(Path::new("/etc/lithos/master.yaml"), "").unwrap();
    assert_eq!(master.runtime_dir, Path::new("/run/lithos"));
    assert_eq!(master.state_dir, Path::new("/run/lithos/state"));
    assert_eq!(master.mount_dir, Path::new("/run/lithos/mnt"));
    assert_eq!(master.devfs_dir, Path::new("/var/lib/lithos/dev"));
    assert_eq!(master.cgroup_name.as_deref(), Some("lithos.slice"));
    assert_eq!(
        master.cgroup_controllers,
        ["name", "cpu", "cpuacct", "memory", "blkio"]
    );
    assert_eq!(master.default_log_dir, Path::new("/var/log/lithos"));
    assert_eq!(
        master.config_log_dir.as_deref(),
        Some(Path::new("/var/log/lithos/config"))
    );
    assert_eq!(master.stdio_log_dir, Path::new("/var/log/lithos/stderr"));
    assert_eq!(master.log_file, Path::new("/var/log/lithos/master.log"));
    assert_eq!(master.log_level, "warn");
    assert_eq!(master.syslog_facility, None);
    assert_eq!(master.syslog_name, "lithos");
    assert_eq!(master.sandboxes_dir, Path::new("/etc/lithos/sandboxes"));
    assert_eq!(master.processes_dir, Path::new("/etc/lithos/processes"));
    assert_eq!(master.metrics_file, Path::new("/run/lithos/metrics.prom"));
}

#[test]
fn master_relative_paths_and_nulls() {
    let text = "sandboxes-dir: sb\nprocesses_dir: /abs/pr\nruntime-dir: /r\nstate-dir: st\n\
                mount-dir: /m\ncgroup-name: nil\nconfig-log-dir: null\nsyslog-app-name: app\n\
                cgroup-controllers: []\nlog-file: /l/m.log\n_anchor: &x 1\n";
    let master = parse_master(Path::new("/etc/l/master.yaml"), text).unwrap();
    assert_eq!(master.sandboxes_dir, Path::new("/etc/l/sb"));
    assert_eq!(master.processes_dir, Path::new("/abs/pr"));
    assert_eq!(master.state_dir, Path::new("/r/st"));
    assert_eq!(master.mount_dir, Path::new("/m"));
    assert_eq!(master.cgroup_name, None);
    assert_eq!(master.config_log_dir, None);
    assert_eq!(master.syslog_name, "app");
    assert_eq!(master.cgroup_controllers.len(), 5);
    assert_eq!(master.log_file, Path::new("/l/m.log"));
}

#[test]
fn master_rejects_relative_runtime_dir() {
    let problem = first_problem("runtime-dir: run\n", FileKind::Master);
    assert_eq!(problem.key, "runtime-dir");
    assert_eq!(problem.line, Some(1));
}

#[test]
fn spellings_both_accepted() {
    let dashed = container("user-id: 1\ngroup-id: 2\nmemory-limit: 1Gi\nexecutable: /x\n");
    let underscored = container("user_id: 1\ngroup_id: 2\nmemory_limit: 1Gi\nexecutable: /x\n");
    assert_eq!(dashed, underscored);
    assert_eq!(dashed.memory_limit, Some(1 << 30));
}

#[test]
fn spellings_twice_is_an_error() {
    let problem = first_problem(
        "user-id: 1\nuser_id: 1\nexecutable: /x\n",
        FileKind::Container,
    );
    assert_eq!(problem.key, "user-id");
    assert!(problem.message.contains("set twice"), "{problem}");
}

#[test]
fn underscore_keys_ignored() {
    let config = container("_defaults: &d {a: 1}\nexecutable: /x\n_other: [1, 2]\n");
    assert_eq!(config.executable.as_deref(), Some("/x"));
}

#[test]
fn units_on_every_integer() {
    let config = container(
        "executable: /x\nfileno-limit: 50ki\nmemory-limit: 512Mi\ncpu-shares: 1k\n\
         volumes:\n  /t: !Tmpfs {size: 1G, mode: 0o1777}\n",
    );
    assert_eq!(config.fileno_limit, Some(51_200));
    assert_eq!(config.memory_limit, Some(512 << 20));
    assert_eq!(config.cpu_shares, Some(1000));
    assert_eq!(
        config.volumes[Path::new("/t")],
        Volume::Tmpfs {
            size: 1_000_000_000,
            mode: 0o1777
        }
    );
}

#[test]
fn timeouts_accept_fractions() {
    let config = container("executable: /x\nkill-timeout: 0.5\nrestart-timeout: 2\n");
    assert_eq!(config.kill_timeout, Some(Duration::from_millis(500)));
    assert_eq!(config.restart_timeout, Some(Duration::from_secs(2)));
    let problem = first_problem(
        "executable: /x\nkill-timeout: 100000\n",
        FileKind::Container,
    );
    assert_eq!(problem.key, "kill-timeout");
}

#[test]
fn size_error_names_value_and_fix() {
    let text = "executable: /x\nvolumes:\n  /tmp: !Tmpfs { size: 100m }\n";
    let problem = first_problem(text, FileKind::Container);
    assert_eq!(problem.key, "volumes./tmp.size");
    assert_eq!((problem.line, problem.column), (Some(3), Some(24)));
    assert!(
        problem
            .message
            .contains("\"100m\" is not a size: use 100Mi or 100M"),
        "{problem}"
    );
    let line = problem.to_string();
    assert!(
        line.starts_with("/t/f.yaml:3:24: volumes./tmp.size: "),
        "{line}"
    );
}

#[test]
fn unknown_key_suggests_close_one() {
    let problem = first_problem("executable: /x\nmemory-limt: 1\n", FileKind::Container);
    assert_eq!(problem.key, "memory-limt");
    assert_eq!(problem.line, Some(2));
    assert!(problem
        .message
        .contains("unknown key \"memory-limt\", did you mean \"memory-limit\"?"));
}

#[test]
fn volume_tags_parse() {
    let config = container(
        "executable: /x\nvolumes:\n  /s: !Statedir {}\n  /r: !Readonly /ro\n  \
         /p: !Persistent { path: /db, mkdir: true, mode: 0o700, user: 1, group: 1 }\n  /t: !Tmpfs\n",
    );
    assert_eq!(
        config.volumes[Path::new("/s")],
        Volume::Statedir {
            path: "/".into(),
            mode: 0o777,
            user: 0,
            group: 0
        }
    );
    assert_eq!(
        config.volumes[Path::new("/r")],
        Volume::Readonly { path: "/ro".into() }
    );
    assert_eq!(
        config.volumes[Path::new("/p")],
        Volume::Persistent {
            path: "/db".into(),
            mkdir: true,
            mode: 0o700,
            user: 1,
            group: 1
        }
    );
    assert_eq!(
        config.volumes[Path::new("/t")],
        Volume::Tmpfs {
            size: 100 << 20,
            mode: 0o777
        }
    );
}

#[test]
fn volume_persistent_scalar_rejected() {
    let problem = first_problem(
        "executable: /x\nvolumes:\n  /db: !Persistent /db\n",
        FileKind::Container,
    );
    assert_eq!(problem.key, "volumes./db");
    assert!(
        problem.message.contains("!Persistent {path: /db}"),
        "{problem}"
    );
    let problem = first_problem(
        "executable: /x\nvolumes:\n  /db: !Bind /db\n",
        FileKind::Container,
    );
    assert!(problem.message.contains("is not a volume"), "{problem}");
}

#[test]
fn variable_tags_parse() {
    let config = container(
        "executable: /x\nvariables:\n  a: !TcpPort\n  b: !TcpPort { activation: systemd }\n  \
         c: !Choice [ru, ua]\n  d: !Name\n  e: !DottedName\n",
    );
    let v = &config.variables;
    assert_eq!(
        v["a"],
        VariableType::TcpPort {
            activation: Activation::None
        }
    );
    assert_eq!(
        v["b"],
        VariableType::TcpPort {
            activation: Activation::Systemd
        }
    );
    assert_eq!(v["c"], VariableType::Choice(vec!["ru".into(), "ua".into()]));
    assert_eq!(v["d"], VariableType::Name);
    assert_eq!(v["e"], VariableType::DottedName);
}

#[test]
fn nil_means_null() {
    let config = container("executable: /x\nresolv-conf: {mount: nil}\nhosts-file:\n  mount: nil\n  copy-from-host: false\n");
    assert_eq!(config.resolv_conf.mount, None);
    assert_eq!(config.hosts_file.mount, None);
    assert!(!config.hosts_file.copy_from_host);
    let config = container("executable: /x\n");
    assert!(
        config.hosts_file.copy_from_host,
        "copy-from-host defaults to true"
    );
}

#[test]
fn environ_values_stay_strings() {
    let text =
        "executable: /x\nenviron:\n  A: 1\n  B: 0o7\n  C: true\n  D: 1.10\n  E: 010\n  F: \"\"\n";
    let config = container(text);
    assert_eq!(config.environ["A"], "1");
    assert_eq!(config.environ["B"], "0o7");
    assert_eq!(config.environ["C"], "true");
    assert_eq!(config.environ["D"], "1.10");
    assert_eq!(config.environ["E"], "010");
    assert_eq!(config.environ["F"], "");
    let merged = format!("{text}_x: &x {{a: 1}}\nmetadata:\n  <<: *x\nworkdir: null\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merged.yaml");
    std::fs::write(&path, merged).unwrap();
    let config = lithos::model::files::check_container_file(&path).unwrap();
    assert_eq!(config.environ["A"], "1");
    assert_eq!(config.environ["C"], "true");
    assert_eq!(config.environ["F"], "");
    assert_eq!(config.workdir, None);
}

#[test]
fn numeric_and_quoted_port_keys() {
    let config = container(
        "executable: /x\nvariables:\n  p: !TcpPort\ntcp-ports:\n  77: {fd: 3}\n  \"@{p}\": {fd: 4, host: 127.0.0.1}\n",
    );
    assert_eq!(config.tcp_ports["77"].fd, Some(3));
    assert_eq!(config.tcp_ports["@{p}"].host.to_string(), "127.0.0.1");
}

#[test]
fn ports_reject_stdout_and_stderr() {
    for fd in [1, 2] {
        let text = format!("executable: /x\ntcp-ports:\n  80: {{fd: {fd}}}\n");
        let problem = first_problem(&text, FileKind::Container);
        assert_eq!(problem.key, "tcp-ports.80.fd");
    }
}

#[test]
fn substitution_uses_must_be_declared() {
    let problem = first_problem(
        "executable: /x\narguments: [\"@{port}\"]\n",
        FileKind::Container,
    );
    assert_eq!(problem.key, "arguments[0]");
    assert!(problem.message.contains("not declared"), "{problem}");
    let problem = first_problem(
        "executable: /x\narguments: [\"@{lithos:pid}\"]\n",
        FileKind::Container,
    );
    assert!(
        problem.message.contains("only as the whole value"),
        "{problem}"
    );
    container("executable: /x\narguments: [\"@{lithos:name}\", \"@{lithos:config_filename}\"]\nenviron: {P: \"@{lithos:pid}\"}\n");
}

#[test]
fn systemd_conflicts_with_hand_written_variables() {
    let text = "executable: /x\nvariables: {p: !TcpPort {activation: systemd}}\nenviron: {LISTEN_FDS: 1}\n";
    let problem = first_problem(text, FileKind::Container);
    assert_eq!(problem.key, "environ.LISTEN_FDS");
}

#[test]
fn secrets_exclusive_and_distinct_from_environ() {
    let secret = "v2:ROit92I5:82HdsExJ:Gd3ocJsr:Hp3p";
    let text = format!(
        "executable: /x\nsecret-environ: {{A: \"{secret}\"}}\nsecret-environ-file: /s.yaml\n"
    );
    assert_eq!(
        first_problem(&text, FileKind::Container).key,
        "secret-environ-file"
    );
    let text = format!("executable: /x\nenviron: {{A: a}}\nsecret-environ: {{A: \"{secret}\"}}\n");
    assert_eq!(
        first_problem(&text, FileKind::Container).key,
        "secret-environ.A"
    );
    let text = "executable: /x\nsecret-environ: {A: plain}\n";
    assert!(first_problem(text, FileKind::Container)
        .message
        .contains("lithos_crypt"));
}

#[test]
fn sandbox_defaults_checked() {
    let problem = first_problem(
        "image-dir: /i\nallow-users: [1-10]\ndefault-user: 11\n",
        FileKind::Sandbox,
    );
    assert_eq!(problem.key, "default-user");
    let problem = first_problem(
        "image-dir: /i\nallow-groups: [1]\ndefault-group: 2\n",
        FileKind::Sandbox,
    );
    assert_eq!(problem.key, "default-group");
    let problem = first_problem(
        "image-dir: /i\nsecrets-namespaces: [\"a b\"]\n",
        FileKind::Sandbox,
    );
    assert_eq!(problem.key, "secrets-namespaces");
    let problem = first_problem(
        "image-dir: /i\nadditional-hosts: {db: nowhere}\n",
        FileKind::Sandbox,
    );
    assert_eq!(problem.key, "additional-hosts.db");
    assert!(problems("image-dir: /i\nallow-groups: [0-1]\n", FileKind::Sandbox).is_empty());
}

#[test]
fn processes_duplicate_names_rejected() {
    let text = "a: {image: x, config: /c.yaml}\na: {image: y, config: /c.yaml}\n";
    assert!(!problems(text, FileKind::Processes).is_empty());
}

#[test]
fn processes_bad_entry_keeps_others() {
    let text =
        "a:\n  image: x\n  config: /c.yaml\n  instances: lots\nb:\n  image: y\n  confg: /c.yaml\n";
    let found = problems(text, FileKind::Processes);
    assert_eq!(found.len(), 2, "{found}");
    assert_eq!(found.0[0].key, "a.instances");
    assert_eq!(found.0[0].line, Some(4));
    assert_eq!(found.0[1].key, "b.confg");
    assert_eq!(found.0[1].line, Some(7));
}

#[test]
fn processes_dotted_name_error_stays_in_entry() {
    let text = "web.v2:\n  image: x\n  config: /c.yaml\n  instances: lots\nweb:\n  image: y\n  config: /c.yaml\n";
    let found = problems(text, FileKind::Processes);
    assert_eq!(found.len(), 1, "{found}");
    assert_eq!(found.0[0].key, "web.v2.instances");
    assert_eq!(
        found.0[0].scope,
        lithos::model::Scope::Entry("f".into(), "web.v2".into())
    );
}

#[test]
fn merge_keys_are_applied() {
    let text = "base: &base {image: x, config: /c.yaml}\na:\n  <<: *base\n  instances: 2\n";
    let found = problems(text, FileKind::Processes);
    assert!(found.is_empty(), "{found}");
    let text = "_base: &base {image: x, config: /c.yaml}\nsize: 1\nvolumes:\n  /t: !Tmpfs {size: 1m}\n<<: {}\n";
    let problem = first_problem(text, FileKind::Container);
    assert_eq!(problem.key, "size");
    assert_eq!(problem.line, Some(2));
}
