//! `lithos_mkdev DIR`: creates the devfs directory that containers mount as `/dev`.
//!
//! Exit codes: 0 on success, 1 when the devfs could not be created, 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: lithos_mkdev DIR");
        return ExitCode::from(2);
    };
    match lithos::exec::mkdev::populate(&PathBuf::from(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = format!("lithos_mkdev: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            ExitCode::from(1)
        }
    }
}
