//! The carrier's submit rate: its configured maximum (or none), slowed when the carrier
//! answers with throttling errors and recovered once it stops.
//!
//! Additive increase, multiplicative decrease: a throttling answer halves the rate (floor
//! 1/s), at most once per [`DECREASE_HOLD`] because one congested moment comes back as a whole
//! window of throttled responses. After [`QUIET`] with no throttling, each accepted submit may
//! raise the rate by a tenth of the rate it fell from, at most once per [`INCREASE_EVERY`],
//! until it is back there and the configured limit (or none) applies again.

use std::time::Duration;

use tokio::time::Instant;

use super::{default_burst, gcra::Gcra};

/// Throttling answers within this long of a decrease do not decrease again.
pub(crate) const DECREASE_HOLD: Duration = Duration::from_secs(1);
/// How long the carrier must go without throttling before the rate climbs.
pub(crate) const QUIET: Duration = Duration::from_secs(5);
/// Least time between two increases.
pub(crate) const INCREASE_EVERY: Duration = Duration::from_secs(1);
/// Lowest rate a decrease goes to (unless the configured rate is lower already).
pub(crate) const FLOOR_PER_SECOND: f64 = 1.0;

#[derive(Debug)]
pub(crate) struct CarrierLimit {
    /// Configured submits/s; `None`: unlimited.
    configured: Option<f64>,
    /// Configured burst; 0: the default for the rate in force.
    burst: u32,
    /// The rate in force; differs from `configured` only after throttling.
    current: Option<f64>,
    bucket: Gcra,
    /// The rate to climb back to: the configured one, or for an unlimited carrier the rate
    /// observed when throttling started.
    recover_to: f64,
    last_throttled: Option<Instant>,
    last_decrease: Option<Instant>,
    last_increase: Option<Instant>,
    meter: Meter,
}

impl CarrierLimit {
    pub(crate) fn new(per_second: Option<f64>, burst: u32) -> Self {
        let per_second = per_second.filter(|r| *r > 0.0);
        let rate = per_second.unwrap_or(f64::INFINITY);
        Self {
            configured: per_second,
            burst,
            current: per_second,
            bucket: Gcra::new(rate, effective_burst(burst, rate)),
            recover_to: rate,
            last_throttled: None,
            last_decrease: None,
            last_increase: None,
            meter: Meter::default(),
        }
    }

    pub(crate) fn configured(&self) -> Option<f64> {
        self.configured
    }

    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    pub(crate) fn rate(&self) -> Option<f64> {
        self.current
    }

    pub(crate) fn ready_at(&self, cost: u32) -> Option<Instant> {
        self.bucket.ready_at(cost)
    }

    pub(crate) fn allows(&self, now: Instant, cost: u32) -> bool {
        self.bucket.allows(now, cost)
    }

    pub(crate) fn spend(&mut self, now: Instant, cost: u32) {
        self.bucket.spend(now, cost);
        self.meter.record(now, cost);
    }

    pub(crate) fn on_throttled(&mut self, now: Instant) {
        self.last_throttled = Some(now);
        if self.is_reduced() && self.last_decrease.is_some_and(|t| now < t + DECREASE_HOLD) {
            return;
        }
        let from = match self.current {
            Some(r) => r,
            // Unlimited: start from what we were actually sending.
            None => self.meter.per_second(now).max(FLOOR_PER_SECOND),
        };
        if !self.is_reduced() {
            self.recover_to = self.configured.unwrap_or(from);
        }
        let floor = FLOOR_PER_SECOND.min(self.recover_to);
        self.set_current(Some((from / 2.0).max(floor)));
        self.last_decrease = Some(now);
    }

    pub(crate) fn on_accepted(&mut self, now: Instant) {
        let Some(current) = self.current.filter(|_| self.is_reduced()) else {
            return;
        };
        if self.last_throttled.is_some_and(|t| now < t + QUIET)
            || self.last_increase.is_some_and(|t| now < t + INCREASE_EVERY)
        {
            return;
        }
        let next = current + (self.recover_to / 10.0).max(FLOOR_PER_SECOND);
        let next = if next >= self.recover_to {
            self.configured
        } else {
            Some(next)
        };
        self.set_current(next);
        self.last_increase = Some(now);
    }

    fn is_reduced(&self) -> bool {
        self.current != self.configured
    }

    fn set_current(&mut self, rate: Option<f64>) {
        self.current = rate;
        let r = rate.unwrap_or(f64::INFINITY);
        self.bucket.set_rate(r, effective_burst(self.burst, r));
    }
}

fn effective_burst(configured: u32, per_second: f64) -> u32 {
    if configured > 0 {
        configured
    } else {
        default_burst(per_second)
    }
}

/// Tokens spent per second, in whole-second windows: enough to know roughly how fast an
/// unlimited carrier was being driven when it started throttling.
#[derive(Debug, Default)]
struct Meter {
    window_start: Option<Instant>,
    count: u64,
    previous: u64,
}

impl Meter {
    const WINDOW: Duration = Duration::from_secs(1);

    fn roll(&mut self, now: Instant) {
        match self.window_start {
            Some(start) if now < start + Self::WINDOW => {}
            Some(start) => {
                let adjacent = now < start + 2 * Self::WINDOW;
                self.previous = if adjacent { self.count } else { 0 };
                self.count = 0;
                self.window_start = Some(now);
            }
            None => self.window_start = Some(now),
        }
    }

    fn record(&mut self, now: Instant, cost: u32) {
        self.roll(now);
        self.count += u64::from(cost);
    }

    fn per_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        self.previous.max(self.count) as f64
    }
}
