//! Rate limits between the dispatcher and a carrier: per line, counted in segments (a 3-part
//! text costs 3 tokens), and per carrier, counted in submits, with the carrier's rate slowed
//! adaptively when it answers with throttling errors.
//!
//! The dispatcher owns one [`Scheduler`] per carrier. It pushes claimed messages with their
//! line's [`LineLimit`], cost and [`Priority`], takes whatever [`Scheduler::pop_ready`] hands
//! back, and sleeps until [`Scheduler::next_ready_at`] when nothing is ready. Lines are served
//! round-robin, so a backlog or an empty bucket on one line never holds up another.
//!
//! Every decision is O(1) amortised (plus O(log lines) when a line has to wait for tokens):
//! there is no task and no scan per line, so 100,000 lines cost what 1 does.
//!
//! Files: `gcra` (the token bucket, same arithmetic as governor's GCRA, with a peek and
//! costs above the burst), `carrier` (the adaptive carrier limit), `scheduler` (per-line
//! queues, round-robin, the timer heap).

mod carrier;
mod gcra;
mod scheduler;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use scheduler::{Priority, Scheduler};

use crate::config::RateClass;

/// How fast one line may send, in segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineLimit {
    /// Sustained rate, segments per second. Must be positive (config validation rejects
    /// anything else); a zero, negative or NaN rate is treated as one token a day, never as
    /// unlimited. `f64::INFINITY` means unlimited.
    pub per_second: f64,
    /// Most segments that may go back to back after the line has been idle. 0 counts as 1.
    pub burst: u32,
}

impl LineLimit {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// A rate with the default burst: a tenth of a second's worth, at least 1. A bigger
    /// burst would let a line send close to twice its rate in the second after it was idle,
    /// which carriers counting per second answer with throttling.
    pub fn per_second(per_second: f64) -> Self {
        Self::new(per_second, default_burst(per_second))
    }

    /// The default for a rate class: long code 1/s, toll free 3/s, short code 100/s.
    pub fn for_class(class: RateClass) -> Self {
        match class {
            RateClass::LongCode => Self::per_second(1.0),
            RateClass::TollFree => Self::per_second(3.0),
            RateClass::ShortCode => Self::per_second(100.0),
        }
    }
}

/// A tenth of a second's worth of tokens, at least 1.
pub fn default_burst(per_second: f64) -> u32 {
    if per_second.is_finite() && per_second > 10.0 {
        (per_second / 10.0).ceil().min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

/// The limits of one carrier and its lines: defaults by rate class, per-line overrides and
/// the carrier's maximum submit rate.
#[derive(Debug, Clone)]
pub struct Limits {
    pub long_code: LineLimit,
    pub toll_free: LineLimit,
    pub short_code: LineLimit,
    /// Most submits per second to this carrier across all its lines; 0 means unlimited.
    pub carrier_per_second: f64,
    /// Carrier burst; 0 means the default ([`default_burst`] of the rate).
    pub carrier_burst: u32,
    overrides: HashMap<String, LineLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            long_code: LineLimit::for_class(RateClass::LongCode),
            toll_free: LineLimit::for_class(RateClass::TollFree),
            short_code: LineLimit::for_class(RateClass::ShortCode),
            carrier_per_second: 0.0,
            carrier_burst: 0,
            overrides: HashMap::new(),
        }
    }
}

impl Limits {
    /// Class defaults and a carrier maximum of `carrier_per_second` submits/s (0: unlimited).
    pub fn new(carrier_per_second: f64) -> Self {
        Self {
            carrier_per_second,
            ..Self::default()
        }
    }

    /// Gives `line` (its E.164 number) an explicit limit instead of its class default.
    pub fn set_line(&mut self, line: impl Into<String>, limit: LineLimit) {
        self.overrides.insert(line.into(), limit);
    }

    /// The limit that applies to `line`: its override, else its class default.
    pub fn line(&self, line: &str, class: RateClass) -> LineLimit {
        if let Some(l) = self.overrides.get(line) {
            return *l;
        }
        match class {
            RateClass::LongCode => self.long_code,
            RateClass::TollFree => self.toll_free,
            RateClass::ShortCode => self.short_code,
        }
    }

    /// The carrier's maximum submits/s, `None` when unlimited.
    pub fn carrier_rate(&self) -> Option<f64> {
        (self.carrier_per_second > 0.0).then_some(self.carrier_per_second)
    }

    /// An empty scheduler enforcing this carrier's limit.
    pub fn scheduler<T>(&self) -> Scheduler<T> {
        Scheduler::new(self.carrier_rate(), self.carrier_burst)
    }
}
