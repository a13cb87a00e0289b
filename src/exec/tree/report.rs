//! Reports after each pass (`status.json`, sd_notify) and the reload, which hands over to a
//! new image of the tree.

use std::collections::BTreeMap;
use std::time::SystemTime;

use slog::{error, info, warn};

use super::status::{self, InstanceStatus, Status};
use super::supervisor::{error_chain, Mode, Supervisor};
use crate::exec::metrics::MetricsSnapshot;
use crate::reconcile::{Action, InstanceState, InstanceStates, Plan};
use crate::state::Observed;

impl Supervisor {
    /// Writes `status.json` with the instance `states` of this pass.
    pub(super) fn write_status(&mut self, states: &InstanceStates) {
        let mut instances = BTreeMap::new();
        for (name, state) in &states.0 {
            let record = self.persisted.instances.get(name);
            let process = record.and_then(|record| record.process);
            let entry = InstanceStatus {
                state: state_name(state).to_string(),
                pid: process.map(|process| process.pid),
                fingerprint: record
                    .map(|record| record.fingerprint.clone())
                    .unwrap_or_default(),
                starts: record.map(|record| record.starts).unwrap_or(0),
                adopted: process.is_some_and(|process| self.watchers.contains_key(&process)),
            };
            instances.insert(name.to_string(), entry);
        }
        let running = instances.values().filter(|i| i.state == "running").count();
        let status = Status {
            generation: self.persisted.generation,
            pid: std::process::id(),
            master: self.tree.master_path.clone(),
            updated: super::timefmt::rfc3339(SystemTime::now()),
            stopping: matches!(self.mode, Mode::Stopping { .. }),
            errors: super::desired::problems_by_scope(&self.tree),
            instances,
        };
        if let Err(error) = status::write(&self.tree.master.runtime_dir, &status) {
            warn!(self.log, "failed to write status.json"; "error" => %error_chain(&error));
        }
        let summary = format!(
            "STATUS={running} of {} containers running, {} config problems",
            status.instances.len(),
            self.tree.problems.0.len()
        );
        if self.last_notified_status.as_deref() != Some(summary.as_str()) {
            self.notify(&summary);
            self.last_notified_status = Some(summary);
        }
    }

    /// Exports the metrics of this pass: the Prometheus file and the cantal files. A failure
    /// is logged once, and again only after an export succeeded in between.
    pub(super) fn export_metrics(&mut self, observed: &Observed, plan: &Plan) {
        let queue = plan
            .actions
            .iter()
            .filter(|action| !matches!(action, Action::Wait { .. }))
            .count() as u64;
        let snapshot = MetricsSnapshot::from_state(
            &self.persisted,
            observed,
            self.tree.sandboxes.len() as u64,
            self.desired.instances.len() as u64,
            queue,
        );
        match self.metrics.export(&snapshot) {
            Ok(()) => self.metrics_failing = false,
            Err(error) if !self.metrics_failing => {
                warn!(self.log, "failed to export metrics, retrying after each pass";
                    "error" => %error_chain(&error));
                self.metrics_failing = true;
            }
            Err(_) => {}
        }
    }

    /// Re-executes the tree after checking master.yaml; returns only if that failed.
    pub(super) fn reload(&mut self) {
        if matches!(self.mode, Mode::Stopping { .. }) {
            info!(self.log, "ignoring reload while stopping");
            return;
        }
        if let Err(problems) = crate::model::load_master(&self.tree.master_path) {
            error!(self.log, "master config is invalid, not reloading: every container keeps running";
                "path" => %self.tree.master_path.display(), "problems" => %problems);
            return;
        }
        info!(self.log, "reloading"; "program" => %self.program.display());
        self.notify("RELOADING=1");
        self.save_state();
        let error = super::reexec::reexec(&self.program, &self.args, &self.lock, &self.sockets);
        error!(self.log, "failed to reload, running on with the current config";
            "error" => %error_chain(&error));
        self.notify("READY=1");
    }
}

fn state_name(state: &InstanceState) -> &'static str {
    match state {
        InstanceState::Running { .. } => "running",
        InstanceState::Starting { .. } | InstanceState::AwaitingExec | InstanceState::Absent => {
            "starting"
        }
        InstanceState::Replacing => "restarting",
        InstanceState::Backoff { .. } => "waiting",
        InstanceState::Stopping => "stopping",
        InstanceState::Retiring => "stopped",
    }
}
