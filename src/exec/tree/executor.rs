//! Carrying out a plan: spawn knots, send signals, retire instances.
//!
//! Each action either succeeds or is logged once and left to the next pass: a failed spawn
//! becomes restart backoff, a failed signal is retried when the reconciler plans it again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::time::Duration;

use nix::sys::signal::Signal;
use slog::{error, info, warn};

use super::supervisor::{error_chain, Mode, Supervisor, CGROUP_RETRIES};
use crate::exec::network;
use crate::exec::spawn::{spawn_knot_pending, PendingKnot, SpawnRequest};
use crate::model::spec::{InstanceName, TcpPortSpec};
use crate::reconcile::{Action, Plan, Reason};
use crate::state::{ExitRecord, Observed, ProcId};

impl Supervisor {
    /// Executes every action of `plan` in order.
    pub(super) fn execute(&mut self, plan: &Plan, observed: &Observed, now: Duration) {
        // Before any bind: a socket that a surviving container still listens on is copied
        // from it, because binding its address again fails while it listens.
        self.take_sockets_from_survivors(observed);
        let zombies: std::collections::BTreeSet<ProcId> = observed
            .processes
            .iter()
            .filter(|process| process.zombie)
            .map(|process| process.id)
            .collect();
        // Knots are cloned one after the other and checked once all are cloned, so that
        // a child that stalls before its exec (a v1 cgroup attach) holds up no other start.
        let mut pending = Vec::new();
        for action in &plan.actions {
            if let Action::Signal { target, .. } | Action::Kill { target, .. } = action {
                // A zombie has exited already; its exit is accounted in the next pass.
                if zombies.contains(target) {
                    continue;
                }
            }
            match action {
                Action::Spawn { name, reason } => {
                    if let Some(knot) = self.spawn(name, now) {
                        pending.push((name, *reason, knot));
                    }
                }
                Action::Signal {
                    target,
                    name,
                    reason,
                } => self.terminate(*target, name.as_ref(), *reason, now),
                Action::Kill {
                    target,
                    name,
                    reason,
                } => self.kill(*target, name.as_ref(), *reason),
                Action::Retire { name, reason } => self.retire(name, *reason),
                Action::Wait { .. } => {}
            }
        }
        for (name, reason, knot) in pending {
            self.finish_spawn(name, reason, knot, now);
        }
    }

    /// Clones the knot of `name`; `None` when the start failed (recorded already).
    fn spawn(&mut self, name: &InstanceName, now: Duration) -> Option<PendingKnot> {
        let instance = self.desired.instances.get(name).cloned()?;
        // The knot writes its exit record next to its state dir, so the sandbox dir must
        // exist before it starts.
        let sandbox_dir = self.tree.master.state_dir.join(&name.sandbox);
        if let Err(error) = fs::create_dir_all(&sandbox_dir) {
            let message = format!("failed to create {}: {error}", sandbox_dir.display());
            self.start_failed(name, now, &message);
            return None;
        }
        // Internal ports of a bridged sandbox are bound by the knot inside the container's
        // network namespace; the tree binds only the ones on the host.
        let host_ports: BTreeMap<i32, TcpPortSpec> = network::host_ports(&instance.spec)
            .map(|port| (port.fd, port.clone()))
            .collect();
        let sockets = match self.sockets.prepare(&host_ports) {
            Ok(sockets) => sockets,
            Err(error) => {
                self.start_failed(name, now, &error_chain(&error));
                return None;
            }
        };
        let request = SpawnRequest {
            spec: &instance.spec,
            fingerprint: &instance.fingerprint,
            master: &self.tree.master_path,
            knot_binary: &self.knot_binary,
            cgroups: self.cgroups.as_ref(),
            sockets: sockets.pairs(),
            extra_env: &[],
        };
        let knot = match spawn_knot_pending(&request) {
            Ok(knot) => knot,
            Err(error) => {
                self.start_failed(name, now, &error_chain(&error));
                return None;
            }
        };
        drop(sockets);
        Some(knot)
    }

    /// Records a cloned knot once it has executed the knot binary, or its failure.
    fn finish_spawn(
        &mut self,
        name: &InstanceName,
        reason: Reason,
        knot: PendingKnot,
        now: Duration,
    ) {
        let knot = match knot.finish() {
            Ok(knot) => knot,
            Err(error) => {
                self.start_failed(name, now, &error_chain(&error));
                return;
            }
        };
        let Some(instance) = self.desired.instances.get(name).cloned() else {
            return;
        };
        // The knot is our unreaped child, so its /proc entry stays until we wait for it.
        let start_time = super::pidfd::start_time(&self.roots.proc_root, knot.pid).unwrap_or(0);
        let process = ProcId {
            pid: knot.pid,
            start_time,
        };
        self.persisted.record_spawn(&instance, process, now);
        self.reported.remove(name);
        info!(self.log, "container started";
            "instance" => %name, "pid" => knot.pid, "reason" => %reason,
            "fingerprint" => &instance.fingerprint);
    }

    /// Logs a failed start once per distinct error and records it as a start that failed at
    /// once, so restart-timeout spaces the retries.
    fn start_failed(&mut self, name: &InstanceName, now: Duration, message: &str) {
        if self.reported.get(name).map(String::as_str) != Some(message) {
            error!(self.log, "failed to start container, retrying after restart-timeout";
                "instance" => %name, "error" => message);
            self.reported.insert(name.clone(), message.to_string());
        }
        let Some(instance) = self.desired.instances.get(name).cloned() else {
            return;
        };
        let placeholder = ProcId {
            pid: 0,
            start_time: 0,
        };
        self.persisted.record_spawn(&instance, placeholder, now);
        let exit = ExitRecord {
            time: now,
            failure: true,
            code: None,
            signal: None,
        };
        self.persisted.record_exit_status(name, exit);
    }

    fn terminate(
        &mut self,
        target: ProcId,
        name: Option<&InstanceName>,
        reason: Reason,
        now: Duration,
    ) {
        let label = instance_label(name);
        match self.mode {
            Mode::Stopping { send_term: false } if shares_process_group(target) => {
                // After SIGINT a container in the tree's process group got the signal from
                // the terminal too; the deadline still counts from now so kill-timeout
                // applies.
                info!(self.log, "waiting for container to stop";
                    "instance" => label, "pid" => target.pid);
            }
            _ => {
                match self.send(target, Signal::SIGTERM, &label) {
                    // Gone already: the next pass accounts its exit.
                    Some(false) => return,
                    Some(true) => info!(self.log, "stopping container";
                        "instance" => label, "pid" => target.pid, "reason" => %reason),
                    // Recorded all the same, so the failure is not retried in a tight loop
                    // and kill-timeout still escalates to SIGKILL.
                    None => {}
                }
            }
        }
        self.persisted.record_signal(target, now);
    }

    fn kill(&mut self, target: ProcId, name: Option<&InstanceName>, reason: Reason) {
        let label = instance_label(name);
        if self.send(target, Signal::SIGKILL, &label) == Some(true) {
            warn!(self.log, "killed container";
                "instance" => label, "pid" => target.pid, "reason" => %reason);
        }
    }

    /// Sends `signal` through a pidfd: `Some(false)` when the process is gone, `None` when
    /// sending failed (logged here).
    fn send(&mut self, target: ProcId, signal: Signal, label: &str) -> Option<bool> {
        match super::pidfd::send_signal(&self.roots.proc_root, target, signal) {
            Ok(delivered) => Some(delivered),
            Err(error) => {
                error!(self.log, "failed to send signal";
                    "instance" => label, "pid" => target.pid, "signal" => %signal,
                    "error" => %error);
                None
            }
        }
    }

    fn retire(&mut self, name: &InstanceName, reason: Reason) {
        let state_dir = &self.tree.master.state_dir;
        let instance_dir = state_dir.join(name.state_subdir());
        let removed = remove_dir_all(&instance_dir)
            .and_then(|()| remove_file(&super::exits::exit_file_path(state_dir, name)));
        if let Err(error) = removed {
            warn!(self.log, "failed to remove the state dir of a retired container";
                "instance" => %name, "path" => %instance_dir.display(), "error" => %error);
        }
        // The sandbox dir goes once its last instance did; a non-empty one stays.
        let _ = fs::remove_dir(state_dir.join(&name.sandbox));
        if let Some(cgroups) = &self.cgroups {
            // The processes of a container that just exited leave its cgroup a moment
            // after the knot was reaped, so a busy cgroup is retried on later passes.
            if cgroups.remove_instance(&name.cgroup_leaf()).is_err() {
                self.pending_cgroups.insert(name.clone(), 0);
            }
        }
        self.persisted.forget(name);
        self.reported.remove(name);
        info!(self.log, "container retired"; "instance" => %name, "reason" => %reason);
    }

    /// Retries removing the cgroups of retired instances that were still busy; returns
    /// whether some remain. Gives up, with a warning, after `CGROUP_RETRIES` attempts.
    pub(super) fn retry_cgroup_removals(&mut self) -> bool {
        let Some(cgroups) = &self.cgroups else {
            self.pending_cgroups.clear();
            return false;
        };
        let mut done = Vec::new();
        for (name, attempts) in self.pending_cgroups.iter_mut() {
            if self.desired.instances.contains_key(name) {
                // Back in the config: its cgroup is in use again.
                done.push(name.clone());
                continue;
            }
            match cgroups.remove_instance(&name.cgroup_leaf()) {
                Ok(()) => done.push(name.clone()),
                Err(error) if *attempts >= CGROUP_RETRIES => {
                    warn!(self.log, "failed to remove the cgroup of a retired container";
                        "instance" => %name, "error" => %error_chain(&error));
                    done.push(name.clone());
                }
                Err(_) => *attempts += 1,
            }
        }
        for name in done {
            self.pending_cgroups.remove(&name);
        }
        !self.pending_cgroups.is_empty()
    }

    /// Closes listening sockets that no desired instance names any more.
    pub(super) fn release_unused_sockets(&mut self) {
        let used = match self.mode {
            Mode::Running => super::desired::used_addresses(&self.desired),
            // While stopping, sockets stay until the containers are gone.
            Mode::Stopping { .. } => return,
        };
        for address in self.sockets.retain_used(&used) {
            info!(self.log, "closed listening socket"; "address" => %address);
        }
    }
}

fn instance_label(name: Option<&InstanceName>) -> String {
    name.map(ToString::to_string)
        .unwrap_or_else(|| "unknown child".into())
}

fn remove_dir_all(path: &std::path::Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn remove_file(path: &std::path::Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Returns whether `target` is in the tree's own process group, so that a Ctrl-C on the
/// tree's terminal reached it too. Knots started by the tree run in sessions of their own
/// and so never share it; a process that is gone counts as sharing it (nothing to send).
fn shares_process_group(target: ProcId) -> bool {
    match nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(target.pid))) {
        Ok(group) => group == nix::unistd::getpgrp(),
        Err(_) => true,
    }
}
