//! The real-world corpus: every file gives the outcome listed in the corpus README.

use std::fs;
use std::path::{Path, PathBuf};

use lithos::model::files::{check_file, FileKind, MISSING_KEY};
use lithos::model::{load_tree, EntryLoad, LoadOptions, Problems, SandboxLoad};

/// Returns the corpus: real config files kept as found, with a README of outcomes.
fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/corpus")
}

/// Problems of a snippet, ignoring only missing required keys (snippets are fragments).
fn snippet_problems(path: &Path, kind: FileKind) -> Problems {
    let problems = check_file(path, kind);
    Problems(
        problems
            .0
            .into_iter()
            .filter(|p| !p.message.starts_with(MISSING_KEY))
            .collect(),
    )
}

const SNIPPETS: &[(FileKind, &[&str])] = &[
    (
        FileKind::Master,
        &["config_L262", "config_L271", "master_config_L90"],
    ),
    (
        FileKind::Sandbox,
        &[
            "config_L116",
            "config_L132",
            "config_L176",
            "config_L186",
            "config_L198",
            "config_L233",
            "sandbox_config_L201",
            "sandbox_config_L284",
            "tips_secrets_L37",
        ],
    ),
    (
        FileKind::Processes,
        &[
            "config_L294",
            "config_L325",
            "config_L340",
            "process_config_L22",
            "process_config_L39",
            "process_config_L98",
        ],
    ),
    (
        FileKind::Container,
        &[
            "config_L60",
            "config_L75",
            "config_L209",
            "container_config_L20",
            "container_config_L40",
            "container_config_L69",
            "container_config_L77",
            "container_config_L254",
            "container_config_L279",
            "container_config_L334",
            "container_config_L385",
            "container_config_L450",
            "container_config_L510",
            "container_config_L524",
            "container_config_L533",
            "tips_secrets_L64",
            "tips_tcp-ports_L40",
            "tips_tcp-ports_L95",
        ],
    ),
    (FileKind::SecretEnviron, &["container_config_L307"]),
];

/// Snippets that must be rejected, with text the first problem must contain.
const REJECTED: &[(&str, &str, &str)] = &[
    (
        "container_config_L40",
        "volumes./tmp.size",
        "use 100Mi or 100M",
    ),
    ("config_L60", "work-dir", "did you mean \"workdir\"?"),
    ("config_L75", "work-dir", "did you mean \"workdir\"?"),
    (
        "config_L209",
        "volumes./var/lib/sqlite",
        "!Persistent {path: /db}",
    ),
];

#[test]
fn corpus_snippets_give_listed_outcomes() {
    let corpus = corpus();
    let dir = corpus.join("tailhook_lithos/_docs_snippets");
    let mut listed = 0;
    for (kind, names) in SNIPPETS {
        for name in *names {
            listed += 1;
            let path = dir.join(format!("{name}.yaml"));
            let problems = snippet_problems(&path, *kind);
            match REJECTED.iter().find(|(rejected, _, _)| rejected == name) {
                Some((_, key, fix)) => {
                    let first = problems
                        .0
                        .first()
                        .unwrap_or_else(|| panic!("{name} was accepted"));
                    assert_eq!(first.key, *key, "{name}: {first}");
                    assert!(first.message.contains(fix), "{name}: {first}");
                    assert!(first.line.is_some(), "{name}: no line in {first}");
                    assert_eq!(first.file, path);
                }
                None => assert!(
                    problems.is_empty(),
                    "{name} ({kind:?}) rejected:\n{problems}"
                ),
            }
        }
    }
    let on_disk = fs::read_dir(&dir).unwrap().count();
    assert_eq!(listed, on_disk, "every snippet has a kind");
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn corpus_pony_fiction_files_load() {
    let corpus = corpus();
    let root = corpus.join("andreymal_ponyFiction");
    let lithos = root.join("config/prod/lithos");
    let cases = [
        (lithos.join("master.yaml"), FileKind::Master),
        (lithos.join("sandboxes/trunk.yaml"), FileKind::Sandbox),
        (lithos.join("processes/trunk.yaml"), FileKind::Processes),
    ];
    for (path, kind) in cases {
        let problems = check_file(&path, kind);
        assert!(problems.is_empty(), "{}:\n{problems}", path.display());
    }
    let containers: Vec<PathBuf> = yaml_files(&root.join("config/prod/daemons"))
        .into_iter()
        .chain(yaml_files(&root.join("lithos")))
        .collect();
    assert_eq!(containers.len(), 21);
    for path in containers {
        let problems = check_file(&path, FileKind::Container);
        assert!(problems.is_empty(), "{}:\n{problems}", path.display());
    }
}

#[test]
fn corpus_history_files_load() {
    let corpus = corpus();
    let root = corpus.join("tailhook_lithos/_history");
    let sleep = root.join("examples/sleep");
    let mut cases = vec![(sleep.join("master.yaml"), FileKind::Master)];
    for dir in ["limits", "trees", "sandboxes"] {
        cases.push((sleep.join(dir).join("sleep.yaml"), FileKind::Sandbox));
    }
    for file in [
        "processes/sleep.yaml",
        "instances/sleep.yaml",
        "current.yaml",
    ] {
        cases.push((sleep.join(file), FileKind::Processes));
    }
    for file in ["busybox.yaml", "sleep.yaml"] {
        cases.push((
            root.join("vagga_text/config").join(file),
            FileKind::Container,
        ));
    }
    for (path, kind) in cases {
        let problems = check_file(&path, kind);
        assert!(problems.is_empty(), "{}:\n{problems}", path.display());
    }
}

/// Copies an example tree into `dir` with its paths pointed there and its images built
/// from `code/*.yaml`; returns the master config path.
pub fn prepare_example(example: &Path, dir: &Path) -> PathBuf {
    let configs = dir.join("configs");
    fs::create_dir_all(configs.join("sandboxes")).unwrap();
    fs::create_dir_all(configs.join("processes")).unwrap();
    let master = configs.join("master.yaml");
    let original = fs::read_to_string(example.join("configs/master.yaml")).unwrap();
    fs::write(
        &master,
        format!(
            "{original}\nruntime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
            dir.display()
        ),
    )
    .unwrap();
    let images = dir.join("images");
    for sandbox in yaml_files(&example.join("configs/sandboxes")) {
        let text = fs::read_to_string(&sandbox).unwrap();
        let text = text.replace(
            "image-dir: /var/lib/lithos/images",
            &format!("image-dir: {}", images.display()),
        );
        fs::write(
            configs.join("sandboxes").join(sandbox.file_name().unwrap()),
            text,
        )
        .unwrap();
    }
    for processes in yaml_files(&example.join("configs/processes")) {
        let text = fs::read_to_string(&processes).unwrap();
        fs::write(
            configs
                .join("processes")
                .join(processes.file_name().unwrap()),
            &text,
        )
        .unwrap();
        let entries: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        for entry in entries.as_mapping().unwrap().values() {
            let image = entry["image"].as_str().unwrap();
            let config_dir = images.join(image).join("config");
            fs::create_dir_all(&config_dir).unwrap();
            for code in yaml_files(&example.join("code")) {
                fs::copy(&code, config_dir.join(code.file_name().unwrap())).unwrap();
            }
        }
    }
    master
}

fn load_example(name: &str) -> Option<(tempfile::TempDir, lithos::model::ConfigTree)> {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let master = prepare_example(
        &corpus.join("tailhook_lithos/examples").join(name),
        dir.path(),
    );
    let tree = load_tree(&master, &LoadOptions::default()).unwrap();
    Some((dir, tree))
}

fn entry<'a>(tree: &'a lithos::model::ConfigTree, sandbox: &str, name: &str) -> &'a EntryLoad {
    match &tree.sandboxes[sandbox] {
        SandboxLoad::Loaded { entries } => &entries[name],
        SandboxLoad::Failed => panic!("sandbox {sandbox} failed:\n{}", tree.problems),
    }
}

#[test]
fn corpus_examples_py_and_multi_level_load() {
    for example in ["py", "multi_level"] {
        let Some((_dir, tree)) = load_example(example) else {
            return;
        };
        assert!(tree.problems.is_empty(), "{example}:\n{}", tree.problems);
        assert_eq!(tree.desired_instances().count(), 2, "{example}");
        assert!(matches!(
            entry(&tree, "socket", "py"),
            EntryLoad::Command { .. }
        ));
    }
}

#[test]
fn corpus_example_py_bridged_rejects_addresses() {
    let Some((_dir, tree)) = load_example("py_bridged") else {
        return;
    };
    assert!(matches!(
        entry(&tree, "socket", "socket"),
        EntryLoad::Failed
    ));
    let problem = tree
        .problems
        .0
        .iter()
        .find(|p| p.key == "socket.ip-addresses")
        .unwrap_or_else(|| panic!("no ip-addresses problem:\n{}", tree.problems));
    assert!(problem.message.contains("10.41.0.2"), "{problem}");
    assert!(problem.message.contains("10.71.0.0/16"), "{problem}");
    assert!(problem.line.is_some(), "{problem}");
}

#[test]
fn corpus_examples_with_unset_variables() {
    for example in ["py_var", "py_systemd"] {
        let Some((_dir, tree)) = load_example(example) else {
            return;
        };
        assert!(
            matches!(entry(&tree, "socket", "py"), EntryLoad::Failed),
            "{example}"
        );
        let EntryLoad::Daemon { instances } = entry(&tree, "socket", "socket") else {
            panic!("{example}: socket failed:\n{}", tree.problems);
        };
        assert_eq!(instances.len(), 2);
        let ports = &instances[0].spec.container.tcp_ports;
        assert_eq!(ports[&3].port, 77, "{example}");
        assert_eq!(tree.problems.len(), 2, "{example}:\n{}", tree.problems);
        for problem in &tree.problems.0 {
            assert_eq!(problem.key, "py.variables", "{problem}");
            assert!(problem.message.contains("has no value"), "{problem}");
        }
    }
    let Some((_dir, tree)) = load_example("py_systemd") else {
        return;
    };
    let instance = tree.desired_instances().next().unwrap();
    let environ = &instance.spec.container.environ;
    assert_eq!(environ["LISTEN_FDS"], "1");
    assert_eq!(environ["LISTEN_FDNAMES"], "input_port");
    assert_eq!(instance.spec.container.pid_environ, ["LISTEN_PID"]);
}
