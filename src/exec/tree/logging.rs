//! The tree's own log: slog records to the master log file, to stderr, or to syslog.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use slog::{Drain, KV};

/// Where the tree writes its log records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error, with `--log-stderr`.
    Stderr,
    /// The master config's `log-file`, appended to.
    File(PathBuf),
    /// The local syslog daemon, when the master config sets `syslog-facility`.
    Syslog {
        /// Facility name such as `daemon` or `local0`.
        facility: String,
        /// Application name of each record (`syslog-name`).
        name: String,
    },
}

/// Error building the logger.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log level is none of critical, error, warning, info, debug, trace.
    #[error("invalid log level {level:?}: expected one of error, warn, info, debug, trace")]
    InvalidLevel {
        /// Level as given.
        level: String,
    },
    /// The log file could not be opened for appending.
    #[error("failed to open log file {path}")]
    OpenFile {
        /// Log file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The syslog facility name is unknown.
    #[error("invalid syslog facility {facility:?}: expected a name such as daemon or local0")]
    InvalidFacility {
        /// Facility as given.
        facility: String,
    },
    /// The local syslog socket could not be connected.
    #[error("failed to connect to the local syslog socket")]
    ConnectSyslog {
        /// Cause.
        #[source]
        source: syslog::Error,
    },
}

/// Parses a log level name as the master config and `--log-level` write it.
pub fn parse_level(level: &str) -> Result<slog::Level, LoggingError> {
    match level.to_ascii_lowercase().as_str() {
        "critical" | "crit" => Ok(slog::Level::Critical),
        "error" => Ok(slog::Level::Error),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "info" => Ok(slog::Level::Info),
        "debug" => Ok(slog::Level::Debug),
        "trace" => Ok(slog::Level::Trace),
        _ => Err(LoggingError::InvalidLevel {
            level: level.to_string(),
        }),
    }
}

/// Builds the root logger for `target`, dropping records below `level`.
pub fn build_logger(target: &LogTarget, level: slog::Level) -> Result<slog::Logger, LoggingError> {
    let logger = match target {
        LogTarget::Stderr => {
            let decorator = slog_term::PlainSyncDecorator::new(io::stderr());
            // A failed write (a closed stderr, a full disk) drops the record: `fuse` would
            // panic, and the supervisor must keep running without its log.
            let drain = slog_term::FullFormat::new(decorator).build().ignore_res();
            slog::Logger::root(slog::LevelFilter::new(drain, level).fuse(), slog::o!())
        }
        LogTarget::File(path) => {
            let decorator = slog_term::PlainSyncDecorator::new(open_append(path)?);
            let drain = slog_term::FullFormat::new(decorator).build().ignore_res();
            slog::Logger::root(slog::LevelFilter::new(drain, level).fuse(), slog::o!())
        }
        LogTarget::Syslog { facility, name } => {
            // A syslog daemon that went away must not stop the tree: records are dropped.
            let drain = SyslogDrain::connect(facility, name)?.ignore_res();
            slog::Logger::root(slog::LevelFilter::new(drain, level).fuse(), slog::o!())
        }
    };
    Ok(logger)
}

fn open_append(path: &Path) -> Result<std::fs::File, LoggingError> {
    if let Some(parent) = path.parent() {
        // A missing log dir is created here, so the error below names the file itself.
        let _ = std::fs::create_dir_all(parent);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LoggingError::OpenFile {
            path: path.to_path_buf(),
            source,
        })
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// A slog drain that sends each record as one RFC 3164 message to the local syslog socket.
pub struct SyslogDrain {
    logger: Mutex<SyslogLogger>,
}

impl SyslogDrain {
    /// Connects to `/dev/log` (or the other usual local sockets) with `facility` and `name`.
    pub fn connect(facility: &str, name: &str) -> Result<SyslogDrain, LoggingError> {
        let parsed =
            facility
                .parse::<syslog::Facility>()
                .map_err(|()| LoggingError::InvalidFacility {
                    facility: facility.to_string(),
                })?;
        let formatter = syslog::Formatter3164 {
            facility: parsed,
            hostname: None,
            process: name.to_string(),
            pid: std::process::id(),
        };
        let logger =
            syslog::unix(formatter).map_err(|source| LoggingError::ConnectSyslog { source })?;
        Ok(SyslogDrain {
            logger: Mutex::new(logger),
        })
    }
}

impl Drain for SyslogDrain {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), io::Error> {
        let line = format_record(record, values);
        let mut logger = self
            .logger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sent = match record.level() {
            slog::Level::Critical => logger.crit(line),
            slog::Level::Error => logger.err(line),
            slog::Level::Warning => logger.warning(line),
            slog::Level::Info => logger.info(line),
            slog::Level::Debug | slog::Level::Trace => logger.debug(line),
        };
        sent.map_err(io::Error::other)
    }
}

/// Formats a record as `MESSAGE; key=value, key=value` for line-oriented sinks.
fn format_record(record: &slog::Record, values: &slog::OwnedKVList) -> String {
    let mut serializer = LineSerializer(String::new());
    let _ = record.kv().serialize(record, &mut serializer);
    let _ = values.serialize(record, &mut serializer);
    if serializer.0.is_empty() {
        record.msg().to_string()
    } else {
        format!("{}; {}", record.msg(), serializer.0)
    }
}

struct LineSerializer(String);

impl slog::Serializer for LineSerializer {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push_str(", ");
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_level_accepts_config_spellings() {
        assert_eq!(parse_level("warn").unwrap(), slog::Level::Warning);
        assert_eq!(parse_level("WARNING").unwrap(), slog::Level::Warning);
        assert_eq!(parse_level("debug").unwrap(), slog::Level::Debug);
        assert!(parse_level("loud").is_err());
    }

    #[test]
    fn syslog_line_has_message_and_fields() {
        let record_args = format_args!("container started");
        static LOCATION: slog::RecordLocation = slog::RecordLocation {
            file: "test",
            line: 1,
            column: 1,
            function: "test",
            module: "test",
        };
        let static_record = slog::RecordStatic {
            location: &LOCATION,
            tag: "",
            level: slog::Level::Info,
        };
        let kv = slog::kv!("pid" => 42);
        let record = slog::Record::new(&static_record, &record_args, slog::BorrowedKV(&kv));
        let values = slog::OwnedKVList::from(slog::o!("tree" => 1));
        let line = format_record(&record, &values);
        assert_eq!(line, "container started; pid=42, tree=1");
    }

    #[test]
    fn file_logger_appends_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/master.log");
        let logger = build_logger(&LogTarget::File(path.clone()), slog::Level::Info).unwrap();
        slog::info!(logger, "started"; "instance" => "web/app.0", "pid" => 42);
        slog::debug!(logger, "hidden");
        drop(logger);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("started"), "{text}");
        assert!(text.contains("instance: web/app.0"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
    }
}
