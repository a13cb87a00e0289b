//! The desired state of one config load, with the last good state where a load failed.
//!
//! A load error affects only its scope. A failed sandbox (its sandbox or processes file is
//! invalid or unreadable) keeps the last good instances of all its entries. A failed entry
//! keeps its own last good instances. A sandbox whose sandbox file or processes file was
//! deleted has no desired instances, so its containers stop. The last good instances live
//! in the persisted state so they survive re-execs and restarts of the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::exec::{network, sockets};
use crate::model::spec::{DesiredInstance, InstanceName};
use crate::model::{ConfigTree, EntryLoad, SandboxLoad, Scope};
use crate::reconcile::Desired;
use crate::state::Persisted;

/// Builds the desired instances of `tree` and updates the last good state in `persisted`.
pub fn build_desired(tree: &ConfigTree, persisted: &mut Persisted) -> Desired {
    let mut instances = BTreeMap::new();
    for (sandbox, load) in &tree.sandboxes {
        match load {
            SandboxLoad::Loaded { entries } => {
                for (entry, entry_load) in entries {
                    let chosen = match entry_load {
                        EntryLoad::Daemon { instances: loaded } => {
                            persisted.remember_good(sandbox, entry, loaded);
                            loaded.clone()
                        }
                        EntryLoad::Command { .. } => Vec::new(),
                        EntryLoad::Failed => fallback(persisted, sandbox, entry),
                    };
                    add(&mut instances, chosen);
                }
                forget_removed_entries(persisted, sandbox, entries.keys().collect());
            }
            SandboxLoad::Failed if processes_file_deleted(tree, sandbox) => {
                persisted.sandboxes.remove(sandbox);
            }
            SandboxLoad::Failed => {
                for entry in known_entries(persisted, sandbox) {
                    add(&mut instances, fallback(persisted, sandbox, &entry));
                }
            }
        }
    }
    persisted
        .sandboxes
        .retain(|sandbox, _| tree.sandboxes.contains_key(sandbox));
    share_specs(&instances, persisted);
    Desired { instances }
}

/// Points each record whose spec equals the desired one at the desired copy, so a spec
/// read back from the state file is not kept twice (one copy per instance).
fn share_specs(instances: &BTreeMap<InstanceName, DesiredInstance>, persisted: &mut Persisted) {
    for (name, record) in persisted.instances.iter_mut() {
        let (Some(spec), Some(want)) = (&record.spec, instances.get(name)) else {
            continue;
        };
        if !std::sync::Arc::ptr_eq(spec, &want.spec) && **spec == *want.spec {
            record.spec = Some(want.spec.clone());
        }
    }
}

/// Returns whether the sandbox failed because its processes file does not exist, which
/// means the operator removed it rather than broke it.
fn processes_file_deleted(tree: &ConfigTree, sandbox: &str) -> bool {
    let path = super::paths::processes_file(&tree.master, sandbox);
    matches!(std::fs::symlink_metadata(&path), Err(error) if error.kind() == std::io::ErrorKind::NotFound)
}

fn add(instances: &mut BTreeMap<InstanceName, DesiredInstance>, chosen: Vec<DesiredInstance>) {
    for instance in chosen {
        instances.insert(instance.name.clone(), instance);
    }
}

/// Returns the last good instances of an entry, or else what runs of it now.
///
/// An entry that never loaded without error in this state file (state.bin lost, or a tree
/// started on an already broken config) keeps the instances that run, as they run.
fn fallback(persisted: &Persisted, sandbox: &str, entry: &str) -> Vec<DesiredInstance> {
    if let Some(good) = persisted.last_good(sandbox, entry) {
        return good;
    }
    persisted
        .instances
        .iter()
        .filter(|(name, record)| {
            name.sandbox == sandbox && name.process == entry && record.process.is_some()
        })
        .filter_map(|(name, record)| {
            let spec = record.spec.clone()?;
            Some(DesiredInstance {
                name: name.clone(),
                fingerprint: record.fingerprint.clone(),
                restart_timeout: spec.container.restart_timeout,
                kill_timeout: record.kill_timeout,
                spec,
            })
        })
        .collect()
}

fn known_entries(persisted: &Persisted, sandbox: &str) -> BTreeSet<String> {
    let mut entries: BTreeSet<String> = persisted
        .sandboxes
        .get(sandbox)
        .map(|record| record.last_good.keys().cloned().collect())
        .unwrap_or_default();
    entries.extend(
        persisted
            .instances
            .keys()
            .filter(|name| name.sandbox == sandbox)
            .map(|name| name.process.clone()),
    );
    entries
}

fn forget_removed_entries(persisted: &mut Persisted, sandbox: &str, present: BTreeSet<&String>) {
    if let Some(record) = persisted.sandboxes.get_mut(sandbox) {
        record.last_good.retain(|entry, _| present.contains(entry));
    }
}

/// Returns the shared listening addresses the desired instances name.
pub fn used_addresses(desired: &Desired) -> BTreeSet<SocketAddr> {
    sockets::shared_addresses(
        desired
            .instances
            .values()
            .flat_map(|instance| network::host_ports(&instance.spec)),
    )
}

/// Returns the load problems keyed by scope: `master`, `SANDBOX` or `SANDBOX/PROCESS`.
pub fn problems_by_scope(tree: &ConfigTree) -> BTreeMap<String, Vec<String>> {
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for problem in &tree.problems.0 {
        let scope = match &problem.scope {
            Scope::Master => "master".to_string(),
            Scope::Sandbox(sandbox) => sandbox.clone(),
            Scope::Entry(sandbox, entry) => format!("{sandbox}/{entry}"),
        };
        errors.entry(scope).or_default().push(problem.to_string());
    }
    errors
}
