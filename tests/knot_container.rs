//! End-to-end tests of `lithos_knot` on a busybox image, as root.

mod knot_support;

use knot_support::{container_root, root_or_skip, run_script};

#[test]
fn program_is_pid_two() {
    if !root_or_skip("namespaces and mounts") {
        return;
    }
    let tmp = container_root();
    let (code, log) = run_script(
        tmp.path(),
        "sb/pid.0",
        "echo pid=$$; echo ppid=$PPID",
        |s| {
            s.container.normal_exit_codes = vec![0];
        },
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("pid=2\n"), "{log}");
    assert!(log.contains("ppid=1\n"), "{log}");
}
