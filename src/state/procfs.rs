//! Parsers for the `/proc/PID` files the observer reads.

use std::io;
use std::path::Path;

/// The fields of `/proc/PID/stat` the observer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// State letter: `R`, `S`, `D`, `Z` (zombie), `X` (dead) ...
    pub state: char,
    /// Parent process id.
    pub ppid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl Stat {
    /// Returns true for a process that has exited but is not reaped yet.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the contents of `/proc/PID/stat`; `None` when the text is malformed.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    // The command name in brackets may itself contain spaces and brackets, so the fields
    // start after the last closing bracket.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 of proc(5) (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        start_time,
    })
}

/// Reads and parses `/proc/PID/stat`; `Ok(None)` when the file is malformed.
pub(crate) fn read_stat(proc_dir: &Path) -> io::Result<Option<Stat>> {
    let text = std::fs::read_to_string(proc_dir.join("stat"))?;
    Ok(parse_stat(&text))
}

/// Reads `/proc/PID/cmdline` as a list of arguments (empty for zombies and kernel threads).
pub(crate) fn read_cmdline(proc_dir: &Path) -> io::Result<Vec<String>> {
    let bytes = std::fs::read(proc_dir.join("cmdline"))?;
    Ok(split_cmdline(&bytes))
}

/// Splits a NUL-separated command line; a missing final NUL is tolerated.
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&byte| byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The identifying arguments of a `lithos_knot` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnotArgs {
    /// Value of `--name`: `SANDBOX/PROCESS.N` or `SANDBOX/cmd.NAME.PID`.
    pub name: String,
    /// Value of `--master`: the absolute master config path of the tree that started it.
    pub master: String,
    /// Value of `--fingerprint`.
    pub fingerprint: String,
}

/// Extracts `--name`, `--master` and `--fingerprint` from a `lithos_knot` command line.
///
/// Returns `None` when argument zero is not a `lithos_knot` binary or one of the three is
/// missing. Every other flag (logging flags, `--config-fd`) is skipped, so the flags a
/// tree or a knot was started with never change how a knot is recognised. Both
/// `--flag value` and `--flag=value` are accepted.
pub fn parse_knot_args(args: &[String]) -> Option<KnotArgs> {
    let program = args.first()?;
    if Path::new(program).file_name()? != "lithos_knot" {
        return None;
    }
    let (mut name, mut master, mut fingerprint) = (None, None, None);
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let slot = match flag {
            "--name" => &mut name,
            "--master" => &mut master,
            "--fingerprint" => &mut fingerprint,
            _ => continue,
        };
        *slot = match inline {
            Some(value) => Some(value),
            None => Some(rest.next()?.clone()),
        };
    }
    Some(KnotArgs {
        name: name?,
        master: master?,
        fingerprint: fingerprint?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn stat_with_brackets_in_name() {
        let text = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1 1";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 7);
        assert_eq!(stat.start_time, 12345);
    }

    #[test]
    fn stat_truncated_is_none() {
        assert_eq!(parse_stat("42 (x) S 7 42"), None);
    }

    #[test]
    fn knot_args_ignore_logging_flags() {
        let plain = "/bin/lithos_knot --name s/p.0 --master /m.yaml --fingerprint ab --config-fd 3";
        let noisy = "lithos_knot --log-stderr --name s/p.0 --log-level debug --master=/m.yaml --fingerprint ab --config-fd 3";
        assert_eq!(parse_knot_args(&args(plain)), parse_knot_args(&args(noisy)));
        assert_eq!(parse_knot_args(&args(plain)).unwrap().name, "s/p.0");
    }

    #[test]
    fn knot_args_reject_other_programs() {
        assert_eq!(
            parse_knot_args(&args(
                "lithos_tree --name s/p.0 --master /m --fingerprint a"
            )),
            None
        );
        assert_eq!(
            parse_knot_args(&args("lithos_knot --name s/p.0 --master /m")),
            None
        );
        assert_eq!(parse_knot_args(&[]), None);
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(split_cmdline(b"a\0b c\0"), vec!["a", "b c"]);
        assert_eq!(split_cmdline(b"a\0b"), vec!["a", "b"]);
        assert!(split_cmdline(b"").is_empty());
    }
}
