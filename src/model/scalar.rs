//! Deserialization of scalars and mapping keys the way lithos configs write them.
//!
//! Every scalar goes through [`Scalar`], so units, `nil` and numbers written where text is
//! expected behave the same in every file, and every error keeps serde_yaml's line, column
//! and key path.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::problems::{keyed_message, suggest};
use super::units::{parse_int, parse_seconds, IdRange};

/// A value that is written as one YAML scalar.
pub(crate) trait Scalar: Sized {
    /// Description of the expected value for messages, such as "an integer".
    const EXPECTED: &'static str;

    /// Read the scalar's text as written, so `0o755` or `1.10` in an environ value stays
    /// exactly that text instead of being resolved as a number first.
    const RAW: bool = false;

    fn from_str(text: &str) -> Result<Self, String>;

    fn from_u64(value: u64) -> Result<Self, String> {
        Self::from_str(&value.to_string())
    }

    fn from_i64(value: i64) -> Result<Self, String> {
        Self::from_str(&value.to_string())
    }

    fn from_f64(value: f64) -> Result<Self, String> {
        Err(format!("{value} is not {}", Self::EXPECTED))
    }

    fn from_bool(value: bool) -> Result<Self, String> {
        Err(format!("{value} is not {}", Self::EXPECTED))
    }
}

/// A required scalar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct P<T>(pub T);

/// An optional scalar: YAML null, `~`, an empty value and a plain `nil` are all absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opt<T>(pub Option<T>);

/// Returns true for the spellings of null, including `nil` that lithos docs use.
fn is_null_text(text: &str) -> bool {
    matches!(text, "nil" | "null" | "Null" | "NULL" | "~" | "")
}

struct ScalarVisitor<T> {
    optional: bool,
    marker: PhantomData<T>,
}

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        T::from_bool(value).map(Some).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        T::from_u64(value).map(Some).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        T::from_i64(value).map(Some).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        T::from_f64(value).map(Some).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        if self.optional && is_null_text(value) {
            return Ok(None);
        }
        T::from_str(value).map(Some).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.optional {
            Ok(None)
        } else {
            Err(E::custom(format!(
                "a value is missing: write {}",
                T::EXPECTED
            )))
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
}

impl<'de, T: Scalar> Deserialize<'de> for P<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = ScalarVisitor {
            optional: false,
            marker: PhantomData,
        };
        let value = if T::RAW {
            deserializer.deserialize_str(visitor)?
        } else {
            deserializer.deserialize_any(visitor)?
        };
        match value {
            Some(value) => Ok(P(value)),
            None => Err(de::Error::custom(format!(
                "a value is missing: write {}",
                T::EXPECTED
            ))),
        }
    }
}

impl<'de, T: Scalar> Deserialize<'de> for Opt<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = ScalarVisitor {
            optional: true,
            marker: PhantomData,
        };
        if T::RAW {
            deserializer.deserialize_str(visitor).map(Opt)
        } else {
            deserializer.deserialize_any(visitor).map(Opt)
        }
    }
}

impl Scalar for String {
    const EXPECTED: &'static str = "a string";
    const RAW: bool = true;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }

    fn from_f64(value: f64) -> Result<Self, String> {
        Ok(value.to_string())
    }

    fn from_bool(value: bool) -> Result<Self, String> {
        Ok(value.to_string())
    }
}

impl Scalar for PathBuf {
    const EXPECTED: &'static str = "a path";
    const RAW: bool = true;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty path is not allowed: write a path".to_string());
        }
        if text.contains('\0') {
            return Err(format!("{text:?} is not a path: it contains a NUL byte"));
        }
        Ok(PathBuf::from(text))
    }
}

impl Scalar for bool {
    const EXPECTED: &'static str = "a boolean (true or false)";

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            _ => Err(format!("{text:?} is not a boolean: write true or false")),
        }
    }

    fn from_u64(value: u64) -> Result<Self, String> {
        Err(format!("{value} is not a boolean: write true or false"))
    }

    fn from_i64(value: i64) -> Result<Self, String> {
        Err(format!("{value} is not a boolean: write true or false"))
    }

    fn from_bool(value: bool) -> Result<Self, String> {
        Ok(value)
    }
}

macro_rules! unsigned_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const EXPECTED: &'static str = "an integer (units k M G T ki Mi Gi Ti allowed)";

            fn from_str(text: &str) -> Result<Self, String> {
                let value = parse_int(text)?;
                <$t>::try_from(value)
                    .map_err(|_| format!("{text:?} is too large: the maximum is {}", <$t>::MAX))
            }

            fn from_u64(value: u64) -> Result<Self, String> {
                <$t>::try_from(value)
                    .map_err(|_| format!("{value} is too large: the maximum is {}", <$t>::MAX))
            }

            fn from_i64(value: i64) -> Result<Self, String> {
                <$t>::try_from(value)
                    .map_err(|_| format!("{value} is out of range: use 0 to {}", <$t>::MAX))
            }
        }
    };
}

unsigned_scalar!(u64);
unsigned_scalar!(u32);
unsigned_scalar!(u16);

impl Scalar for i32 {
    const EXPECTED: &'static str = "an integer";

    fn from_str(text: &str) -> Result<Self, String> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let value =
            i64::try_from(parse_int(digits)?).map_err(|_| format!("{text:?} is out of range"))?;
        let value = if negative { -value } else { value };
        Self::from_i64(value)
    }

    fn from_u64(value: u64) -> Result<Self, String> {
        i32::try_from(value)
            .map_err(|_| format!("{value} is out of range: use at most {}", i32::MAX))
    }

    fn from_i64(value: i64) -> Result<Self, String> {
        i32::try_from(value).map_err(|_| format!("{value} is out of range for a 32-bit integer"))
    }
}

/// Seconds, fractions allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seconds(pub Duration);

impl Scalar for Seconds {
    const EXPECTED: &'static str = "a number of seconds";

    fn from_str(text: &str) -> Result<Self, String> {
        match text.parse::<f64>() {
            Ok(value) => Self::from_f64(value),
            Err(_) => Err(format!(
                "{text:?} is not a number of seconds: write 5 or 0.5"
            )),
        }
    }

    fn from_u64(value: u64) -> Result<Self, String> {
        Self::from_f64(value as f64)
    }

    fn from_i64(value: i64) -> Result<Self, String> {
        Self::from_f64(value as f64)
    }

    fn from_f64(value: f64) -> Result<Self, String> {
        parse_seconds(value).map(Seconds)
    }
}

impl Scalar for IdRange {
    const EXPECTED: &'static str = "a number or a range like 1000-2000";

    fn from_str(text: &str) -> Result<Self, String> {
        IdRange::parse(text)
    }
}

impl Scalar for IpAddr {
    const EXPECTED: &'static str = "an IP address";

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not an IP address: write one like 10.0.0.2"))
    }
}

/// A mapping key of a structure: normalized spelling, or `None` for a `_`-prefixed key.
pub(crate) struct KeySeed {
    pub known: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if key.starts_with('_') {
            return Ok(None);
        }
        let normalized = key.replace('_', "-");
        if let Some(known) = self.known.iter().find(|k| **k == normalized) {
            return Ok(Some(known));
        }
        let hint = match suggest(key, self.known) {
            Some(close) => format!(", did you mean {close:?}?"),
            None => format!(": known keys are {}", self.known.join(", ")),
        };
        Err(E::custom(keyed_message(
            key,
            &format!("unknown key {key:?}{hint}"),
        )))
    }

    fn visit_u64<E: de::Error>(self, key: u64) -> Result<Self::Value, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_i64<E: de::Error>(self, key: i64) -> Result<Self::Value, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_bool<E: de::Error>(self, key: bool) -> Result<Self::Value, E> {
        self.visit_str(&key.to_string())
    }
}

/// Tracks which keys of one mapping were seen, so two spellings of a key are an error.
pub(crate) struct SeenKeys(Vec<&'static str>);

impl SeenKeys {
    pub fn new() -> Self {
        SeenKeys(Vec::new())
    }

    /// Records `key`; errors when it was already set (in any spelling).
    pub fn insert<E: de::Error>(&mut self, key: &'static str) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(keyed_message(
                key,
                &format!(
                    "key {key:?} is set twice (user-id and user_id are the same key): keep one"
                ),
            )));
        }
        self.0.push(key);
        Ok(())
    }
}

/// Reads the next structure key, skipping `_`-prefixed keys and their values.
pub(crate) fn next_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    known: &'static [&'static str],
    seen: &mut SeenKeys,
) -> Result<Option<&'static str>, A::Error> {
    loop {
        match map.next_key_seed(KeySeed { known })? {
            None => return Ok(None),
            Some(None) => {
                map.next_value::<de::IgnoredAny>()?;
            }
            Some(Some(key)) => {
                seen.insert::<A::Error>(key)?;
                return Ok(Some(key));
            }
        }
    }
}
