//! Volume mount points that are symlinks in the image, pointing at a host directory by an
//! absolute path or by enough `..` to leave the image: the mount lands inside the
//! container root, never on the host directory. (Without that path inside the image the
//! knot refuses to start the container.)

mod tree_support;

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use tree_support::{entry, eventually, root_or_skip, shell_container, Fixture};

#[test]
fn volume_symlink_targets_stay_inside_the_root() {
    if !root_or_skip("containers") {
        return;
    }
    let mut fixture = Fixture::new("volsym");
    let host = fixture.root().join("hostdir");
    fs::create_dir_all(&host).unwrap();
    let image = fixture.root().join("images/test.v1");
    symlink(&host, image.join("abs")).unwrap();
    let climb = format!(
        "{}{}",
        "../".repeat(20),
        host.strip_prefix("/").unwrap().display()
    );
    symlink(&climb, image.join("rel")).unwrap();
    // The same path inside the image, where both symlinks must lead.
    fs::create_dir_all(image.join(host.strip_prefix("/").unwrap())).unwrap();
    let mut config = shell_container(
        "echo abs > /abs/marker; echo rel > /rel/marker; echo done >> /data/done; sleep 3600",
        "1",
        "1",
    );
    config.push_str("  /abs: !Tmpfs {size: 1M}\n  /rel: !Tmpfs {size: 1M}\n");
    fixture.write_container("vol", &config);
    fixture.write_processes("sb", &entry("vol", "vol", 1));
    fixture.start_tree();
    let ran = eventually(Duration::from_secs(15), || {
        !fixture.data_lines("done").is_empty()
    });
    assert!(ran, "{}", fixture.log());
    let entries: Vec<_> = fs::read_dir(&host).unwrap().flatten().collect();
    assert!(
        entries.is_empty(),
        "the container wrote into the host directory: {entries:?}\n{}",
        fixture.log()
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(host.to_str().unwrap()),
        "a mount appeared on the host directory"
    );
}
