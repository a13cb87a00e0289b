//! Shared helpers of the operator tool tests: a config tree over a busybox image in a
//! temporary directory.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Returns true when the test runs as root; prints the skip reason otherwise.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root ({what})");
        false
    }
}

/// Writes `text` to `path`, creating its parent directories.
pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A config tree in a temporary directory, with sandbox `s` running images from
/// `images/busybox`.
pub struct TestTree {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    /// The master config.
    pub master: PathBuf,
    /// `cgroup-name` of the master config, when cgroups are on.
    pub cgroup_name: Option<String>,
}

impl TestTree {
    /// Builds the tree; `processes` is the processes file of sandbox `s`.
    pub fn new(cgroup_name: Option<&str>, processes: &str) -> TestTree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cgroup = match cgroup_name {
            Some(name) => format!("cgroup-name: {name}\n"),
            None => "cgroup-name: null\n".to_string(),
        };
        let master = root.join("configs/master.yaml");
        write(
            &master,
            &format!(
                "runtime-dir: {0}/run\nstate-dir: {0}/run/state\nmount-dir: {0}/mnt\n\
                 devfs-dir: {0}/dev\ndefault-log-dir: {0}/log\nstdio-log-dir: {0}/log/stdio\n\
                 config-log-dir: {0}/log/config\nlog-level: info\n{cgroup}",
                root.display()
            ),
        );
        write(
            &root.join("configs/sandboxes/s.yaml"),
            "image-dir: ../../images\nallow-users: [0]\nallow-groups: [0]\n",
        );
        write(&root.join("configs/processes/s.yaml"), processes);
        let image = root.join("images/busybox");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-image");
        let status = Command::new(script).arg(&image).status().unwrap();
        assert!(status.success(), "make-test-image failed");
        let status = Command::new(env!("CARGO_BIN_EXE_lithos_mkdev"))
            .arg(root.join("dev"))
            .status()
            .unwrap();
        assert!(status.success(), "lithos_mkdev failed");
        TestTree {
            dir,
            master,
            cgroup_name: cgroup_name.map(str::to_string),
        }
    }

    /// Writes container config `name` into the image.
    pub fn container(&self, name: &str, text: &str) {
        write(
            &self
                .dir
                .path()
                .join(format!("images/busybox/config/{name}.yaml")),
            text,
        );
    }

    /// Returns the root of the temporary directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the sandbox's stdio log.
    pub fn stdio_log(&self) -> String {
        fs::read_to_string(self.root().join("log/stdio/s.log")).unwrap_or_default()
    }

    /// Removes the `cgroup-name` groups the tools created below this process's groups.
    pub fn remove_cgroups(&self) {
        let Some(name) = &self.cgroup_name else {
            return;
        };
        if let Ok(cgroups) = lithos::exec::cgroup::Cgroups::discover(Path::new("/proc"), name, &[])
        {
            for dir in cgroups.base_dirs() {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        self.remove_cgroups();
    }
}

/// Polls `check` every 20 ms for at most `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
