//! The `lithos plan` renderers: text lines, JSON fields, and that secret values never
//! appear.

use std::sync::Arc;
use std::time::Duration;

use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{
    reconcile, render_plan, render_plan_json, render_plan_text, spec_changes, Desired, PlanFormat,
};
use lithos::state::{Observed, ObservedProcess, Persisted, ProcId, ProcessKind};

const SEC: Duration = Duration::from_secs(1);
const NOW: Duration = Duration::from_secs(5000);

fn name(process: &str) -> InstanceName {
    InstanceName::new("web", process, 0)
}

/// Builds a tree running `kept`, `changed` and `removed`. The new config keeps `kept`,
/// changes the arguments and a secret of `changed`, drops `removed` and adds `added`.
fn reload_inputs() -> (Desired, Observed, Persisted) {
    let mut persisted = Persisted::default();
    let mut observed = Observed::default();
    let mut desired = Desired::default();
    for (pid, process) in [(10, "kept"), (11, "changed"), (12, "removed")] {
        let mut old = sample_instance(name(process), "old", SEC, SEC);
        Arc::make_mut(&mut old.spec)
            .container
            .secret_environ
            .insert("TOKEN".into(), vec!["v2:OLDSECRETVALUE".into()]);
        let id = ProcId { pid, start_time: 1 };
        persisted.record_spawn(&old, id, NOW - 100 * SEC);
        let kind = ProcessKind::Knot {
            name: name(process),
            fingerprint: "old".into(),
        };
        observed.processes.push(ObservedProcess {
            id,
            kind,
            is_child: true,
            zombie: false,
        });
        if process == "kept" {
            desired.instances.insert(name(process), old);
        }
    }
    let mut changed = sample_instance(name("changed"), "new", SEC, SEC);
    let spec = Arc::make_mut(&mut changed.spec);
    spec.container.arguments.push("--verbose".into());
    spec.container
        .secret_environ
        .insert("TOKEN".into(), vec!["v2:NEWSECRETVALUE".into()]);
    desired.instances.insert(name("changed"), changed);
    let added = sample_instance(name("added"), "new", SEC, SEC);
    desired.instances.insert(name("added"), added);
    (desired, observed, persisted)
}

#[test]
fn text_lists_each_kind_of_change() {
    let (desired, observed, persisted) = reload_inputs();
    let plan = reconcile(&desired, &observed, &persisted, NOW);
    let text = render_plan_text(&plan, &desired, &persisted, NOW, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "+ start web/added.0 (not running)");
    assert_eq!(
        lines[1],
        "~ restart web/changed.0 (pid 11) (config changed; changed: arguments, secret_environ)"
    );
    assert_eq!(lines[2], "- stop web/removed.0 (pid 12) (not in config)");
    assert_eq!(lines[3], "1 to start, 1 to restart, 1 to stop, 1 unchanged");
    assert_eq!(lines.len(), 4, "unchanged instances are hidden: {text}");
}

#[test]
fn verbose_text_shows_unchanged() {
    let (desired, observed, persisted) = reload_inputs();
    let plan = reconcile(&desired, &observed, &persisted, NOW);
    let text = render_plan_text(&plan, &desired, &persisted, NOW, true);
    assert!(text.contains("= unchanged web/kept.0\n"), "{text}");
}

#[test]
fn secret_values_are_never_printed() {
    let (desired, observed, persisted) = reload_inputs();
    let plan = reconcile(&desired, &observed, &persisted, NOW);
    for format in [PlanFormat::Text, PlanFormat::Json] {
        let output = render_plan(&plan, &desired, &persisted, NOW, format, true);
        assert!(!output.contains("SECRETVALUE"), "{output}");
        assert!(output.contains("secret_environ"), "{output}");
    }
}

#[test]
fn json_has_summary_and_entries() {
    let (desired, observed, persisted) = reload_inputs();
    let plan = reconcile(&desired, &observed, &persisted, NOW);
    let json = render_plan_json(&plan, &desired, &persisted, NOW);
    assert_eq!(json["has_changes"], true);
    assert_eq!(json["summary"]["restart"], 1);
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    let changed = &entries[1];
    assert_eq!(changed["change"], "restart");
    assert_eq!(changed["instance"], "web/changed.0");
    assert_eq!(changed["pid"], 11);
    assert_eq!(changed["reasons"][0], "config-changed");
    assert_eq!(changed["changed"][0], "arguments");
    assert_eq!(changed["wait_seconds"], serde_json::Value::Null);
}

#[test]
fn nothing_to_do_reports_no_changes() {
    let (_, observed, mut persisted) = reload_inputs();
    let mut same = Desired::default();
    for (pid, process) in [(10, "kept"), (11, "changed"), (12, "removed")] {
        let instance = sample_instance(name(process), "old", SEC, SEC);
        persisted.record_spawn(&instance, ProcId { pid, start_time: 1 }, NOW - 100 * SEC);
        same.instances.insert(name(process), instance);
    }
    let plan = reconcile(&same, &observed, &persisted, NOW);
    assert!(!plan.has_changes());
    let text = render_plan_text(&plan, &same, &persisted, NOW, false);
    assert_eq!(text, "0 to start, 0 to restart, 0 to stop, 3 unchanged\n");
}

#[test]
fn spec_changes_lists_top_level_and_container_fields() {
    let old = sample_instance(name("a"), "x", SEC, SEC);
    let mut new = old.clone();
    let spec = Arc::make_mut(&mut new.spec);
    spec.image = "other".into();
    spec.container.kill_timeout = 2 * SEC;
    assert_eq!(
        spec_changes(&old.spec, &new.spec),
        vec!["image", "kill_timeout"]
    );
    assert!(spec_changes(&old.spec, &old.spec).is_empty());
}
