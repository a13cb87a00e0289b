//! Writing resource limits into v1 and v2 instance groups.

use std::path::Path;

use super::{
    cpu_weight, read, write, CgroupError, Hierarchy, Limits, DEFAULT_CPU_SHARES, DEFAULT_CPU_WEIGHT,
};

pub(super) fn write_v1_limits(
    hierarchy: &Hierarchy,
    dir: &Path,
    limits: &Limits,
) -> Result<(), CgroupError> {
    if hierarchy.has_v1("memory") {
        write_v1_memory(dir, limits.memory)?;
    }
    if hierarchy.has_v1("cpu") {
        let shares = limits.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES);
        write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    Ok(())
}

/// Writes the v1 memory limit and, when the kernel has swap accounting, the same value as
/// the memory+swap limit. The kernel keeps `memory <= memsw` at every step, so a raised
/// limit goes to memsw first and a lowered one to memory first.
fn write_v1_memory(dir: &Path, limit: Option<u64>) -> Result<(), CgroupError> {
    let memory = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let value = limit.map_or_else(|| "-1".to_string(), |l| l.to_string());
    if !memsw.exists() {
        return write(&memory, &value);
    }
    let current: u64 = read(&memory)?.trim().parse().unwrap_or(u64::MAX);
    let raising = limit.is_none_or(|l| l >= current);
    if raising {
        write(&memsw, &value)?;
        write(&memory, &value)
    } else {
        write(&memory, &value)?;
        write(&memsw, &value)
    }
}

pub(super) fn write_v2_limits(
    dir: &Path,
    limits: &Limits,
    memory: bool,
    cpu: bool,
) -> Result<(), CgroupError> {
    let memory_max = dir.join("memory.max");
    if memory && (limits.memory.is_some() || memory_max.exists()) {
        let value = limits
            .memory
            .map_or_else(|| "max".to_string(), |l| l.to_string());
        write(&memory_max, &value)?;
        // Zero swap matches v1, where memsw equal to the memory limit leaves no swap.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, if limits.memory.is_some() { "0" } else { "max" })?;
        }
    }
    let weight_file = dir.join("cpu.weight");
    if cpu && (limits.cpu_shares.is_some() || weight_file.exists()) {
        let weight = limits.cpu_shares.map_or(DEFAULT_CPU_WEIGHT, cpu_weight);
        write(&weight_file, &weight.to_string())?;
    }
    Ok(())
}

/// Enables `controllers` from the caller's own v2 group down to `cgroup-name`, so the
/// instance groups get the control files.
pub(super) fn enable_controllers(
    hierarchy: &Hierarchy,
    controllers: &[&str],
) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let mut dir = hierarchy.own.clone();
    let relative = hierarchy
        .base
        .strip_prefix(&hierarchy.own)
        .unwrap_or(Path::new(""));
    let mut chain = vec![dir.clone()];
    for component in relative.components() {
        dir.push(component);
        chain.push(dir.clone());
    }
    // The last group of the chain is cgroup-name itself, whose children are the instances.
    for group in chain {
        let control = group.join("cgroup.subtree_control");
        let enabled = read(&control)?;
        let missing: Vec<String> = controllers
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
            .map(|c| format!("+{c}"))
            .collect();
        // One write enables them all; the kernel takes a space-separated list.
        if !missing.is_empty() {
            write(&control, &missing.join(" "))?;
        }
    }
    Ok(())
}
