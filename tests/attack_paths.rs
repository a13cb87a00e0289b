//! Path attacks on the config loader: image names and config paths that try to leave the
//! image, container configs that are FIFOs or huge, each rejected with a clear problem
//! for that entry alone while the rest of the tree loads.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lithos::model::{load_tree, ConfigTree, EntryLoad, LoadOptions, SandboxLoad};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

const SLEEP: &str = "kind: Daemon\nuser-id: 1\nexecutable: /bin/sleep\narguments: [\"60\"]\n";

/// Writes a tree with sandbox `app`, whose processes file is `processes`, and image `good`.
fn tree(root: &Path, processes: &str) {
    write(
        &root.join("configs/master.yaml"),
        &format!(
            "runtime-dir: {0}/run\ndefault-log-dir: {0}/log\ndevfs-dir: {0}/dev\n",
            root.display()
        ),
    );
    write(
        &root.join("configs/sandboxes/app.yaml"),
        "image-dir: ../../images\nallow-users: [1]\nallow-groups: [0-1]\n",
    );
    write(&root.join("configs/processes/app.yaml"), processes);
    write(&root.join("images/good/config/sleep.yaml"), SLEEP);
}

/// Loads the tree on a thread so that a hang fails the test instead of blocking it.
fn load(root: &Path) -> ConfigTree {
    let master = root.join("configs/master.yaml");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(load_tree(&master, &LoadOptions::default()));
    });
    receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("load_tree hung")
        .expect("master.yaml loads")
}

fn entry<'a>(tree: &'a ConfigTree, name: &str) -> &'a EntryLoad {
    let SandboxLoad::Loaded { entries } = &tree.sandboxes["app"] else {
        panic!("sandbox failed: {}", tree.problems);
    };
    &entries[name]
}

/// Asserts that `name` failed with a problem naming `key` and containing `text`, and that
/// the entry `ok` still loaded.
fn assert_rejected(tree: &ConfigTree, name: &str, key: &str, text: &str) {
    assert!(
        matches!(entry(tree, name), EntryLoad::Failed),
        "{name} loaded: {}",
        tree.problems
    );
    assert!(
        tree.problems
            .0
            .iter()
            .any(|p| p.key.starts_with(key) && p.message.contains(text)),
        "no problem at {key} mentioning {text:?}: {}",
        tree.problems
    );
    assert!(
        matches!(entry(tree, "ok"), EntryLoad::Daemon { instances } if instances.len() == 1),
        "the good entry did not load: {}",
        tree.problems
    );
}

fn processes(bad_image: &str, bad_config: &str) -> String {
    format!(
        "ok:\n  image: good\n  config: /config/sleep.yaml\n  instances: 1\n\
         bad:\n  image: {bad_image}\n  config: {bad_config}\n  instances: 1\n"
    )
}

#[test]
fn image_name_with_dotdot_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("../configs", "/config/sleep.yaml"));
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "bad.image", "not an image name");
}

#[test]
fn config_path_with_dotdot_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &processes("good", "/../../configs/processes/app.yaml"),
    );
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "bad.config", "escapes the image root");
}

#[test]
fn relative_symlink_out_of_image_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("good", "/config/evil.yaml"));
    // A host file the attacker would like to be read as the container config.
    write(&dir.path().join("secret.yaml"), SLEEP);
    symlink(
        "../../../secret.yaml",
        dir.path().join("images/good/config/evil.yaml"),
    )
    .unwrap();
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "bad.config", "escapes the image root");
}

#[test]
fn absolute_symlink_resolves_inside_image() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("good", "/config/abs.yaml"));
    // Points at a host path that exists: it must be looked up inside the image instead,
    // where it does not exist.
    write(&dir.path().join("host.yaml"), SLEEP);
    let host = dir.path().join("host.yaml");
    symlink(&host, dir.path().join("images/good/config/abs.yaml")).unwrap();
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "", "cannot open");

    // The same absolute target inside the image loads.
    write(
        &dir.path()
            .join("images/good")
            .join(host.strip_prefix("/").unwrap()),
        SLEEP,
    );
    let loaded = load(dir.path());
    assert!(
        matches!(entry(&loaded, "bad"), EntryLoad::Daemon { .. }),
        "{}",
        loaded.problems
    );
}

#[test]
fn image_symlink_out_of_image_dir_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("evil", "/config/sleep.yaml"));
    write(&dir.path().join("outside/config/sleep.yaml"), SLEEP);
    symlink(dir.path().join("outside"), dir.path().join("images/evil")).unwrap();
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "bad.image", "outside image-dir");
}

#[test]
fn container_config_fifo_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("good", "/config/fifo.yaml"));
    nix::unistd::mkfifo(
        &dir.path().join("images/good/config/fifo.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "", "not a regular file");
}

#[test]
fn processes_file_fifo_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), "");
    let path = dir.path().join("configs/processes/app.yaml");
    fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let loaded = load(dir.path());
    assert!(matches!(loaded.sandboxes["app"], SandboxLoad::Failed));
    assert!(
        loaded.problems.to_string().contains("not a regular file"),
        "{}",
        loaded.problems
    );
}

#[test]
fn huge_container_config_rejected_with_bounded_read() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("good", "/config/huge.yaml"));
    // A sparse file: 1 GiB of apparent size costs no disk, and reading it all would
    // cost a gigabyte of memory.
    let huge = fs::File::create(dir.path().join("images/good/config/huge.yaml")).unwrap();
    huge.set_len(1 << 30).unwrap();
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "", "larger than");
}

#[test]
fn master_fifo_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.yaml");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(lithos::model::load_master(&path).map(|_| ()));
    });
    let result = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("load_master hung on a FIFO");
    let problems = result.unwrap_err();
    assert!(
        problems.to_string().contains("not a regular file"),
        "{problems}"
    );
}

#[test]
fn writable_path_escape_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), &processes("good", "/config/vol.yaml"));
    // The volume names a path that climbs out of the writable-paths entry.
    write(
        &dir.path().join("configs/sandboxes/app.yaml"),
        &format!(
            "image-dir: ../../images\nallow-users: [1]\nallow-groups: [0-1]\n\
             writable-paths:\n  /w: {}/w\n",
            dir.path().display()
        ),
    );
    write(
        &dir.path().join("images/good/config/vol.yaml"),
        &format!("{SLEEP}volumes:\n  /data: !Persistent {{path: /w/../../etc}}\n"),
    );
    let loaded = load(dir.path());
    assert_rejected(&loaded, "bad", "", "");
    assert!(
        loaded.problems.to_string().contains(".."),
        "{}",
        loaded.problems
    );
}
