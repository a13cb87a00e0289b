//! Time of one `reconcile` pass over 1,000 and 10,000 instances.
//!
//! Two shapes per size: a steady state (every instance running its desired config) and a
//! reload (a tenth of the instances changed, a tenth new, a tenth removed, a tenth in
//! restart backoff). Run with `cargo bench --bench reconcile`.
//!
//! Each case is measured twice: in wall-clock time (group `reconcile`) and in the bench
//! thread's CPU time (group `reconcile_cpu`), because on a shared machine the wall-clock
//! figure also counts the time the thread waits for a CPU.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use lithos::model::spec::InstanceName;
use lithos::reconcile::testing::sample_instance;
use lithos::reconcile::{reconcile, Desired};
use lithos::state::{Observed, ObservedProcess, Persisted, ProcId, ProcessKind};
use nix::time::{clock_gettime, ClockId};

const NOW: Duration = Duration::from_secs(100_000);

struct Inputs {
    desired: Desired,
    observed: Observed,
    persisted: Persisted,
}

fn name(index: usize) -> InstanceName {
    // 100 sandboxes of 10 process entries, so names share prefixes as in a real tree.
    let sandbox = format!("sandbox{:03}", index % 100);
    let process = format!("process{}", (index / 100) % 10);
    InstanceName::new(sandbox, process, (index / 1000) as u32)
}

fn inputs(size: usize, reload: bool) -> Inputs {
    let sec = Duration::from_secs(1);
    let mut desired = Desired::default();
    let mut observed = Observed::default();
    let mut persisted = Persisted::default();
    for index in 0..size {
        let old = sample_instance(name(index), "old", 10 * sec, 5 * sec);
        let id = ProcId {
            pid: 1000 + index as i32,
            start_time: 5000 + index as u64,
        };
        let slice = if reload { index % 10 } else { 9 };
        match slice {
            // Running, config changed.
            0 => desired_insert(&mut desired, index, "new"),
            // Running, removed from the config.
            1 => {}
            // Exited recently: in restart backoff.
            2 => {
                desired_insert(&mut desired, index, "old");
                persisted.record_spawn(&old, id, NOW - sec);
                persisted.record_exit(&old.name, true, NOW);
                continue;
            }
            // New in the config: nothing runs, nothing recorded.
            3 => {
                desired_insert(&mut desired, index, "old");
                continue;
            }
            _ => desired_insert(&mut desired, index, "old"),
        }
        persisted.record_spawn(&old, id, NOW - 1000 * sec);
        let kind = ProcessKind::Knot {
            name: old.name.clone(),
            fingerprint: "old".into(),
        };
        observed.processes.push(ObservedProcess {
            id,
            kind,
            is_child: true,
            zombie: false,
        });
    }
    Inputs {
        desired,
        observed,
        persisted,
    }
}

fn desired_insert(desired: &mut Desired, index: usize, fingerprint: &str) {
    let sec = Duration::from_secs(1);
    let instance = sample_instance(name(index), fingerprint, 10 * sec, 5 * sec);
    desired.instances.insert(instance.name.clone(), instance);
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in the units of wall time.
struct ThreadCpuTime;

/// Formats nanosecond values like wall time; a static so the reference outlives any call.
static NANOSECONDS: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, started: Duration) -> Duration {
        thread_cpu_time() - started
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        NANOSECONDS.formatter()
    }
}

fn thread_cpu_time() -> Duration {
    let time = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(time.tv_sec() as u64, time.tv_nsec() as u32)
}

fn bench_group<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    for size in [1_000, 10_000] {
        for (shape, reload) in [("steady", false), ("reload", true)] {
            let input = inputs(size, reload);
            group.bench_with_input(BenchmarkId::new(shape, size), &input, |b, input| {
                b.iter(|| {
                    let plan = reconcile(&input.desired, &input.observed, &input.persisted, NOW);
                    black_box(plan)
                })
            });
        }
    }
    group.finish();
}

fn bench_wall(c: &mut Criterion) {
    bench_group(c, "reconcile");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_group(c, "reconcile_cpu");
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
