//! A token bucket kept as one timestamp (GCRA, the arithmetic governor uses), with the two
//! things governor's limiters do not offer and the scheduler needs:
//! - a peek ([`Gcra::ready_at`]) separate from the spend ([`Gcra::spend`]), so a line and its
//!   carrier are both checked before either is charged;
//! - costs above the burst: such a cost waits until the bucket is full, is spent whole and
//!   leaves the bucket in debt, which later sends wait off. The long-run rate holds and the
//!   message still goes.

use std::time::Duration;

use tokio::time::Instant;

/// The slowest emission interval: one token a day. Non-positive and NaN rates get it.
pub(crate) const MAX_INTERVAL_NS: u64 = 86_400 * 1_000_000_000;

#[derive(Debug, Clone)]
pub(crate) struct Gcra {
    /// Nanoseconds per token, rounded up so the configured rate is never exceeded. 0 means
    /// unlimited.
    interval_ns: u64,
    burst: u32,
    /// Theoretical arrival time: when the bucket is full again. `None`: full.
    tat: Option<Instant>,
}

/// Nanoseconds per token for a rate per second.
pub(crate) fn interval_ns(per_second: f64) -> u64 {
    if per_second.is_nan() || per_second <= 0.0 {
        return MAX_INTERVAL_NS;
    }
    (1e9 / per_second).ceil().min(MAX_INTERVAL_NS as f64) as u64
}

impl Gcra {
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        Self::with_interval(interval_ns(per_second), burst)
    }

    pub(crate) fn with_interval(interval_ns: u64, burst: u32) -> Self {
        Self {
            interval_ns,
            burst: burst.max(1),
            tat: None,
        }
    }

    /// Changes the rate; tokens already spent stay spent.
    pub(crate) fn set_rate(&mut self, per_second: f64, burst: u32) {
        self.interval_ns = interval_ns(per_second);
        self.burst = burst.max(1);
    }

    fn tokens(&self, n: u32) -> Duration {
        Duration::from_nanos(self.interval_ns.saturating_mul(u64::from(n)))
    }

    /// The earliest instant `cost` tokens can be spent; `None` if they can be at any time.
    /// A cost above the burst needs a full bucket.
    /// How long `cost` tokens take at this rate (zero when unlimited).
    pub(crate) fn time_for(&self, cost: u64) -> Duration {
        Duration::from_nanos(self.interval_ns.saturating_mul(cost))
    }

    pub(crate) fn ready_at(&self, cost: u32) -> Option<Instant> {
        let tat = self.tat?;
        let slack = self.burst - cost.min(self.burst);
        tat.checked_sub(self.tokens(slack))
    }

    /// Whether `cost` tokens can be spent at `now`.
    pub(crate) fn allows(&self, now: Instant, cost: u32) -> bool {
        self.ready_at(cost).is_none_or(|at| at <= now)
    }

    /// Spends `cost` tokens at `now`; call only when [`Gcra::allows`] says so.
    pub(crate) fn spend(&mut self, now: Instant, cost: u32) {
        let base = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(base + self.tokens(cost));
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, time::Duration};

    use governor::{Quota, RateLimiter, clock::FakeRelativeClock};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn zero_negative_and_nan_rates_are_the_slowest_not_unlimited() {
        for r in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(interval_ns(r), MAX_INTERVAL_NS, "{r}");
        }
        assert_eq!(interval_ns(f64::INFINITY), 0);
        assert_eq!(interval_ns(3.0), 333_333_334, "rounded up, never faster");
    }

    #[test]
    fn cost_above_burst_waits_for_a_full_bucket_then_leaves_debt() {
        let t0 = Instant::now();
        let mut g = Gcra::new(1.0, 2);
        g.spend(t0, 1);
        assert!(!g.allows(t0, 5), "bucket not full");
        let full = t0 + Duration::from_secs(1);
        assert_eq!(g.ready_at(5), Some(full));
        g.spend(full, 5);
        // 5 spent from a bucket of 2: 3 in debt, so one more token needs 4 s.
        assert_eq!(g.ready_at(1), Some(full + Duration::from_secs(4)));
    }

    proptest! {
        /// Within the burst, the bucket decides exactly as governor's GCRA does, and says the
        /// same about when a refused cost becomes possible.
        #[test]
        fn decisions_match_governor(
            interval_ms in 1u64..2_000,
            burst in 1u32..20,
            steps in proptest::collection::vec((0u64..3_000, 1u32..20), 1..200),
        ) {
            let interval = Duration::from_millis(interval_ms);
            let quota = Quota::with_period(interval)
                .expect("non-zero")
                .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
            let clock = FakeRelativeClock::default();
            let gov = RateLimiter::direct_with_clock(quota, clock.clone());
            let mut ours = Gcra::with_interval(interval.as_nanos() as u64, burst);
            let t0 = Instant::now();
            let mut elapsed = Duration::ZERO;
            for (advance_ms, cost) in steps {
                let cost = cost.min(burst);
                clock.advance(Duration::from_millis(advance_ms));
                elapsed += Duration::from_millis(advance_ms);
                let now = t0 + elapsed;
                let theirs = gov
                    .check_n(NonZeroU32::new(cost).expect("non-zero"))
                    .expect("cost within burst");
                prop_assert_eq!(theirs.is_ok(), ours.allows(now, cost));
                match theirs {
                    Ok(()) => ours.spend(now, cost),
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
                        prop_assert_eq!(ours.ready_at(cost), Some(now + wait));
                    }
                }
            }
        }
    }
}
