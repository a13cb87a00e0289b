//! Numbers as lithos configs write them: units on every integer, octal modes, fractions
//! for timeouts, and ranges like `1000-2000`.

use std::time::Duration;

/// Parses an integer with an optional unit: decimal `k M G T` (powers of 1000) or binary
/// `ki Ki Mi Gi Ti` (powers of 1024); also `0o755`, `0x1f` and `0b101`.
///
/// The error message names the value and how to write it.
pub fn parse_int(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let not_a_size = || not_a_size(text);
    if trimmed.is_empty() {
        return Err(not_a_size());
    }
    for (prefix, radix) in [("0o", 8), ("0x", 16), ("0b", 2)] {
        if let Some(digits) = trimmed.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix).map_err(|_| not_a_size());
        }
    }
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(not_a_size());
    }
    let number: u64 = digits.parse().map_err(|_| out_of_range(text))?;
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "ki" | "Ki" => 1024,
        "Mi" => 1024_u64.pow(2),
        "Gi" => 1024_u64.pow(3),
        "Ti" => 1024_u64.pow(4),
        _ => return Err(not_a_size()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| out_of_range(text))
}

fn not_a_size(text: &str) -> String {
    let digits: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let example = if digits.is_empty() {
        "100".to_string()
    } else {
        digits
    };
    format!(
        "{text:?} is not a size: use {example}Mi or {example}M \
         (units k M G T are powers of 1000, ki Mi Gi Ti powers of 1024)"
    )
}

fn out_of_range(text: &str) -> String {
    format!("{text:?} is too large: the maximum is {}", u64::MAX)
}

/// Parses a number of seconds, fractions allowed (`0.5`), into a duration.
pub fn parse_seconds(value: f64) -> Result<Duration, String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{value} is not a timeout: use seconds from 0 to 86400"
        ));
    }
    if value > 86400.0 {
        return Err(format!(
            "{value} is too long: the maximum timeout is 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// An inclusive range of ids or ports, written `7` or `1000-2000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct IdRange {
    /// First value in the range.
    pub start: u64,
    /// Last value in the range (inclusive).
    pub end: u64,
}

impl IdRange {
    /// Returns true when `value` lies in the range.
    pub fn contains(&self, value: u64) -> bool {
        self.start <= value && value <= self.end
    }

    /// Parses `N` or `N-M` (each side may carry a unit).
    pub fn parse(text: &str) -> Result<IdRange, String> {
        let bad = || {
            format!("{text:?} is not a range: write a number like 1000 or a range like 1000-2000")
        };
        let (start, end) = match text.split_once('-') {
            Some((start, end)) => (
                parse_int(start).map_err(|_| bad())?,
                parse_int(end).map_err(|_| bad())?,
            ),
            None => {
                let value = parse_int(text).map_err(|_| bad())?;
                (value, value)
            }
        };
        if start > end {
            return Err(format!(
                "{text:?} is not a range: the start is above the end"
            ));
        }
        Ok(IdRange { start, end })
    }
}

/// Returns true when any range contains `value`.
pub fn in_ranges(ranges: &[IdRange], value: u64) -> bool {
    ranges.iter().any(|range| range.contains(value))
}

/// Formats ranges the way a config writes them, for messages.
pub fn format_ranges(ranges: &[IdRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.start == r.end {
                r.start.to_string()
            } else {
                format!("{}-{}", r.start, r.end)
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_binary_and_decimal() {
        assert_eq!(parse_int("50ki"), Ok(51_200));
        assert_eq!(parse_int("50Ki"), Ok(51_200));
        assert_eq!(parse_int("512Mi"), Ok(512 << 20));
        assert_eq!(parse_int("1024Gi"), Ok(1024 << 30));
        assert_eq!(parse_int("2Ti"), Ok(2 << 40));
        assert_eq!(parse_int("1k"), Ok(1000));
        assert_eq!(parse_int("3M"), Ok(3_000_000));
        assert_eq!(parse_int("2G"), Ok(2_000_000_000));
        assert_eq!(parse_int("1T"), Ok(1_000_000_000_000));
        assert_eq!(parse_int("104857600"), Ok(104_857_600));
    }

    #[test]
    fn units_octal_and_hex() {
        assert_eq!(parse_int("0o755"), Ok(0o755));
        assert_eq!(parse_int("0o1777"), Ok(0o1777));
        assert_eq!(parse_int("0x10"), Ok(16));
    }

    #[test]
    fn units_reject_lowercase_m() {
        let error = parse_int("100m").unwrap_err();
        assert!(
            error.contains("\"100m\" is not a size: use 100Mi or 100M"),
            "{error}"
        );
        assert!(parse_int("10Gb").is_err());
        assert!(parse_int("").is_err());
        assert!(parse_int("99999999999999999999").is_err());
        assert!(parse_int("100000000Ti").is_err());
    }

    #[test]
    fn ranges_parse_and_contain() {
        let range = IdRange::parse("1000-2000").unwrap();
        assert!(range.contains(1000));
        assert!(range.contains(2000));
        assert!(!range.contains(2001));
        assert_eq!(IdRange::parse("7").unwrap(), IdRange { start: 7, end: 7 });
        assert!(IdRange::parse("5-1").is_err());
        assert!(IdRange::parse("a-b").is_err());
    }

    #[test]
    fn seconds_accept_fractions() {
        assert_eq!(parse_seconds(0.5), Ok(Duration::from_millis(500)));
        assert!(parse_seconds(-1.0).is_err());
        assert!(parse_seconds(86401.0).is_err());
        assert!(parse_seconds(f64::NAN).is_err());
    }
}
