//! `lithos plan` output on the upstream example tree `py` from the corpus: a fresh start,
//! a steady state, more instances, and a changed container config.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lithos::model::{load_tree, LoadOptions};
use lithos::reconcile::{reconcile, render_plan_text, Desired};
use lithos::state::{Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

const NOW: Duration = Duration::from_secs(10_000);

/// Returns the example in the corpus copy that the config model's tests keep in the repository.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/corpus/tailhook_lithos/examples/py")
}

/// Copies the example into `dir`: master paths and image-dir point into `dir`, and the
/// image `py-example` gets the container configs of `code/` in its `config/` directory.
fn prepare(dir: &Path) -> PathBuf {
    let source = example();
    let configs = dir.join("configs");
    for sub in ["sandboxes", "processes"] {
        fs::create_dir_all(configs.join(sub)).unwrap();
    }
    let master = fs::read_to_string(source.join("configs/master.yaml")).unwrap();
    let paths = format!(
        "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
        dir.display()
    );
    fs::write(configs.join("master.yaml"), master + "\n" + &paths).unwrap();
    let sandbox = fs::read_to_string(source.join("configs/sandboxes/socket.yaml")).unwrap();
    let images = dir.join("images");
    let sandbox = sandbox.replace("/var/lib/lithos/images", images.to_str().unwrap());
    fs::write(configs.join("sandboxes/socket.yaml"), sandbox).unwrap();
    let processes = source.join("configs/processes/socket.yaml");
    fs::copy(processes, configs.join("processes/socket.yaml")).unwrap();
    let image_config = images.join("py-example/config");
    fs::create_dir_all(&image_config).unwrap();
    for file in ["socket.yaml", "py.yaml"] {
        fs::copy(source.join("code").join(file), image_config.join(file)).unwrap();
    }
    configs.join("master.yaml")
}

fn desired(master: &Path) -> Desired {
    let tree = load_tree(master, &LoadOptions::default()).unwrap();
    assert!(tree.problems.is_empty(), "{}", tree.problems);
    tree.desired_instances().cloned().collect()
}

/// Starts every desired instance as the supervisor would, with made-up pids.
fn run_all(desired: &Desired, observed: &mut Observed, persisted: &mut Persisted) {
    for (pid, instance) in (100..).zip(desired.instances.values()) {
        let id = ProcId { pid, start_time: 1 };
        persisted.record_spawn(instance, id, NOW - Duration::from_secs(100));
        let kind = ProcessKind::Knot {
            name: instance.name.clone(),
            fingerprint: instance.fingerprint.clone(),
        };
        observed.processes.push(ObservedProcess {
            id,
            kind,
            is_child: true,
            zombie: false,
        });
    }
}

fn plan_text(desired: &Desired, observed: &Observed, persisted: &Persisted) -> String {
    let plan = reconcile(desired, observed, persisted, NOW);
    render_plan_text(&plan, desired, persisted, NOW, false)
}

#[test]
fn corpus_py_plan_through_changes() {
    let dir = tempfile::tempdir().unwrap();
    let master = prepare(dir.path());
    let first = desired(&master);
    let (mut observed, mut persisted) = (Observed::default(), Persisted::default());
    assert_eq!(
        plan_text(&first, &observed, &persisted),
        "+ start socket/socket.0 (not running)\n\
         + start socket/socket.1 (not running)\n\
         2 to start, 0 to restart, 0 to stop, 0 unchanged\n"
    );
    run_all(&first, &mut observed, &mut persisted);
    assert_eq!(
        plan_text(&first, &observed, &persisted),
        "0 to start, 0 to restart, 0 to stop, 2 unchanged\n"
    );

    let processes = dir.path().join("configs/processes/socket.yaml");
    let text = fs::read_to_string(&processes).unwrap();
    fs::write(&processes, text.replace("instances: 2", "instances: 3")).unwrap();
    let more = desired(&master);
    assert_eq!(
        plan_text(&more, &observed, &persisted),
        "+ start socket/socket.2 (not running)\n\
         1 to start, 0 to restart, 0 to stop, 2 unchanged\n"
    );

    let container = dir.path().join("images/py-example/config/socket.yaml");
    let text = fs::read_to_string(&container).unwrap();
    fs::write(
        &container,
        text.replace("[/code/sock.py]", "[/code/sock.py, --debug]"),
    )
    .unwrap();
    fs::write(
        &processes,
        fs::read_to_string(&processes)
            .unwrap()
            .replace("instances: 3", "instances: 1"),
    )
    .unwrap();
    let changed = desired(&master);
    assert_eq!(
        plan_text(&changed, &observed, &persisted),
        "~ restart socket/socket.0 (pid 100) (config changed; changed: arguments)\n\
         - stop socket/socket.1 (pid 101) (not in config)\n\
         0 to start, 1 to restart, 1 to stop, 0 unchanged\n"
    );
}
