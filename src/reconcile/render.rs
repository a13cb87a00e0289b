//! The `lithos plan` output: what a reload would do, per instance, as text or JSON.
//!
//! Only field names of specs are ever printed, never their values, so secrets and
//! environment values stay out of terminals and logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::model::spec::{InstanceName, LaunchSpec};
use crate::state::Persisted;

use super::{Action, Desired, Plan, Reason};

/// Change a reload makes to one instance or process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Started (now, or once restart-timeout passes).
    Start,
    /// Stopped and started again with another config.
    Restart,
    /// Stopped for good.
    Stop,
    /// Left as it is.
    Unchanged,
}

impl Change {
    /// Returns the one-character marker of the text output.
    pub fn marker(self) -> char {
        match self {
            Change::Start => '+',
            Change::Restart => '~',
            Change::Stop => '-',
            Change::Unchanged => '=',
        }
    }

    fn word(self) -> &'static str {
        match self {
            Change::Start => "start",
            Change::Restart => "restart",
            Change::Stop => "stop",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One line of the plan output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanEntry {
    /// What happens.
    pub change: Change,
    /// Instance name, `None` for an unknown child.
    pub instance: Option<String>,
    /// Pid of the process stopped, when one is.
    pub pid: Option<i32>,
    /// Reasons of the actions, in plan order, without repeats.
    pub reasons: Vec<Reason>,
    /// Names of the spec fields that differ from the recorded spec; `None` when no spec
    /// was recorded to compare with.
    pub changed: Option<Vec<String>>,
    /// Seconds until the next step, when the instance waits for a deadline.
    pub wait_seconds: Option<f64>,
}

/// Builds the plan entries: one per desired instance, one per other instance the plan
/// touches, and one per unknown child, sorted by instance name.
pub fn plan_entries(
    plan: &Plan,
    desired: &Desired,
    persisted: &Persisted,
    now: Duration,
) -> Vec<PlanEntry> {
    let mut by_name: BTreeMap<&InstanceName, Vec<&Action>> = desired
        .instances
        .keys()
        .map(|name| (name, Vec::new()))
        .collect();
    let mut entries = Vec::new();
    for action in &plan.actions {
        match action.name() {
            Some(name) => by_name.entry(name).or_default().push(action),
            None => entries.extend(unknown_child_entry(action, now)),
        }
    }
    let mut named: Vec<PlanEntry> = by_name
        .into_iter()
        .map(|(name, actions)| instance_entry(name, &actions, desired, persisted, now))
        .collect();
    named.append(&mut entries);
    named
}

fn instance_entry(
    name: &InstanceName,
    actions: &[&Action],
    desired: &Desired,
    persisted: &Persisted,
    now: Duration,
) -> PlanEntry {
    let want = desired.instances.get(name);
    let stops = actions.iter().any(|a| {
        matches!(
            a,
            Action::Signal { .. } | Action::Kill { .. } | Action::Retire { .. }
        )
    }) || actions.iter().any(|a| a.reason() == Reason::AwaitingExit);
    let change = match (want, stops, actions.is_empty()) {
        (None, _, _) => Change::Stop,
        (Some(_), true, _) => Change::Restart,
        (Some(_), false, true) => Change::Unchanged,
        (Some(_), false, false) => Change::Start,
    };
    let mut reasons: Vec<Reason> = Vec::new();
    for action in actions {
        if !reasons.contains(&action.reason()) {
            reasons.push(action.reason());
        }
    }
    let recorded = persisted
        .instances
        .get(name)
        .and_then(|record| record.spec.as_deref());
    let changed = match (change, want) {
        (Change::Restart | Change::Start, Some(want)) => {
            recorded.map(|old| spec_changes(old, &want.spec))
        }
        _ => None,
    };
    PlanEntry {
        change,
        instance: Some(name.to_string()),
        pid: actions.iter().find_map(|a| target_pid(a)),
        reasons,
        changed: changed.filter(|fields| !fields.is_empty()),
        wait_seconds: wait_seconds(actions, now),
    }
}

fn unknown_child_entry(action: &Action, now: Duration) -> Option<PlanEntry> {
    Some(PlanEntry {
        change: Change::Stop,
        instance: None,
        pid: Some(target_pid(action)?),
        reasons: vec![action.reason()],
        changed: None,
        wait_seconds: wait_seconds(&[action], now),
    })
}

fn target_pid(action: &Action) -> Option<i32> {
    match action {
        Action::Signal { target, .. } | Action::Kill { target, .. } => Some(target.pid),
        Action::Spawn { .. } | Action::Retire { .. } | Action::Wait { .. } => None,
    }
}

fn wait_seconds(actions: &[&Action], now: Duration) -> Option<f64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Wait { until, .. } => Some(until.saturating_sub(now).as_secs_f64()),
            _ => None,
        })
        .reduce(f64::min)
}

/// Lists the fields of two specs that differ, sorted: top-level field names of
/// [`LaunchSpec`], with `container` replaced by the names of the container fields that
/// differ.
pub fn spec_changes(old: &LaunchSpec, new: &LaunchSpec) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["spec".to_string()];
    };
    let mut changed = Vec::new();
    diff_fields(&old, &new, &mut |field, old, new| {
        if field == "container" {
            diff_fields(old, new, &mut |inner, _, _| changed.push(inner.to_string()));
        } else {
            changed.push(field.to_string());
        }
    });
    changed.sort();
    changed
}

/// Calls `report` with each key whose values differ between two JSON objects.
fn diff_fields(
    old: &serde_json::Value,
    new: &serde_json::Value,
    report: &mut dyn FnMut(&str, &serde_json::Value, &serde_json::Value),
) {
    let null = serde_json::Value::Null;
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return;
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (before, after) = (old.get(key).unwrap_or(&null), new.get(key).unwrap_or(&null));
        if before != after {
            report(key, before, after);
        }
    }
}

/// Renders the plan as text, one line per entry (`+ start`, `~ restart`, `- stop`,
/// `= unchanged`) and a summary line; unchanged instances are listed only when `verbose`.
pub fn render_plan_text(
    plan: &Plan,
    desired: &Desired,
    persisted: &Persisted,
    now: Duration,
    verbose: bool,
) -> String {
    let entries = plan_entries(plan, desired, persisted, now);
    let mut text = String::new();
    for entry in entries
        .iter()
        .filter(|e| verbose || e.change != Change::Unchanged)
    {
        text.push_str(&entry_line(entry));
        text.push('\n');
    }
    let summary = summary(&entries);
    let _ = writeln!(
        text,
        "{} to start, {} to restart, {} to stop, {} unchanged",
        summary["start"], summary["restart"], summary["stop"], summary["unchanged"]
    );
    text
}

fn entry_line(entry: &PlanEntry) -> String {
    let target = match (&entry.instance, entry.pid) {
        (Some(name), Some(pid)) => format!("{name} (pid {pid})"),
        (Some(name), None) => name.clone(),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => String::from("?"),
    };
    let mut line = format!("{} {} {target}", entry.change.marker(), entry.change.word());
    let mut details: Vec<String> = entry.reasons.iter().map(Reason::to_string).collect();
    if let Some(fields) = &entry.changed {
        details.push(format!("changed: {}", fields.join(", ")));
    }
    if let Some(seconds) = entry.wait_seconds {
        details.push(format!("next step in {seconds:.1} s"));
    }
    if !details.is_empty() {
        let _ = write!(line, " ({})", details.join("; "));
    }
    line
}

fn summary(entries: &[PlanEntry]) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = ["start", "restart", "stop", "unchanged"]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
    for entry in entries {
        *counts.entry(entry.change.word()).or_default() += 1;
    }
    counts
}

/// Renders the plan as a JSON document: `{"has_changes": bool, "summary": {...},
/// "entries": [...]}`, with every entry listed, unchanged ones included.
pub fn render_plan_json(
    plan: &Plan,
    desired: &Desired,
    persisted: &Persisted,
    now: Duration,
) -> serde_json::Value {
    let entries = plan_entries(plan, desired, persisted, now);
    serde_json::json!({
        "has_changes": plan.has_changes(),
        "summary": summary(&entries),
        "entries": entries,
    })
}

/// Output format of [`render_plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    /// [`render_plan_text`].
    Text,
    /// [`render_plan_json`], pretty-printed.
    Json,
}

/// Renders the plan in `format`; `verbose` lists unchanged instances in the text output
/// (the JSON output always lists them).
pub fn render_plan(
    plan: &Plan,
    desired: &Desired,
    persisted: &Persisted,
    now: Duration,
    format: PlanFormat,
    verbose: bool,
) -> String {
    match format {
        PlanFormat::Text => render_plan_text(plan, desired, persisted, now, verbose),
        PlanFormat::Json => {
            let value = render_plan_json(plan, desired, persisted, now);
            let mut text =
                serde_json::to_string_pretty(&value).expect("JSON values always serialize");
            text.push('\n');
            text
        }
    }
}
