//! Image names and reading files from an image as if the image were the root.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// Checks an image name: `levels` plain components, none empty, `.` or `..`.
pub fn check_image_name(name: &str, levels: u32) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(format!(
                "{name:?} is not an image name: write {levels} plain path component(s) relative to image-dir, without empty parts, . or .."
            ));
        }
    }
    if parts.len() != levels as usize {
        return Err(format!(
            "image {name:?} has {} path component(s) but the sandbox's image-dir-levels is {levels}",
            parts.len()
        ));
    }
    Ok(())
}

/// Resolves `path` inside `root` like `openat2` with `RESOLVE_IN_ROOT`: absolute symlinks
/// point inside the root. A `..` that would leave the root is an error rather than being
/// clamped, because it shows a config or symlink that expects the host's file system.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if resolved.pop().is_none() {
                return Err(format!("{} escapes the image root", path.display()));
            }
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(format!(
                        "{}: too many levels of symbolic links",
                        path.display()
                    ));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| format!("cannot read symlink {}: {e}", candidate.display()))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    let mut result = root.to_path_buf();
    result.extend(&resolved);
    Ok(result)
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_name_levels() {
        assert!(check_image_name("app", 1).is_ok());
        assert!(check_image_name("app/v1", 2).is_ok());
        assert!(check_image_name("app/v1", 1).is_err());
        assert!(check_image_name("../etc", 2).is_err());
        assert!(check_image_name("..", 1).is_err());
        assert!(check_image_name("a//b", 2).is_err());
        assert!(check_image_name("", 1).is_err());
    }

    #[test]
    fn resolve_absolute_symlink_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("real/c.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("/real", root.join("config")).unwrap();
        let resolved = resolve_in_root(root, Path::new("/config/c.yaml")).unwrap();
        assert_eq!(resolved, root.join("real/c.yaml"));
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        assert!(resolve_in_root(root, Path::new("/up/etc/passwd")).is_err());
        assert!(resolve_in_root(root, Path::new("/../etc")).is_err());
    }
}
