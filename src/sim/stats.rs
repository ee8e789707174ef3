//! Counters the simulator keeps, and the snapshot it hands out.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

/// A snapshot of the simulator's counters (all since start, except the gauges
/// `sessions_open` and `receipts_waiting`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub binds_ok: u64,
    /// Binds answered with an error (bad credentials, refusal window, already bound).
    pub binds_refused: u64,
    /// TCP connections currently open, bound or not.
    pub sessions_open: u64,
    /// Every submit_sm / data_sm received, answered or not.
    pub submits_total: u64,
    pub submits_ok: u64,
    /// Submits answered with an error status (including throttling).
    pub submits_error: u64,
    /// Submits answered `ESME_RTHROTTLED`.
    pub throttled: u64,
    /// Submits answered `ESME_RMSGQFUL`.
    pub queue_full: u64,
    /// Connections closed by `drop_every` or [`drop_connections`](super::Simulator::drop_connections).
    pub connections_dropped: u64,
    pub receipts_sent: u64,
    /// Receipts whose `deliver_sm_resp` said OK.
    pub receipts_acked: u64,
    /// Receipts refused by the ESME (they are retried).
    pub receipts_refused: u64,
    /// Receipts held by the router: waiting for a receiver to bind, for a retry, or for
    /// their delay when they were submitted on a transmitter bind.
    pub receipts_waiting: u64,
    pub mo_sent: u64,
    /// MO messages whose `deliver_sm_resp` said OK.
    pub mo_acked: u64,
    /// Accepted submits with the same source, destination and body (UDH included) as an
    /// earlier accepted one.
    pub duplicates: u64,
    /// PDUs that could not be decoded or framed.
    pub malformed_pdus: u64,
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions={} binds_ok={} binds_refused={} submits={} ok={} error={} throttled={} \
             queue_full={} dropped={} receipts_sent={} receipts_acked={} receipts_waiting={} \
             mo_sent={} mo_acked={} duplicates={} malformed={}",
            self.sessions_open,
            self.binds_ok,
            self.binds_refused,
            self.submits_total,
            self.submits_ok,
            self.submits_error,
            self.throttled,
            self.queue_full,
            self.connections_dropped,
            self.receipts_sent,
            self.receipts_acked,
            self.receipts_waiting,
            self.mo_sent,
            self.mo_acked,
            self.duplicates,
            self.malformed_pdus,
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub binds_ok: AtomicU64,
    pub binds_refused: AtomicU64,
    pub sessions_open: AtomicU64,
    pub submits_total: AtomicU64,
    pub submits_ok: AtomicU64,
    pub submits_error: AtomicU64,
    pub throttled: AtomicU64,
    pub queue_full: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub receipts_acked: AtomicU64,
    pub receipts_refused: AtomicU64,
    pub receipts_waiting: AtomicU64,
    pub mo_sent: AtomicU64,
    pub mo_acked: AtomicU64,
    pub duplicates: AtomicU64,
    pub malformed_pdus: AtomicU64,
}

/// Bumps a counter; counters are independent, so relaxed ordering is enough.
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    if by != 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

impl Counters {
    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            binds_ok: get(&self.binds_ok),
            binds_refused: get(&self.binds_refused),
            sessions_open: get(&self.sessions_open),
            submits_total: get(&self.submits_total),
            submits_ok: get(&self.submits_ok),
            submits_error: get(&self.submits_error),
            throttled: get(&self.throttled),
            queue_full: get(&self.queue_full),
            connections_dropped: get(&self.connections_dropped),
            receipts_sent: get(&self.receipts_sent),
            receipts_acked: get(&self.receipts_acked),
            receipts_refused: get(&self.receipts_refused),
            receipts_waiting: get(&self.receipts_waiting),
            mo_sent: get(&self.mo_sent),
            mo_acked: get(&self.mo_acked),
            duplicates: get(&self.duplicates),
            malformed_pdus: get(&self.malformed_pdus),
        }
    }
}
