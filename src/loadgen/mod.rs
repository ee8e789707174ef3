//! `smsgate-bench`, the load generator: drives `POST /v1/messages` over keep-alive HTTP/1.1
//! connections (or MO texts through the simulator) and reports what the gateway accepted and
//! how fast.
//!
//! Map:
//! - this file: the options and summary types the modes share.
//! - `http`: one worker per connection (hyper `conn::http1`, TCP_NODELAY, no pool), the
//!   shared ticket schedule, the progress line, and [`run_http`].
//! - `e2e`: [`run_e2e`] starts a simulator, a daemon and a webhook sink in-process on
//!   loopback, loads the daemon, and waits for every part to reach the carrier, every receipt
//!   to be recorded and every `delivered` webhook to arrive.
//! - `floor`: [`run_floor`] measures what the HTTP transport alone costs here (API requests
//!   and signed webhook requests against handlers that only answer): the floor under any
//!   end-to-end number on this machine.
//! - `mo`: [`run_mo`] injects MO texts through the simulator into the same stack and waits
//!   for their `message.received` webhooks.
//! - `sink`: the webhook receiver: verifies every signature, times the awaited events.
//! - `report`: the aligned text tables and the JSON form of the summaries.
//!
//! Every request is counted exactly once: accepted (202), rejected (other 4xx, by error
//! code), server error (5xx, by error code) or transport error (connect, I/O, timeout).

mod e2e;
mod floor;
mod http;
mod mo;
mod report;
mod sink;

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

pub use e2e::{CommitBatches, CpuSplit, E2eOptions, E2eSummary, ThreadGroup, run_e2e};
pub use floor::{FloorOptions, FloorPhase, FloorSummary, run_floor};
pub use http::{HttpOptions, run_http};
pub use mo::{MoOptions, MoSummary, run_mo};
pub use report::{e2e_table, floor_table, http_table, mo_table};
pub use sink::{Awaited, WebhookSummary};

/// When a run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (requests in flight then finish).
    Duration(Duration),
    /// After this many requests in total (accepted or not).
    Count(u64),
}

/// The messages a run sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Body length in characters.
    pub length: usize,
    /// Fraction of bodies (0.0..=1.0) carrying a character only UCS-2 can encode.
    pub ucs2_fraction: f64,
    /// How many distinct destination numbers to spread the messages over.
    pub destinations: usize,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            length: 160,
            ucs2_fraction: 0.1,
            destinations: 10_000,
        }
    }
}

/// Errors of a benchmark run. Who returns them: [`run_http`] (bad options, target
/// unreachable), [`run_e2e`] and [`run_mo`] (anything in starting or draining the in-process
/// daemon). Failed checks of a completed run (signature failures...) are not errors here:
/// they are the summary's `problems`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options cannot describe a run (no `--from`, zero concurrency, bad URL...).
    #[error("invalid options: {0}")]
    Options(String),
    /// No worker could open a connection to the target.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// Setting up the in-process simulator, daemon or their temp directory failed.
    #[error("setup failed: {0}")]
    Setup(String),
    /// Something did not happen in time (readiness, carrier submits, receipts, drain).
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// The in-process daemon stopped with an error.
    #[error("daemon failed: {0}")]
    Daemon(String),
}

/// Accept latency percentiles in milliseconds (202 answers only; measured from the
/// scheduled send time when `--rate` paces, so a stalled server is not hidden).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What an HTTP load run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpSummary {
    /// Requests sent (every one is in exactly one of the counts below).
    pub requests: u64,
    /// `202 Accepted`.
    pub accepted: u64,
    /// Parts on the air of the accepted messages (`segments` of the 202 answers).
    pub accepted_segments: u64,
    /// Other 4xx answers by error code (`http_<status>` when the body had none).
    pub rejected: BTreeMap<String, u64>,
    /// 5xx answers by error code.
    pub server_errors: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer, by kind (connect, io, timeout).
    pub transport_errors: BTreeMap<String, u64>,
    /// From the first request to the last answer.
    #[serde(rename = "duration_s", serialize_with = "report::secs")]
    pub duration: Duration,
    pub accepted_per_sec: f64,
    pub latency: Latency,
    pub concurrency: usize,
    /// The paced target, if any.
    pub target_rate: Option<f64>,
}

impl HttpSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn server_errors_total(&self) -> u64 {
        self.server_errors.values().sum()
    }

    pub fn transport_errors_total(&self) -> u64 {
        self.transport_errors.values().sum()
    }

    /// Every request that was not accepted.
    pub fn not_accepted(&self) -> u64 {
        self.rejected_total() + self.server_errors_total() + self.transport_errors_total()
    }
}
