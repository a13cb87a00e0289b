//! The start and death lines appended to the program's output around each run.

use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::ExitStatus;
use super::supervise::write_output;
use crate::model::spec::LaunchSpec;

/// Appends `TIME NAME: starting EXECUTABLE ARGS` unless the program is interactive.
pub(crate) fn start_line(output: Option<&OwnedFd>, spec: &LaunchSpec) {
    if spec.container.interactive {
        return;
    }
    let mut command = spec.container.executable.clone();
    for argument in &spec.container.arguments {
        command.push(' ');
        command.push_str(argument);
    }
    let line = format!(
        "[lithos] {} {}: starting {command}\n",
        timestamp(SystemTime::now()),
        spec.name
    );
    write_output(output, &line);
}

/// Appends `TIME NAME: exited with code N after Ss` (or `killed by signal N`).
pub(crate) fn death_line(
    output: Option<&OwnedFd>,
    spec: &LaunchSpec,
    status: &ExitStatus,
    uptime: Duration,
) {
    if spec.container.interactive {
        return;
    }
    let how = match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("killed by signal {signal}"),
    };
    let line = format!(
        "[lithos] {} {}: {how} after {:.3}s\n",
        timestamp(SystemTime::now()),
        spec.name,
        uptime.as_secs_f64()
    );
    write_output(output, &line);
}

/// Formats `time` as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_known_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(timestamp(leap), "2000-02-29T12:34:56.789Z");
    }
}
