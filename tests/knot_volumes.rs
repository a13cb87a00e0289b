//! End-to-end tests of the container file system: volumes, `/dev`, and the `/etc` files.

mod knot_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use knot_support::{assert_no_mounts, container_root, root_or_skip, run_script};
use lithos::exec::knot::exit_codes;
use lithos::model::spec::Volume;

/// Returns the mountinfo line of `mount_point` from the program's output.
fn mount_line<'a>(log: &'a str, mount_point: &str) -> &'a str {
    log.lines()
        .find(|l| l.split_whitespace().nth(4) == Some(mount_point))
        .unwrap_or_else(|| panic!("{mount_point} not mounted: {log}"))
}

fn options(line: &str) -> Vec<&str> {
    line.split_whitespace().nth(5).unwrap().split(',').collect()
}

#[test]
fn volume_kinds_mounted_with_flags() {
    if !root_or_skip("mounts") {
        return;
    }
    let tmp = container_root();
    let root = tmp.path();
    for dir in ["image/data", "image/ro", "storage", "rodata"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("rodata/file"), "from the host\n").unwrap();
    let script = "cat /proc/self/mountinfo; \
                  echo hi > /data/written && echo persistent-ok; \
                  echo x > /ro/file 2>/dev/null || echo readonly-refused; \
                  cat /ro/file; echo s > /state/sub/f && echo statedir-ok; \
                  stat -c 'statedir %a %u %g' /state/sub";
    let (_, log) = run_script(root, "sb/vol.0", script, |s| {
        s.writable_paths
            .insert("/storage".into(), root.join("storage"));
        s.readonly_paths
            .insert("/ro-data".into(), root.join("rodata"));
        let volumes = &mut s.container.volumes;
        volumes.insert(
            "/tmp".into(),
            Volume::Tmpfs {
                size: 1 << 20,
                mode: 0o750,
            },
        );
        let persistent = Volume::Persistent {
            path: "/storage/app/db".into(),
            mkdir: true,
            mode: 0o750,
            user: 1,
            group: 2,
        };
        volumes.insert("/data".into(), persistent);
        volumes.insert(
            "/ro".into(),
            Volume::Readonly {
                path: "/ro-data".into(),
            },
        );
        volumes.insert(
            "/state".into(),
            Volume::Statedir {
                path: "/".into(),
                mode: 0o755,
                user: 0,
                group: 0,
            },
        );
        let sub = Volume::Statedir {
            path: "/sub".into(),
            mode: 0o700,
            user: 3,
            group: 4,
        };
        volumes.insert("/state/sub".into(), sub);
    });

    let tmpfs = mount_line(&log, "/tmp");
    assert!(tmpfs.contains(" - tmpfs "), "{tmpfs}");
    assert!(tmpfs.contains("size=1024k"), "{tmpfs}");
    assert!(tmpfs.contains("mode=750"), "{tmpfs}");
    for (mount_point, mode) in [
        ("/data", "rw"),
        ("/ro", "ro"),
        ("/state", "rw"),
        ("/state/sub", "rw"),
    ] {
        let flags = options(mount_line(&log, mount_point));
        for flag in [mode, "nosuid", "nodev", "noexec"] {
            assert!(
                flags.contains(&flag),
                "{mount_point} lacks {flag}: {flags:?}"
            );
        }
    }
    let root_flags = options(mount_line(&log, "/"));
    assert!(
        root_flags.contains(&"ro"),
        "image not read-only: {root_flags:?}"
    );
    assert!(log.contains("persistent-ok\n"), "{log}");
    assert!(log.contains("readonly-refused\nfrom the host\n"), "{log}");
    assert!(log.contains("statedir-ok\nstatedir 700 3 4\n"), "{log}");
    let created = root.join("storage/app/db");
    assert_eq!(fs::read_to_string(created.join("written")).unwrap(), "hi\n");
    let meta = fs::metadata(&created).unwrap();
    assert_eq!(
        (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid()),
        (0o750, 1, 2)
    );
    assert_no_mounts(root);
}

#[test]
fn symlink_out_of_writable_path_rejected() {
    if !root_or_skip("mounts") {
        return;
    }
    let tmp = container_root();
    let root = tmp.path();
    fs::create_dir_all(root.join("image/data")).unwrap();
    fs::create_dir_all(root.join("storage")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("storage/escape")).unwrap();
    let (code, log) = run_script(root, "sb/escape.0", "ls /data", |s| {
        s.writable_paths
            .insert("/storage".into(), root.join("storage"));
        let volume = Volume::Persistent {
            path: "/storage/escape".into(),
            mkdir: false,
            mode: 0o755,
            user: 0,
            group: 0,
        };
        s.container.volumes.insert("/data".into(), volume);
    });
    assert_eq!(code, Some(exit_codes::SETUP_FAILED), "{log}");
    assert!(
        log.contains("volume /data: failed to open escape below"),
        "{log}"
    );
    assert_no_mounts(root);
}

#[test]
fn missing_mount_point_fails_without_host_mounts() {
    if !root_or_skip("mounts") {
        return;
    }
    let tmp = container_root();
    let (code, log) = run_script(tmp.path(), "sb/nomp.0", "true", |s| {
        s.container.volumes.insert(
            "/tmp".into(),
            Volume::Tmpfs {
                size: 0,
                mode: 0o755,
            },
        );
        s.container.volumes.insert(
            "/not/there".into(),
            Volume::Tmpfs {
                size: 0,
                mode: 0o755,
            },
        );
    });
    assert_eq!(code, Some(exit_codes::SETUP_FAILED), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("failed")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("failed to open mount point /not/there in the container"),
        "{log}"
    );
    assert_no_mounts(tmp.path());
}

#[test]
fn ptmx_usable_by_non_root() {
    if !root_or_skip("devpts") {
        return;
    }
    let tmp = container_root();
    let host_ptmx = fs::metadata("/dev/pts/ptmx")
        .map(|m| m.permissions().mode())
        .ok();
    let script = "exec 3<>/dev/ptmx && echo ptmx-ok; ls /dev/pts; ls /dev";
    let (_, log) = run_script(tmp.path(), "sb/pty.0", script, |s| {
        s.container.user_id = 1000;
        s.container.group_id = 1000;
    });
    assert!(log.contains("ptmx-ok\n"), "{log}");
    assert!(log.contains("\n0\n"), "no pty allocated: {log}");
    for device in ["null", "zero", "full", "random", "urandom", "tty", "shm"] {
        assert!(
            log.lines().any(|l| l == device),
            "/dev/{device} missing: {log}"
        );
    }
    let after = fs::metadata("/dev/pts/ptmx")
        .map(|m| m.permissions().mode())
        .ok();
    assert_eq!(host_ptmx, after, "the host's ptmx changed");
}

/// Prepares `image/etc/NAME` as `kind` ("file", "symlink" or "dangling").
fn prepare_etc(image: &Path, name: &str, kind: &str) -> PathBuf {
    let path = image.join("etc").join(name);
    fs::remove_file(&path).unwrap();
    match kind {
        "file" => fs::write(&path, "image content\n").unwrap(),
        "symlink" => {
            fs::write(
                image.join("etc").join(format!("{name}.real")),
                "image content\n",
            )
            .unwrap();
            std::os::unix::fs::symlink(format!("{name}.real"), &path).unwrap();
        }
        _ => std::os::unix::fs::symlink("/nowhere/at/all", &path).unwrap(),
    }
    path
}

#[test]
fn etc_files_mounted_over_regular_files_only() {
    if !root_or_skip("mounts") {
        return;
    }
    for kind in ["file", "symlink", "dangling"] {
        let tmp = container_root();
        let root = tmp.path();
        prepare_etc(&root.join("image"), "hosts", kind);
        prepare_etc(&root.join("image"), "resolv.conf", kind);
        fs::write(root.join("host-resolv"), "nameserver 192.0.2.53\n").unwrap();
        let script =
            "echo ==hosts; cat /etc/hosts; echo ==resolv; cat /etc/resolv.conf; echo ==end";
        let (code, log) = run_script(root, &format!("sb/etc-{kind}.0"), script, |s| {
            s.container.hosts_file.mount = None;
            s.container
                .hosts_file
                .additional_hosts
                .insert("db.local".into(), "192.0.2.7".into());
            s.container.resolv_conf.mount = None;
            s.container.resolv_conf.host_file = root.join("host-resolv");
        });
        assert_eq!(code, Some(exit_codes::FAILURE), "{kind}: {log}");
        let generated = kind == "file";
        assert_eq!(
            log.contains("127.0.0.1 localhost\n192.0.2.7 db.local\n"),
            generated,
            "{kind}: {log}"
        );
        assert_eq!(
            log.contains("nameserver 192.0.2.53\n"),
            generated,
            "{kind}: {log}"
        );
        let state = root.join("state/sb/etc-".to_string() + kind + ".0");
        assert!(fs::read_to_string(state.join("hosts"))
            .unwrap()
            .contains("192.0.2.7 db.local"));
        if kind == "symlink" {
            assert!(log.contains("==hosts\nimage content\n"), "{log}");
        }
        assert_no_mounts(root);
    }
}

#[test]
fn etc_mount_true_requires_regular_file() {
    if !root_or_skip("mounts") {
        return;
    }
    let tmp = container_root();
    prepare_etc(&tmp.path().join("image"), "hosts", "symlink");
    let (code, log) = run_script(tmp.path(), "sb/etc-true.0", "true", |s| {
        s.container.hosts_file.mount = Some(true);
    });
    assert_eq!(code, Some(exit_codes::SETUP_FAILED), "{log}");
    assert!(
        log.contains("/etc/hosts in the image is a symlink, not a regular file"),
        "{log}"
    );
    assert_no_mounts(tmp.path());
}

#[test]
fn etc_mount_false_leaves_image_file() {
    if !root_or_skip("mounts") {
        return;
    }
    let tmp = container_root();
    prepare_etc(&tmp.path().join("image"), "hosts", "file");
    let (_, log) = run_script(tmp.path(), "sb/etc-false.0", "cat /etc/hosts", |s| {
        s.container.hosts_file.mount = Some(false);
    });
    assert!(log.contains("image content\n"), "{log}");
    assert!(!log.contains("localhost"), "{log}");
}
