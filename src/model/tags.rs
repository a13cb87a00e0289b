//! Tagged values: volumes (`!Readonly`, `!Persistent`, `!Statedir`, `!Tmpfs`) and variable
//! types (`!TcpPort`, `!Choice`, `!Name`, `!DottedName`).

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, VariantAccess, Visitor};
use serde::Serialize;

use super::collections::List;
use super::scalar::{next_key, Opt, SeenKeys, P};
use super::spec::Volume;

/// Default size of a `!Tmpfs` volume: 100 MiB, as in the original.
pub const DEFAULT_TMPFS_SIZE: u64 = 100 << 20;
/// Default mode of volume directories.
pub const DEFAULT_VOLUME_MODE: u32 = 0o777;
/// Largest mode a volume accepts.
pub const MAX_VOLUME_MODE: u32 = 0o7777;

/// A volume as written, wrapped so it can be deserialized from a tagged value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VolumeDef(pub Volume);

#[derive(Default)]
struct PersistentFields {
    path: Option<PathBuf>,
    mkdir: bool,
    mode: Option<u32>,
    user: u32,
    group: u32,
}

#[derive(Default)]
struct StatedirFields {
    path: Option<PathBuf>,
    mode: Option<u32>,
    user: u32,
    group: u32,
}

#[derive(Default)]
struct TmpfsFields {
    size: Option<u64>,
    mode: Option<u32>,
}

const PERSISTENT_KEYS: &[&str] = &["path", "mkdir", "mode", "user", "group"];
const STATEDIR_KEYS: &[&str] = &["path", "mode", "user", "group"];
const TMPFS_KEYS: &[&str] = &["size", "mode"];

fn check_mode<E: de::Error>(mode: Option<u32>) -> Result<u32, E> {
    let mode = mode.unwrap_or(DEFAULT_VOLUME_MODE);
    if mode > MAX_VOLUME_MODE {
        return Err(E::custom(format!(
            "mode {mode:#o} is too large: write an octal mode like 0o755 (at most 0o7777)"
        )));
    }
    Ok(mode)
}

fn visit_persistent<'de, A: MapAccess<'de>>(mut map: A) -> Result<PersistentFields, A::Error> {
    let mut fields = PersistentFields::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, PERSISTENT_KEYS, &mut seen)? {
        match key {
            "path" => fields.path = Some(map.next_value::<P<PathBuf>>()?.0),
            "mkdir" => fields.mkdir = map.next_value::<P<bool>>()?.0,
            "mode" => fields.mode = Some(map.next_value::<P<u32>>()?.0),
            "user" => fields.user = map.next_value::<P<u32>>()?.0,
            "group" => fields.group = map.next_value::<P<u32>>()?.0,
            _ => unreachable!(),
        }
    }
    Ok(fields)
}

fn visit_statedir<'de, A: MapAccess<'de>>(mut map: A) -> Result<StatedirFields, A::Error> {
    let mut fields = StatedirFields::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, STATEDIR_KEYS, &mut seen)? {
        match key {
            "path" => fields.path = Some(map.next_value::<P<PathBuf>>()?.0),
            "mode" => fields.mode = Some(map.next_value::<P<u32>>()?.0),
            "user" => fields.user = map.next_value::<P<u32>>()?.0,
            "group" => fields.group = map.next_value::<P<u32>>()?.0,
            _ => unreachable!(),
        }
    }
    Ok(fields)
}

fn visit_tmpfs<'de, A: MapAccess<'de>>(mut map: A) -> Result<TmpfsFields, A::Error> {
    let mut fields = TmpfsFields::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, TMPFS_KEYS, &mut seen)? {
        match key {
            "size" => fields.size = Some(map.next_value::<P<u64>>()?.0),
            "mode" => fields.mode = Some(map.next_value::<P<u32>>()?.0),
            _ => unreachable!(),
        }
    }
    Ok(fields)
}

macro_rules! tag_fields {
    ($wrapper:ident, $fields:ty, $tag:literal, $example:literal, $visit:path) => {
        struct $wrapper($fields);

        impl<'de> Deserialize<'de> for $wrapper {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor;

                impl<'de> Visitor<'de> for FieldsVisitor {
                    type Value = $fields;

                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "a mapping after {}", $tag)
                    }

                    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                        Ok(<$fields>::default())
                    }

                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                        $visit(map)
                    }

                    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                        Err(E::custom(format!(
                            "{} takes a mapping, not {value:?}: write {} {{{}: {value}}}",
                            $tag, $tag, $example
                        )))
                    }

                    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                        self.visit_str(&value.to_string())
                    }

                    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                        self.visit_str(&value.to_string())
                    }
                }

                deserializer.deserialize_any(FieldsVisitor).map($wrapper)
            }
        }
    };
}

tag_fields!(
    PersistentTag,
    PersistentFields,
    "!Persistent",
    "path",
    visit_persistent
);
tag_fields!(
    StatedirTag,
    StatedirFields,
    "!Statedir",
    "path",
    visit_statedir
);
tag_fields!(TmpfsTag, TmpfsFields, "!Tmpfs", "size", visit_tmpfs);

const VOLUME_TAGS: &[&str] = &["Readonly", "Persistent", "Statedir", "Tmpfs"];

struct VolumeVisitor;

impl<'de> Visitor<'de> for VolumeVisitor {
    type Value = VolumeDef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a volume: !Readonly, !Persistent, !Statedir or !Tmpfs")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let (tag, variant) = data.variant::<String>()?;
        let volume = match tag.as_str() {
            "Readonly" => Volume::Readonly {
                path: variant.newtype_variant::<P<PathBuf>>()?.0,
            },
            "Persistent" => {
                let PersistentTag(fields) = variant.newtype_variant()?;
                let Some(path) = fields.path else {
                    return Err(de::Error::custom(
                        "!Persistent needs a path: write !Persistent {path: /virtual/dir}",
                    ));
                };
                Volume::Persistent {
                    path,
                    mkdir: fields.mkdir,
                    mode: check_mode(fields.mode)?,
                    user: fields.user,
                    group: fields.group,
                }
            }
            "Statedir" => {
                let StatedirTag(fields) = variant.newtype_variant()?;
                Volume::Statedir {
                    path: fields.path.unwrap_or_else(|| PathBuf::from("/")),
                    mode: check_mode(fields.mode)?,
                    user: fields.user,
                    group: fields.group,
                }
            }
            "Tmpfs" => {
                let TmpfsTag(fields) = variant.newtype_variant()?;
                Volume::Tmpfs {
                    size: fields.size.unwrap_or(DEFAULT_TMPFS_SIZE),
                    mode: check_mode(fields.mode)?,
                }
            }
            other => {
                return Err(de::Error::custom(format!(
                    "{other:?} is not a volume: write !Readonly /path, !Persistent {{path: /path}}, !Statedir {{}} or !Tmpfs {{size: 100Mi}}"
                )))
            }
        };
        Ok(VolumeDef(volume))
    }
}

impl<'de> Deserialize<'de> for VolumeDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum("Volume", VOLUME_TAGS, VolumeVisitor)
    }
}

/// Activation mode of a `!TcpPort` variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
pub enum Activation {
    /// The container config's `tcp-ports` names the port.
    #[default]
    None,
    /// The port is added at fds 3, 4, ... with the systemd `LISTEN_*` variables.
    Systemd,
}

/// Type of a variable declared in a container config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum VariableType {
    /// A TCP port within the sandbox's `allow-tcp-ports`.
    TcpPort {
        /// Activation mode of the port.
        activation: Activation,
    },
    /// One of a fixed set of strings.
    Choice(Vec<String>),
    /// A value matching `^[0-9a-zA-Z_-]+$`.
    Name,
    /// Dot-separated names, no component starting or ending with a dash.
    DottedName,
}

#[derive(Default)]
struct TcpPortFields {
    activation: Activation,
}

const TCP_PORT_VAR_KEYS: &[&str] = &["activation"];

fn visit_tcp_port_var<'de, A: MapAccess<'de>>(mut map: A) -> Result<TcpPortFields, A::Error> {
    let mut fields = TcpPortFields::default();
    let mut seen = SeenKeys::new();
    while let Some(key) = next_key(&mut map, TCP_PORT_VAR_KEYS, &mut seen)? {
        let value = map.next_value::<Opt<String>>()?.0;
        fields.activation = match value.as_deref() {
            None | Some("none") => Activation::None,
            Some("systemd") => Activation::Systemd,
            Some(other) => {
                return Err(de::Error::custom(super::problems::keyed_message(
                    key,
                    &format!("{other:?} is not an activation: write systemd or none"),
                )))
            }
        };
    }
    Ok(fields)
}

tag_fields!(
    TcpPortTag,
    TcpPortFields,
    "!TcpPort",
    "activation",
    visit_tcp_port_var
);

const VARIABLE_TAGS: &[&str] = &["TcpPort", "Choice", "Name", "DottedName"];

struct VariableVisitor;

impl<'de> Visitor<'de> for VariableVisitor {
    type Value = VariableType;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a variable type: !TcpPort, !Choice [..], !Name or !DottedName")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let (tag, variant) = data.variant::<String>()?;
        match tag.as_str() {
            "TcpPort" => {
                let TcpPortTag(fields) = variant.newtype_variant()?;
                Ok(VariableType::TcpPort {
                    activation: fields.activation,
                })
            }
            "Choice" => {
                let List(choices) = variant.newtype_variant::<List<String>>()?;
                if choices.is_empty() {
                    return Err(de::Error::custom("!Choice needs at least one value: write !Choice [a, b]"));
                }
                Ok(VariableType::Choice(choices))
            }
            "Name" => variant.newtype_variant::<Opt<String>>().and_then(|value| match value.0 {
                None => Ok(VariableType::Name),
                Some(_) => Err(de::Error::custom("!Name takes no value: write !Name")),
            }),
            "DottedName" => variant.newtype_variant::<Opt<String>>().and_then(|value| match value.0 {
                None => Ok(VariableType::DottedName),
                Some(_) => Err(de::Error::custom("!DottedName takes no value: write !DottedName")),
            }),
            other => Err(de::Error::custom(format!(
                "{other:?} is not a variable type: write !TcpPort, !Choice [a, b], !Name or !DottedName"
            ))),
        }
    }
}

/// A variable type as written, deserialized from a tagged value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VariableDef(pub VariableType);

impl<'de> Deserialize<'de> for VariableDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_enum("Variable", VARIABLE_TAGS, VariableVisitor)
            .map(VariableDef)
    }
}
