//! `lithos_clean`: lists and removes image directories that no sandbox uses any more.
//!
//! An image (a directory `image-dir/NAME`, `image-dir-levels` deep) is used when the
//! sandbox's current processes file names it, when a config of the sandbox's history in
//! `config-log-dir/SANDBOX.log` names it (as selected by `--history-days` and
//! `--versions-min/--versions-max`), when the sandbox's `used-images-list` names it, when
//! a running container was built from it, or when it changed within `--keep-recent`.
//! Every other image of an image-dir whose sandboxes all have `auto-clean: true` is
//! unused. Nothing is deleted without `--delete-unused`, nothing outside an image-dir,
//! and symlinks are neither followed nor deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use clap::Parser;

use crate::model::files::check_sandbox_file;
use crate::model::{load_master, MasterConfig, Problems};
use crate::state::{parse_knot_args, Persisted};

use super::{is_below, DEFAULT_MASTER};

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done
  1  nothing was done: a config, used-images-list or history file could not be
     read or parsed, or an image-dir could not be listed
  2  invalid command line, or some images or logs could not be deleted";

/// Lists used or unused images and deletes the unused ones.
#[derive(Parser, Debug, Clone)]
#[command(name = "lithos_clean", version, after_help = EXIT_CODES_HELP)]
pub struct Args {
    /// Master config file.
    #[arg(short = 'C', long = "config", value_name = "FILE", default_value = DEFAULT_MASTER)]
    pub config: PathBuf,
    /// Keep images that changed within DELTA (for example 30m, 12h, 7d), so an image
    /// unpacked for a deploy that has not happened yet survives, and the images of every
    /// config that was in use within DELTA, whatever --versions-max and --history-days select.
    #[arg(long = "keep-recent", value_name = "DELTA", value_parser = parse_delta)]
    pub keep_recent: Option<Duration>,
    /// Keep images of configs used no more than DAYS ago (default: every config in the
    /// history, up to --versions-max).
    #[arg(short = 'D', long = "history-days", value_name = "DAYS")]
    pub history_days: Option<u32>,
    /// Keep at least NUM past configs of each sandbox, even older than --history-days.
    #[arg(
        long = "versions-min",
        visible_alias = "vmin",
        value_name = "NUM",
        default_value_t = 0
    )]
    pub versions_min: usize,
    /// Keep at most NUM past configs of each sandbox, even younger than --history-days.
    #[arg(
        long = "versions-max",
        visible_alias = "vmax",
        value_name = "NUM",
        default_value_t = 1000
    )]
    pub versions_max: usize,
    /// Print the used images.
    #[arg(long = "used", group = "action")]
    pub used: bool,
    /// Print the unused images (the default).
    #[arg(long = "unused", group = "action")]
    pub unused: bool,
    /// Delete the unused images, printing a timestamped line for each.
    #[arg(long = "delete-unused", group = "action")]
    pub delete_unused: bool,
    /// Also remove the config history of sandboxes that no longer exist.
    #[arg(long = "clean-logs")]
    pub clean_logs: bool,
    /// Only print what --delete-unused and --clean-logs would remove (the default unless
    /// --delete-unused is given).
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print why each image is kept, and the image dirs that are skipped.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// Parses a duration like `90s`, `30m`, `12h`, `7d` or `2w`; a bare number is seconds.
pub fn parse_delta(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected a number and s, m, h, d or w"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "invalid unit {unit:?} in {text:?}: expected s, m, h, d or w"
            ))
        }
    };
    Ok(Duration::from_secs(number * seconds))
}

/// Error of `lithos_clean`: each stops the run before anything is deleted.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// The master config could not be loaded.
    #[error("failed to load master config {path}:\n{problems}")]
    LoadMaster {
        /// Master config path.
        path: PathBuf,
        /// Problems of the master config.
        problems: Problems,
    },
    /// sandboxes-dir could not be listed.
    #[error("failed to list sandboxes in {path}")]
    ListSandboxes {
        /// sandboxes-dir.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A sandbox config is invalid, so the images it uses are unknown.
    #[error("failed to load sandbox config {path}:\n{problems}")]
    LoadSandbox {
        /// Sandbox config path.
        path: PathBuf,
        /// Problems of the file.
        problems: Problems,
    },
    /// A processes file, used-images-list or history file could not be read or parsed.
    #[error("failed to read {path}: {message}")]
    ReadUsage {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A line of the config history is not `TIME JSON`, so older configs are unknown.
    #[error("invalid line {line} in config history {path}: expected RFC3339-TIME JSON; fix or remove the line")]
    ParseHistory {
        /// History file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
    },
    /// An image-dir could not be listed.
    #[error("failed to list images in {path}")]
    ListImages {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Selection of the past configs of a sandbox whose images are kept.
#[derive(Clone, Copy, Debug)]
pub struct HistoryOptions {
    /// Configs older than this time are dropped (beyond `versions_min`).
    pub since: Option<SystemTime>,
    /// Past configs always kept.
    pub versions_min: usize,
    /// Past configs kept at most.
    pub versions_max: usize,
    /// Images changed after this time, and those of configs in use after it, are kept.
    pub recent_since: Option<SystemTime>,
}

/// Findings of `lithos_clean` for one image-dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDirReport {
    /// The image-dir.
    pub dir: PathBuf,
    /// Sandboxes using it and their `auto-clean`.
    pub sandboxes: BTreeMap<String, bool>,
    /// Used images and why each is kept.
    pub used: BTreeMap<PathBuf, Vec<String>>,
    /// Images nothing uses; empty when the dir is not cleaned.
    pub unused: Vec<PathBuf>,
    /// Why the dir is not cleaned: `auto-clean: false`, or sandboxes that disagree.
    pub skipped: Option<String>,
}

/// Everything `lithos_clean` decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Per image-dir, sorted by path.
    pub dirs: Vec<ImageDirReport>,
    /// Config history files of sandboxes that no longer exist.
    pub stale_logs: Vec<PathBuf>,
}

/// One sandbox as far as cleaning is concerned.
struct SandboxUsage {
    name: String,
    image_dir: PathBuf,
    levels: u32,
    auto_clean: bool,
    /// Image name to reasons.
    images: BTreeMap<String, Vec<String>>,
}

/// Decides which images are used and unused; reads only, deletes nothing.
///
/// `running` contains the image roots of running containers (see [`running_images`]).
pub fn plan(
    master_path: &Path,
    history: &HistoryOptions,
    running: &BTreeMap<PathBuf, String>,
) -> Result<CleanReport, CleanError> {
    let master_path = crate::model::master::absolute(master_path);
    let master = load_master(&master_path).map_err(|problems| CleanError::LoadMaster {
        path: master_path.clone(),
        problems,
    })?;
    let sandboxes = read_sandboxes(&master, history)?;
    let mut by_dir: BTreeMap<PathBuf, Vec<&SandboxUsage>> = BTreeMap::new();
    for sandbox in &sandboxes {
        by_dir
            .entry(sandbox.image_dir.clone())
            .or_default()
            .push(sandbox);
    }
    let mut report = CleanReport::default();
    for (dir, users) in by_dir {
        report.dirs.push(plan_dir(&dir, &users, history, running)?);
    }
    if let Some(log_dir) = &master.config_log_dir {
        let names: BTreeSet<&str> = sandboxes.iter().map(|s| s.name.as_str()).collect();
        report.stale_logs = stale_logs(log_dir, &names);
    }
    Ok(report)
}

fn read_sandboxes(
    master: &MasterConfig,
    history: &HistoryOptions,
) -> Result<Vec<SandboxUsage>, CleanError> {
    let list_error = |source| CleanError::ListSandboxes {
        path: master.sandboxes_dir.clone(),
        source,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&master.sandboxes_dir).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "yaml") && !name.starts_with('.') {
            files.push((name.to_string(), path.clone()));
        }
    }
    files.sort();
    let mut sandboxes = Vec::new();
    for (name, path) in files {
        let config = check_sandbox_file(&path).map_err(|problems| CleanError::LoadSandbox {
            path: path.clone(),
            problems,
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        // A sandbox without image-dir runs nothing, so it has nothing to clean.
        let Some(image_dir) = config
            .image_dir
            .as_ref()
            .map(|dir| real_path(&base.join(dir)))
        else {
            continue;
        };
        let mut sandbox = SandboxUsage {
            name: name.clone(),
            image_dir,
            levels: config.image_dir_levels.max(1),
            auto_clean: config.auto_clean,
            images: BTreeMap::new(),
        };
        let processes = match &config.config_file {
            Some(file) => base.join(file),
            None => master.processes_dir.join(format!("{name}.yaml")),
        };
        add_current(&mut sandbox, &processes)?;
        if let Some(list) = &config.used_images_list {
            add_list(&mut sandbox, &base.join(list))?;
        }
        if let Some(log_dir) = &master.config_log_dir {
            add_history(&mut sandbox, log_dir, history)?;
        }
        sandboxes.push(sandbox);
    }
    Ok(sandboxes)
}

/// Returns the `image` of every entry of a processes config (YAML or its JSON copy).
fn entry_images(config: &serde_json::Value) -> Vec<String> {
    let Some(entries) = config.as_object() else {
        return Vec::new();
    };
    entries
        .values()
        .filter_map(|entry| entry.get("image")?.as_str())
        .map(str::to_string)
        .collect()
}

fn use_image(sandbox: &mut SandboxUsage, image: String, reason: String) {
    let reasons = sandbox.images.entry(image).or_default();
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
}

fn add_current(sandbox: &mut SandboxUsage, processes: &Path) -> Result<(), CleanError> {
    let text = match fs::read_to_string(processes) {
        Ok(text) => text,
        // No processes file: the sandbox runs nothing now, its history may still count.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(CleanError::ReadUsage {
                path: processes.to_path_buf(),
                message: error.to_string(),
            })
        }
    };
    let value: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_yaml::from_str(&text).map_err(|error| CleanError::ReadUsage {
            path: processes.to_path_buf(),
            message: error.to_string(),
        })?
    };
    let reason = format!("current config of sandbox {}", sandbox.name);
    for image in entry_images(&value) {
        use_image(sandbox, image, reason.clone());
    }
    Ok(())
}

fn add_list(sandbox: &mut SandboxUsage, list: &Path) -> Result<(), CleanError> {
    let text = fs::read_to_string(list).map_err(|error| CleanError::ReadUsage {
        path: list.to_path_buf(),
        message: error.to_string(),
    })?;
    let reason = format!("used-images-list {}", list.display());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        use_image(sandbox, line.to_string(), reason.clone());
    }
    Ok(())
}

/// One config of a sandbox's history.
struct PastConfig {
    time: DateTime<Utc>,
    config: serde_json::Value,
}

/// Adds the images of the selected past configs in `config-log-dir/SANDBOX.log` (and its
/// rotated `SANDBOX.log.1`, which is older).
fn add_history(
    sandbox: &mut SandboxUsage,
    log_dir: &Path,
    options: &HistoryOptions,
) -> Result<(), CleanError> {
    let all = read_history(&sandbox.name, log_dir)?;
    let mut selected = vec![false; all.len()];
    // The last --versions-max configs, minus those older than --history-days beyond
    // --versions-min.
    let first = all.len().saturating_sub(options.versions_max);
    let since: Option<DateTime<Utc>> = options.since.map(Into::into);
    for (index, past) in all.iter().enumerate().skip(first) {
        let kept_versions = all.len() - index <= options.versions_min;
        let young = since.is_none_or(|since| past.time >= since);
        selected[index] = young || kept_versions;
    }
    // With --keep-recent, every config still in use at some point within DELTA: its
    // successor was loaded after the cutoff, or it is the last one.
    if let Some(recent) = options.recent_since {
        let recent: DateTime<Utc> = recent.into();
        for (index, keep) in selected.iter_mut().enumerate() {
            let replaced_at = all.get(index + 1).map(|next| next.time);
            if replaced_at.is_none_or(|time| time >= recent) {
                *keep = true;
            }
        }
    }
    for (past, _) in all.iter().zip(&selected).filter(|(_, keep)| **keep) {
        let reason = format!(
            "config of sandbox {} loaded at {}",
            sandbox.name,
            past.time.format("%Y-%m-%dT%H:%M:%SZ")
        );
        for image in entry_images(&past.config) {
            use_image(sandbox, image, reason.clone());
        }
    }
    Ok(())
}

/// Reads the history of `sandbox`, oldest first, one entry per change of its config.
fn read_history(sandbox: &str, log_dir: &Path) -> Result<Vec<PastConfig>, CleanError> {
    let mut configs: Vec<PastConfig> = Vec::new();
    for file in [
        log_dir.join(format!("{sandbox}.log.1")),
        log_dir.join(format!("{sandbox}.log")),
    ] {
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(CleanError::ReadUsage {
                    path: file,
                    message: error.to_string(),
                })
            }
        };
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let past = parse_history_line(line).ok_or_else(|| CleanError::ParseHistory {
                path: file.clone(),
                line: index + 1,
            })?;
            // Loads without a change repeat the same config; they are one version.
            if configs
                .last()
                .is_some_and(|last| last.config == past.config)
            {
                continue;
            }
            configs.push(past);
        }
    }
    Ok(configs)
}

fn parse_history_line(line: &str) -> Option<PastConfig> {
    let (time, json) = line.split_once(' ')?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let config = serde_json::from_str(json).ok()?;
    Some(PastConfig { time, config })
}

fn plan_dir(
    dir: &Path,
    users: &[&SandboxUsage],
    history: &HistoryOptions,
    running: &BTreeMap<PathBuf, String>,
) -> Result<ImageDirReport, CleanError> {
    let sandboxes: BTreeMap<String, bool> = users
        .iter()
        .map(|s| (s.name.clone(), s.auto_clean))
        .collect();
    let mut used: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for sandbox in users {
        for (image, reasons) in &sandbox.images {
            used.entry(dir.join(image))
                .or_default()
                .extend(reasons.iter().cloned());
        }
    }
    for (root, name) in running {
        let root = real_path(root);
        if is_below(&root, dir) {
            used.entry(root)
                .or_default()
                .push(format!("running container {name}"));
        }
    }
    let mut report = ImageDirReport {
        dir: dir.to_path_buf(),
        sandboxes: sandboxes.clone(),
        used,
        unused: Vec::new(),
        skipped: None,
    };
    let cleaned = sandboxes.values().filter(|&&on| on).count();
    if cleaned == 0 {
        report.skipped = Some("auto-clean is false".into());
        return Ok(report);
    }
    if cleaned != sandboxes.len() {
        let list: Vec<String> = sandboxes
            .iter()
            .map(|(name, on)| format!("{name} (auto-clean {on})"))
            .collect();
        report.skipped = Some(format!(
            "shared by sandboxes with different auto-clean: {}",
            list.join(", ")
        ));
        return Ok(report);
    }
    if !dir.exists() {
        report.skipped = Some("does not exist".into());
        return Ok(report);
    }
    let levels = users.iter().map(|s| s.levels).max().unwrap_or(1);
    for image in list_images(dir, levels)? {
        if report.used.contains_key(&image) {
            continue;
        }
        if let Some(since) = history.recent_since {
            let modified = fs::symlink_metadata(&image).and_then(|m| m.modified());
            if modified.is_ok_and(|time| time >= since) {
                report
                    .used
                    .entry(image)
                    .or_default()
                    .push("changed within --keep-recent".into());
                continue;
            }
        }
        report.unused.push(image);
    }
    Ok(report)
}

/// Lists the image directories `levels` deep below `dir`, skipping symlinks and names
/// starting with a dot.
fn list_images(dir: &Path, levels: u32) -> Result<Vec<PathBuf>, CleanError> {
    let list_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CleanError::ListImages { path, source }
    };
    let mut current = vec![dir.to_path_buf()];
    for _ in 0..levels {
        let mut next = Vec::new();
        for parent in &current {
            for entry in fs::read_dir(parent).map_err(list_error(parent))? {
                let entry = entry.map_err(list_error(parent))?;
                // DirEntry::file_type does not follow symlinks.
                let is_dir = entry.file_type().map_err(list_error(parent))?.is_dir();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if is_dir && !hidden {
                    next.push(entry.path());
                }
            }
        }
        current = next;
    }
    current.sort();
    Ok(current)
}

/// Returns the history files in `log_dir` of sandboxes not in `names`.
fn stale_logs(log_dir: &Path, names: &BTreeSet<&str>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(log_dir) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let sandbox = file
                .strip_suffix(".log")
                .or_else(|| file.strip_suffix(".log.1"));
            sandbox.is_some_and(|name| !names.contains(name))
        })
        .collect();
    stale.sort();
    stale
}

/// Returns the image root of every running container, keyed by path, with its name.
///
/// A knot's root is the bind mount at `/` of its mount table after pivot_root. It is
/// translated to a host path through the caller's mount table. The image roots of
/// recorded instances come from the tree's `state.bin`.
pub fn running_images(
    proc_root: &Path,
    master: Option<&MasterConfig>,
) -> BTreeMap<PathBuf, String> {
    let mut images = BTreeMap::new();
    if let Some(master) = master {
        let (persisted, _) = Persisted::load(&master.runtime_dir.join("state.bin"));
        for (name, record) in &persisted.instances {
            if let (Some(_), Some(spec)) = (&record.process, &record.spec) {
                images.insert(real_path(&spec.image_root), name.to_string());
            }
        }
    }
    let host_mounts = fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return images;
    };
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        let Ok(cmdline) = fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(knot) = parse_knot_args(&args) else {
            continue;
        };
        let Ok(mounts) = fs::read_to_string(dir.join("mountinfo")) else {
            continue;
        };
        if let Some(root) = container_root(&mounts, &host_mounts) {
            images.insert(root, knot.name);
        }
    }
    images
}

/// Resolves symlinks and `..` of an existing path; a missing one is only cleaned of `.`
/// and `..` lexically. Image paths are compared after this, so `a/../images` and
/// `images` are one image-dir.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = fs::canonicalize(path) {
        return real;
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

/// Splits a mountinfo line into (device, root, mount point).
fn mount_fields(line: &str) -> Option<(&str, &str, &str)> {
    let mut fields = line.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let device = fields.next()?;
    let root = fields.next()?;
    let mount_point = fields.next()?;
    Some((device, root, mount_point))
}

/// Finds the host path of the mount at `/` of a container's mount table.
fn container_root(container: &str, host: &str) -> Option<PathBuf> {
    let (device, root, _) = container
        .lines()
        .filter_map(mount_fields)
        .rfind(|(_, _, point)| *point == "/")?;
    host.lines()
        .filter_map(mount_fields)
        .filter(|(host_device, _, _)| *host_device == device)
        // NOTE: when the device is mounted at several places, the first one is taken,
        // which may not be the path the sandbox config names.
        .find_map(|(_, host_root, point)| {
            let rest = Path::new(root).strip_prefix(host_root).ok()?;
            Some(Path::new(point).join(rest))
        })
}

/// Runs `lithos_clean`: 0 done, 1 nothing was done because of an error, 2 some removals
/// failed.
pub fn run(args: Args) -> ExitCode {
    let now = SystemTime::now();
    let history = HistoryOptions {
        since: args
            .history_days
            .map(|days| now - Duration::from_secs(u64::from(days) * 86_400)),
        versions_min: args.versions_min,
        versions_max: args.versions_max,
        recent_since: args.keep_recent.map(|delta| now - delta),
    };
    let master = load_master(&crate::model::master::absolute(&args.config)).ok();
    let running = running_images(Path::new("/proc"), master.as_ref());
    let report = match plan(&args.config, &history, &running) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("lithos_clean: {}", super::cmd::error_chain(&error));
            return ExitCode::from(1);
        }
    };
    print_skipped(&report, args.verbose);
    if args.used {
        print_used(&report, args.verbose);
        return ExitCode::SUCCESS;
    }
    if args.verbose {
        for dir in report.dirs.iter().filter(|d| d.skipped.is_none()) {
            for (image, reasons) in &dir.used {
                println!("keep {} ({})", image.display(), reasons.join("; "));
            }
        }
    }

    let delete = args.delete_unused && !args.dry_run;
    let mut failed = false;
    for dir in &report.dirs {
        for image in &dir.unused {
            if delete {
                failed |= !remove_image(image, &dir.dir);
            } else {
                println!("{}", image.display());
            }
        }
    }
    if args.clean_logs {
        for log in &report.stale_logs {
            if delete {
                failed |= !remove_log(log);
            } else {
                println!("{}", log.display());
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the image-dirs that are not cleaned: a warning for sandboxes that disagree on
/// auto-clean (an operator has to decide), the others with `-v` only.
fn print_skipped(report: &CleanReport, verbose: bool) {
    for dir in &report.dirs {
        let Some(reason) = &dir.skipped else {
            continue;
        };
        if reason.starts_with("shared") {
            eprintln!(
                "lithos_clean: warning: skipping {}: {reason}",
                dir.dir.display()
            );
        } else if verbose {
            println!("skip {}: {reason}", dir.dir.display());
        }
    }
}

fn print_used(report: &CleanReport, verbose: bool) {
    for dir in &report.dirs {
        for (image, reasons) in &dir.used {
            if verbose {
                println!("{} ({})", image.display(), reasons.join("; "));
            } else {
                println!("{}", image.display());
            }
        }
    }
}

fn timestamp() -> impl std::fmt::Display {
    Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
}

/// Deletes the config history of a removed sandbox; returns false when that failed.
fn remove_log(log: &Path) -> bool {
    match fs::remove_file(log) {
        Ok(()) => {
            println!("{} deleted config history {}", timestamp(), log.display());
            true
        }
        Err(error) => {
            eprintln!(
                "{} failed to delete {}: {error}",
                timestamp(),
                log.display()
            );
            false
        }
    }
}

/// Deletes one image, re-checking that it is a real directory below `image_dir`.
fn remove_image(image: &Path, image_dir: &Path) -> bool {
    let stamp = timestamp;
    let is_real_dir = fs::symlink_metadata(image).is_ok_and(|m| m.file_type().is_dir());
    if !is_below(image, image_dir) || !is_real_dir {
        eprintln!(
            "{} refusing to delete {}: not a directory below {}",
            stamp(),
            image.display(),
            image_dir.display()
        );
        return false;
    }
    // std's remove_dir_all unlinks symlinks inside the tree without following them.
    match fs::remove_dir_all(image) {
        Ok(()) => {
            println!("{} deleted {}", stamp(), image.display());
            true
        }
        Err(error) => {
            eprintln!("{} failed to delete {}: {error}", stamp(), image.display());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_units() {
        assert_eq!(parse_delta("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_delta("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_delta("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_delta("2x").is_err());
        assert!(parse_delta("h").is_err());
    }

    #[test]
    fn root_through_host_mounts() {
        let container = "100 90 8:1 /data/images/app / ro,relatime - ext4 /dev/sda1 rw\n";
        let host = "20 1 8:1 / /srv rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            container_root(container, host),
            Some(PathBuf::from("/srv/data/images/app"))
        );
    }

    #[test]
    fn history_line_parses() {
        let past = parse_history_line(r#"2024-01-02T03:04:05Z {"a": {"image": "x"}}"#).unwrap();
        assert_eq!(entry_images(&past.config), ["x"]);
        assert!(parse_history_line("garbage").is_none());
    }
}
