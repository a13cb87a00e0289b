//! Thin wrappers over the system calls that neither `nix` nor `libc` wrap: `clone3`,
//! `openat2`, `close_range` and the file-descriptor based mount API.
//!
//! Each wrapper turns a negative return into an [`io::Error`] and takes or returns owned
//! file descriptors, so the unsafe code in the rest of the crate is limited to the spawn
//! child, which cannot allocate.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct clone_args` of `linux/sched.h`, version 2 (with the `cgroup` field).
#[repr(C, align(8))]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// `CLONE_INTO_CGROUP` of `linux/sched.h` (since Linux 5.7).
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct open_how` of `linux/openat2.h`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Reject `..` and symlinks that lead out of the starting directory.
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;
/// Resolve as if the starting directory were `/`.
pub(crate) const RESOLVE_IN_ROOT: u64 = 0x10;
/// Reject every symlink on the way, the last component included.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Reject `/proc/PID/fd`-style links.
pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// Mount attributes of `linux/mount.h`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x04;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x08;

const OPEN_TREE_CLONE: libc::c_uint = 0x01;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 0x01;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x01;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Opens `path` relative to `dir` with `openat2`, restricted by the `RESOLVE_*` flags.
/// The descriptor is always close-on-exec.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve,
    };
    // SAFETY: `path` is a valid C string and `how` a fully initialised struct whose size
    // we pass; the kernel reads both only during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(ret)
}

/// Closes every descriptor from `first` up, in one system call however high
/// `RLIMIT_NOFILE` is.
pub(crate) fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the callers own everything above
    // `first` that is still open and no longer use it.
    check(unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, !0u32, 0u32) })?;
    Ok(())
}

/// Clones the mount at `source` (not its submounts) into a detached mount, sets `attrs`
/// on it and attaches it at `target`.
pub(crate) fn bind_mount(
    source: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attrs: u64,
) -> io::Result<()> {
    let empty = c"";
    // SAFETY: `empty` is a valid C string; open_tree returns a new descriptor we own.
    let tree = owned(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    })?;
    set_attrs(tree.as_fd(), attrs)?;
    move_mount(tree.as_fd(), target)
}

/// Creates a new file system instance of `fstype` with string `options`, and attaches it
/// at `target` with the mount attributes `attrs`.
pub(crate) fn mount_new(
    fstype: &CStr,
    options: &[(&CStr, &CStr)],
    target: BorrowedFd<'_>,
    attrs: u64,
) -> io::Result<()> {
    // SAFETY: `fstype` is a valid C string; fsopen returns a new descriptor we own.
    let context =
        owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    for (key, value) in options {
        // SAFETY: key and value are valid C strings that outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: null key and value are what FSCONFIG_CMD_CREATE expects.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fsmount on a created context returns a new mount descriptor we own.
    let mount = owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })?;
    move_mount(mount.as_fd(), target)
}

fn set_attrs(mount: BorrowedFd<'_>, attrs: u64) -> io::Result<()> {
    if attrs == 0 {
        return Ok(());
    }
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `attr` is initialised and its size is passed; `empty` is a valid C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

fn move_mount(mount: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both descriptors are open for the duration of the call and `empty` is a
    // valid C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}
