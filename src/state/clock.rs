//! The time base of the reconciler and the persisted state: `CLOCK_BOOTTIME`.
//!
//! Boot time counts the time spent suspended and starts at the same origin as the start
//! time in `/proc/PID/stat`, so process start times and recorded deadlines compare directly.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Returns the time since boot on `CLOCK_BOOTTIME`.
pub fn now() -> Duration {
    // CLOCK_BOOTTIME exists on every kernel since 2.6.39, so a failure means a broken system.
    let spec = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME is readable");
    Duration::new(spec.tv_sec() as u64, spec.tv_nsec() as u32)
}

/// Returns the number of clock ticks per second used by `/proc/PID/stat`.
pub fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(ticks)) if ticks > 0 => ticks as u64,
            // USER_HZ is 100 on every Linux architecture.
            _ => 100,
        }
    })
}

/// Converts a start time in clock ticks since boot into a [`Duration`] since boot.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = ticks_per_second();
    let nanos_per_tick = 1_000_000_000 / per_second;
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * nanos_per_tick)
}

/// Reads the kernel's boot id, which changes at every boot, from `PROC/sys/kernel/random/boot_id`.
pub fn boot_id(proc_root: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))?;
    Ok(text.trim().to_string())
}
