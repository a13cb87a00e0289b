//! A small line logger for the tools: `--log-stderr` and `--log-level` as the original
//! tools had them, to stderr or appended to a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Severity of a log line, from the most to the least severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Progress an operator wants in the log: starts and exits.
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// Parses a `log-level` value (`error`, `warn`, `info`, `debug`, `trace`).
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            "trace" => Some(Level::Trace),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

/// Writes `TIME LEVEL TOOL: MESSAGE` lines at or above a level.
pub struct ToolLog {
    tool: String,
    level: Level,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl ToolLog {
    /// Creates a logger writing to stderr.
    pub fn stderr(tool: &str, level: Level) -> ToolLog {
        ToolLog {
            tool: tool.to_string(),
            level,
            sink: Mutex::new(Box::new(std::io::stderr())),
        }
    }

    /// Creates a logger appending to `path`. When the file cannot be opened it falls back
    /// to stderr with a warning, so a user who may not write the master log still gets
    /// messages.
    pub fn file_or_stderr(tool: &str, level: Level, path: &Path) -> ToolLog {
        let opened = path
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|()| OpenOptions::new().append(true).create(true).open(path));
        match opened {
            Ok(file) => ToolLog {
                tool: tool.to_string(),
                level,
                sink: Mutex::new(Box::new(file)),
            },
            Err(error) => {
                let log = ToolLog::stderr(tool, level);
                log.warn(&format!(
                    "cannot open log file {}: {error}; logging to stderr",
                    path.display()
                ));
                log
            }
        }
    }

    /// Returns true when lines of `level` are written.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Writes `message` at `level`.
    pub fn log(&self, level: Level, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let line = format!("{time} {} {}: {message}\n", level.as_str(), self.tool);
        if let Ok(mut sink) = self.sink.lock() {
            // A log line that cannot be written has nowhere else to go.
            let _ = sink.write_all(line.as_bytes());
            let _ = sink.flush();
        }
    }

    /// Writes an error line.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// Writes a warning line.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Writes an info line.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Writes a debug line.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }
}
