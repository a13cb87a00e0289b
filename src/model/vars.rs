//! Variable substitution (`@{name}`) and checks of variable values.

use std::collections::BTreeMap;

use super::tags::VariableType;
use super::units::{format_ranges, in_ranges, IdRange};

/// Built-in variable: the instance name.
pub const BUILTIN_NAME: &str = "lithos:name";
/// Built-in variable: the container config path inside the image.
pub const BUILTIN_CONFIG_FILENAME: &str = "lithos:config_filename";
/// Built-in variable: the program's pid in the container, only as a whole environ value.
pub const BUILTIN_PID: &str = "lithos:pid";

/// A piece of a string with substitutions.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as is.
    Text(&'a str),
    /// A `@{name}` use.
    Var(&'a str),
}

/// Splits text into literal pieces and `@{name}` uses; an unclosed `@{` is an error.
pub fn split_vars(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("{text:?} has an unclosed \"@{{\": write @{{name}}"));
        };
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(format!("{text:?} has an empty \"@{{}}\": write @{{name}}"));
        }
        pieces.push(Piece::Var(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Returns the variable names used in `text`.
pub fn used_vars(text: &str) -> Result<Vec<&str>, String> {
    Ok(split_vars(text)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Var(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Returns true when `text` is exactly `@{lithos:pid}`.
pub fn is_pid_value(text: &str) -> bool {
    matches!(split_vars(text).as_deref(), Ok([Piece::Var(BUILTIN_PID)]))
}

/// Checks one use of a variable: it must be declared or built in, and `lithos:pid` may not
/// appear inside other text.
pub fn check_use(name: &str, declared: &BTreeMap<String, VariableType>) -> Result<(), String> {
    if name == BUILTIN_PID {
        return Err(
            "@{lithos:pid} is allowed only as the whole value of an environ variable".to_string(),
        );
    }
    if name == BUILTIN_NAME || name == BUILTIN_CONFIG_FILENAME || declared.contains_key(name) {
        return Ok(());
    }
    if name.starts_with("lithos:") {
        return Err(format!(
            "unknown built-in variable {name:?}: the built-ins are lithos:name, lithos:config_filename and lithos:pid"
        ));
    }
    Err(format!(
        "variable {name:?} is not declared: add it to variables, for example {name}: !Name"
    ))
}

/// Replaces every `@{name}` in `text` with its value; unknown names are errors.
pub fn substitute(text: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut result = String::new();
    for piece in split_vars(text)? {
        match piece {
            Piece::Text(literal) => result.push_str(literal),
            Piece::Var(name) => match values.get(name) {
                Some(value) => result.push_str(value),
                None => return Err(format!("variable {name:?} has no value")),
            },
        }
    }
    Ok(result)
}

/// Returns true for `^[0-9a-zA-Z_-]+$`.
pub fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Returns true for `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$` with no component starting or
/// ending with `-`.
pub fn is_dotted_name(value: &str) -> bool {
    value
        .split('.')
        .all(|part| is_name(part) && !part.starts_with('-') && !part.ends_with('-'))
}

/// Checks a variable's value against its type; ports also against `allow-tcp-ports`
/// (`None` skips that part, for a port internal to a bridged network).
pub fn check_value(
    name: &str,
    kind: &VariableType,
    value: &str,
    allow_tcp_ports: Option<&[IdRange]>,
) -> Result<(), String> {
    match kind {
        VariableType::TcpPort { .. } => {
            let port: u16 = match value.parse() {
                Ok(port) if port > 0 => port,
                _ => {
                    return Err(format!(
                        "{value:?} is not a TCP port: {name} takes a number from 1 to 65535"
                    ))
                }
            };
            if let Some(allowed) = allow_tcp_ports {
                if !in_ranges(allowed, port.into()) {
                    return Err(format!(
                        "port {port} is not in the sandbox's allow-tcp-ports {}: add it there or pick another port",
                        format_ranges(allowed)
                    ));
                }
            }
            Ok(())
        }
        VariableType::Choice(choices) => {
            if choices.iter().any(|choice| choice == value) {
                Ok(())
            } else {
                Err(format!(
                    "{value:?} is not one of the choices of {name}: use one of {}",
                    choices.join(", ")
                ))
            }
        }
        VariableType::Name => {
            if is_name(value) {
                Ok(())
            } else {
                Err(format!(
                    "{value:?} is not a name: {name} takes letters, digits, _ and -"
                ))
            }
        }
        VariableType::DottedName => {
            if is_dotted_name(value) {
                Ok(())
            } else {
                Err(format!(
                    "{value:?} is not a dotted name: {name} takes dot-separated parts of letters, digits, _ and -, none starting or ending with -"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_substitute() {
        let mut values = BTreeMap::new();
        values.insert("port", "8080".to_string());
        assert_eq!(
            substitute("--listen=:@{port}", &values).unwrap(),
            "--listen=:8080"
        );
        assert_eq!(substitute("plain", &values).unwrap(), "plain");
        assert!(substitute("@{other}", &values).is_err());
        assert!(split_vars("@{open").is_err());
        assert!(split_vars("@{}").is_err());
    }

    #[test]
    fn pid_value_only_whole() {
        assert!(is_pid_value("@{lithos:pid}"));
        assert!(!is_pid_value("pid @{lithos:pid}"));
        assert!(check_use(BUILTIN_PID, &BTreeMap::new()).is_err());
        assert!(check_use(BUILTIN_NAME, &BTreeMap::new()).is_ok());
        assert!(check_use("lithos:nope", &BTreeMap::new()).is_err());
        assert!(check_use("x", &BTreeMap::new()).is_err());
    }

    #[test]
    fn name_regexes() {
        assert!(is_name("a-b_C9"));
        assert!(!is_name("a.b"));
        assert!(!is_name(""));
        assert!(is_dotted_name("a.b-c.d_e"));
        assert!(!is_dotted_name("a..b"));
        assert!(!is_dotted_name("-a.b"));
        assert!(!is_dotted_name("a.b-"));
        assert!(!is_dotted_name(".a"));
    }

    #[test]
    fn values_type_checked() {
        let port = VariableType::TcpPort {
            activation: Default::default(),
        };
        let allowed = [IdRange { start: 77, end: 77 }];
        assert!(check_value("p", &port, "77", Some(&allowed)).is_ok());
        assert!(check_value("p", &port, "78", Some(&allowed)).is_err());
        assert!(check_value("p", &port, "78", None).is_ok());
        assert!(check_value("p", &port, "0", None).is_err());
        assert!(check_value("p", &port, "70000", None).is_err());
        let choice = VariableType::Choice(vec!["ru".into(), "ua".into()]);
        assert!(check_value("c", &choice, "ru", None).is_ok());
        assert!(check_value("c", &choice, "en", None).is_err());
    }
}
