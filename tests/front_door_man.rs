//! docs/man matches the --help of the binaries of this build.

use std::path::Path;
use std::process::Command;

#[test]
fn man_pages_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lithos")).parent().unwrap();
    let status = Command::new(root.join("scripts/gen-man"))
        .arg(out.path())
        .env("LITHOS_BIN_DIR", bin_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut compared = 0;
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let generated = entry.unwrap().path();
        let name = generated.file_name().unwrap();
        let committed = root.join("docs/man").join(name);
        let expected = std::fs::read_to_string(&committed)
            .unwrap_or_else(|_| panic!("{} missing: run scripts/gen-man", committed.display()));
        let actual = std::fs::read_to_string(&generated).unwrap();
        assert!(
            actual == expected,
            "{} is outdated: run scripts/gen-man",
            committed.display()
        );
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} pages generated");
}
