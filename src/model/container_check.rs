//! Checks of a container config that need no sandbox: paths, ports, variables and secrets.

use super::container::ContainerConfig;
use super::problems::{FileContext, Problems};
use super::read::parse_text;
use super::secrets_check::check_secret_values;
use super::spec::Volume;
use super::tags::{Activation, VariableType};
use super::vars::{check_use, is_pid_value, used_vars};

/// Environment variables that the systemd activation shortcut sets.
pub const SYSTEMD_VARS: [&str; 3] = ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"];

/// Parses and checks container config text; `require` reports a missing `executable`.
pub(crate) fn parse_container_text(
    context: &FileContext,
    require: bool,
) -> Result<ContainerConfig, Problems> {
    let config: ContainerConfig = parse_text(context, context.text).map_err(Problems::from)?;
    let problems = check_container(&config, context, require);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Checks what a container config can check alone.
pub(crate) fn check_container(
    config: &ContainerConfig,
    context: &FileContext,
    require: bool,
) -> Problems {
    let mut problems = Problems::default();
    match &config.executable {
        None if require => problems.push(context.file_problem(
            "missing key \"executable\": write executable: /absolute/path/to/program",
        )),
        Some(executable) if !executable.starts_with('/') => problems.push(context.problem(
            "executable",
            format!("{executable:?} is relative: executable must be an absolute path"),
        )),
        _ => {}
    }
    if let Some(workdir) = &config.workdir {
        if !workdir.is_absolute() {
            problems.push(context.problem(
                "workdir",
                format!(
                    "{:?} is relative: workdir must be absolute",
                    workdir.display().to_string()
                ),
            ));
        }
    }
    if let Some(file) = &config.stdout_stderr_file {
        if !file.is_absolute() {
            problems.push(context.problem(
                "stdout-stderr-file",
                "stdout-stderr-file must be an absolute path inside the container",
            ));
        }
    }
    if let Some(shares) = config.cpu_shares {
        if !(2..=262_144).contains(&shares) {
            problems.push(context.problem(
                "cpu-shares",
                format!("{shares} is out of range: cpu-shares lies between 2 and 262144"),
            ));
        }
    }
    check_volumes(config, context, &mut problems);
    check_ports(config, context, &mut problems);
    check_variables(config, context, &mut problems);
    check_secrets(config, context, &mut problems);
    problems
}

fn check_volumes(config: &ContainerConfig, context: &FileContext, problems: &mut Problems) {
    for (mount_point, volume) in &config.volumes {
        let key = format!("volumes.{}", mount_point.display());
        if !mount_point.is_absolute() {
            problems.push(context.problem(
                &key,
                format!(
                    "mount point {:?} must be an absolute path",
                    mount_point.display().to_string()
                ),
            ));
        }
        if has_parent_dir(mount_point) {
            problems.push(context.problem(
                &key,
                format!(
                    "mount point {:?} contains '..': write the path without it",
                    mount_point.display().to_string()
                ),
            ));
        }
        let path = match volume {
            Volume::Readonly { path }
            | Volume::Persistent { path, .. }
            | Volume::Statedir { path, .. } => path,
            Volume::Tmpfs { .. } => continue,
        };
        if !path.is_absolute() {
            problems.push(context.problem(
                &key,
                format!(
                    "volume path {:?} must be absolute",
                    path.display().to_string()
                ),
            ));
        }
        // A '..' would pass the prefix check against readonly-paths and writable-paths
        // while naming a host directory outside them.
        if has_parent_dir(path) {
            problems.push(context.problem(
                &key,
                format!(
                    "volume path {:?} contains '..': write the path without it",
                    path.display().to_string()
                ),
            ));
        }
    }
}

fn has_parent_dir(path: &std::path::Path) -> bool {
    path.components()
        .any(|part| part == std::path::Component::ParentDir)
}

fn check_ports(config: &ContainerConfig, context: &FileContext, problems: &mut Problems) {
    let mut fds = std::collections::BTreeMap::new();
    for (port, settings) in &config.tcp_ports {
        let key = format!("tcp-ports.{port}");
        match settings.fd {
            None => problems.push(context.problem(&key, "missing key \"fd\": write fd: 3")),
            Some(fd) if fd < 0 => problems.push(context.problem(
                &format!("{key}.fd"),
                format!("{fd} is not a file descriptor"),
            )),
            Some(fd @ (1 | 2)) => problems.push(context.problem(
                &format!("{key}.fd"),
                format!("fd {fd} is stdout or stderr: use 3 or above"),
            )),
            Some(fd) => {
                if let Some(other) = fds.insert(fd, port) {
                    problems.push(context.problem(
                        &format!("{key}.fd"),
                        format!("fd {fd} is also used by port {other}: give each port its own fd"),
                    ));
                }
            }
        }
        match used_vars(port) {
            Err(message) => problems.push(context.problem(&key, message)),
            Ok(uses) if uses.is_empty() => {
                if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
                    problems.push(context.problem(&key, format!("{port:?} is not a TCP port: write a number from 1 to 65535 or @{{variable}}")));
                }
            }
            Ok(uses) => {
                for name in uses {
                    if let Err(message) = check_use(name, &config.variables) {
                        problems.push(context.problem(&key, message));
                    }
                }
            }
        }
    }
}

fn check_variables(config: &ContainerConfig, context: &FileContext, problems: &mut Problems) {
    for (index, argument) in config.arguments.iter().enumerate() {
        check_uses(
            config,
            context,
            &format!("arguments[{index}]"),
            argument,
            problems,
        );
    }
    for (name, value) in &config.environ {
        if is_pid_value(value) {
            continue;
        }
        check_uses(config, context, &format!("environ.{name}"), value, problems);
    }
    let systemd: Vec<&String> = config
        .variables
        .iter()
        .filter(|(_, kind)| {
            matches!(
                kind,
                VariableType::TcpPort {
                    activation: Activation::Systemd
                }
            )
        })
        .map(|(name, _)| name)
        .collect();
    if !systemd.is_empty() {
        for name in SYSTEMD_VARS {
            if config.environ.contains_key(name) {
                problems.push(context.problem(
                    &format!("environ.{name}"),
                    format!(
                        "{name} is set by the systemd activation of {}: remove it from environ",
                        systemd[0]
                    ),
                ));
            }
        }
        for (fd, port) in systemd.iter().enumerate() {
            let fd = fd as i32 + 3;
            if let Some((written, _)) = config.tcp_ports.iter().find(|(_, t)| t.fd == Some(fd)) {
                problems.push(context.problem(
                    &format!("tcp-ports.{written}.fd"),
                    format!(
                        "fd {fd} is taken by the systemd activation of {port}: pick another fd"
                    ),
                ));
            }
        }
    }
}

fn check_uses(
    config: &ContainerConfig,
    context: &FileContext,
    key: &str,
    text: &str,
    problems: &mut Problems,
) {
    match used_vars(text) {
        Err(message) => problems.push(context.problem(key, message)),
        Ok(uses) => {
            for name in uses {
                if let Err(message) = check_use(name, &config.variables) {
                    problems.push(context.problem(key, message));
                }
            }
        }
    }
}

fn check_secrets(config: &ContainerConfig, context: &FileContext, problems: &mut Problems) {
    if config.secret_environ.is_some() && config.secret_environ_file.is_some() {
        problems.push(context.problem(
            "secret-environ-file",
            "secret-environ and secret-environ-file exclude each other: keep one",
        ));
    }
    if let Some(secrets) = &config.secret_environ {
        check_secret_values(secrets, context, "secret-environ.", problems);
        for name in secrets.keys() {
            if config.environ.contains_key(name) {
                problems.push(context.problem(
                    &format!("secret-environ.{name}"),
                    format!("{name} is set in both environ and secret-environ: keep one"),
                ));
            }
        }
    }
}

/// Parses a secret-environ-file: a mapping of names to one encrypted value or a list.
pub(crate) fn parse_secret_file(
    context: &FileContext,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, Problems> {
    let secrets: super::container::SecretEnviron =
        parse_text(context, context.text).map_err(Problems::from)?;
    let mut problems = Problems::default();
    check_secret_values(&secrets.0, context, "", &mut problems);
    if problems.is_empty() {
        Ok(secrets.0)
    } else {
        Err(problems)
    }
}
