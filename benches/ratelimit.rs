//! Cost of one rate-limited decision: a push and a pop on a scheduler with 1 line and with
//! 100,000 lines, each line at a long code's 1/s, the simulated clock advancing so every
//! line has its token again by its next turn. The two should cost about the same.
//!
//! For reference, `governor_keyed` times governor's keyed limiter (`check_key`, DashMap state
//! store, its own clock) over the same keys: the check alone, without any queueing.
//!
//! Run: `cargo bench --bench ratelimit`.

use std::{hint::black_box, num::NonZeroU32, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use smsgate::ratelimit::{LineLimit, Priority, Scheduler};
use tokio::time::Instant;

fn line_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("+1212{i:07}")).collect()
}

fn bench(c: &mut Criterion) {
    let limit = LineLimit::new(1.0, 1);
    let mut g = c.benchmark_group("ratelimit_push_pop");
    g.throughput(Throughput::Elements(1));
    for lines in [1usize, 100_000] {
        let names = line_names(lines);
        // One op per line per simulated second: every line's token is back by its next turn.
        let step = Duration::from_nanos(1_000_000_000 / lines as u64 + 1);
        g.bench_with_input(BenchmarkId::from_parameter(lines), &names, |b, names| {
            let mut s = Scheduler::new(None, 0);
            let mut now = Instant::now();
            // Every line starts with one item queued, so the ring is as long as the line count.
            for (i, name) in names.iter().enumerate() {
                s.push(name, limit, 1, Priority::Normal, i);
            }
            let mut i = 0;
            b.iter(|| {
                now += step;
                s.push(&names[i], limit, 1, Priority::Normal, i);
                i = if i + 1 == names.len() { 0 } else { i + 1 };
                black_box(s.pop_ready(now))
            });
            assert_eq!(s.len(), names.len(), "one in, one out: nothing waited");
        });
    }
    g.finish();

    let mut g = c.benchmark_group("governor_keyed");
    g.throughput(Throughput::Elements(1));
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).expect("non-zero"));
    for lines in [1usize, 100_000] {
        let names = line_names(lines);
        g.bench_with_input(BenchmarkId::from_parameter(lines), &names, |b, names| {
            let limiter = RateLimiter::keyed(quota);
            for name in names {
                let _ = limiter.check_key(name);
            }
            let mut i = 0;
            b.iter(|| {
                let r = limiter.check_key(&names[i]);
                i = if i + 1 == names.len() { 0 } else { i + 1 };
                black_box(r.is_ok())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
