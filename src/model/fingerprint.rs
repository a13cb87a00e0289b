//! The fingerprint of an instance: a hash of everything whose change needs a restart.

use blake2::{Blake2s256, Digest};
use serde_json::Value;

use super::spec::LaunchSpec;

/// Version of the canonical encoding. It is part of the hashed text, so a new encoding gets a
/// new version and changes every fingerprint once, on purpose.
pub const FINGERPRINT_VERSION: u32 = 1;

/// Fields of the container that do not need a restart when they change: timeouts and exit
/// codes are read by the supervisor at the next decision.
const CONTAINER_EXCLUDED: [&str; 3] = ["restart_timeout", "kill_timeout", "normal_exit_codes"];
/// Socket options that cannot change once the socket is bound.
const PORT_EXCLUDED: [&str; 3] = ["listen_backlog", "reuse_addr", "set_non_block"];

/// Returns the hex fingerprint of an instantiated spec.
///
/// The spec goes through JSON with sorted keys, so the order of keys in the config files
/// and of maps never matters. Restart and kill timeouts, normal exit codes and the socket
/// options above are left out. The instance count and metadata are not part of a spec.
/// Encrypted secrets and each port's number, host and fd are included.
pub fn fingerprint(spec: &LaunchSpec) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(container) = value.get_mut("container").and_then(Value::as_object_mut) {
        for key in CONTAINER_EXCLUDED {
            container.remove(key);
        }
        if let Some(ports) = container
            .get_mut("tcp_ports")
            .and_then(Value::as_object_mut)
        {
            for port in ports.values_mut().filter_map(Value::as_object_mut) {
                for key in PORT_EXCLUDED {
                    port.remove(key);
                }
            }
        }
    }
    let mut canonical = format!("lithos-fingerprint-v{FINGERPRINT_VERSION}\n");
    write_canonical(&value, &mut canonical);
    let digest = Blake2s256::digest(canonical.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes JSON with object keys sorted, independent of serde_json's map order.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
