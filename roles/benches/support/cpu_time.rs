//! CPU time of the bench thread, for the benchmarks whose target is "per core": on a machine
//! shared with other jobs, wall time also counts the time the thread waited for a core, so
//! these benchmarks time with the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) instead.

use criterion::Bencher;
use nix::time::{ClockId, clock_gettime};
use std::hint::black_box;
use std::time::Duration;

/// CPU time this thread has used so far.
pub fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// `b.iter(f)` timed in this thread's CPU time.
#[allow(dead_code)] // not every bench that includes this module uses it
pub fn iter_cpu<O>(b: &mut Bencher<'_>, mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let t0 = thread_cpu();
        for _ in 0..iters {
            black_box(f());
        }
        thread_cpu().saturating_sub(t0)
    });
}
