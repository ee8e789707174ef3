//! smsc-sim: an SMPP 3.4 SMSC (carrier) simulator.
//!
//! Used three ways: the `smsc-sim` binary (load tests, demos), smsgate's own tests (started
//! in-process on `127.0.0.1:0`), and carriers configured with `simulator = true`, which the
//! daemon starts on that carrier's address.
//!
//! Map:
//! - [`Simulator`] (this file): start, inspect, steer at run time, shut down.
//! - `config`: [`SimConfig`] and its TOML form [`SimSettings`].
//! - `session`: one task per connection; it owns the socket and batches its writes.
//! - `frame`: splits the byte stream into PDUs (no I/O).
//! - `receipt`: what a receipt says, and the router for receipts not tied to a connection.
//! - `mo`: [`MoMessage`], mobile-originated messages to inject.
//! - `text`: GSM-7 / UCS-2 encoding and splitting.
//! - `client`: a small pipelined SMPP client for tests and throughput measurement.
//! - `cli`: the `smsc-sim` command line.
//!
//! ```no_run
//! # async fn demo() {
//! use smsgate::sim::{SimConfig, Simulator};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let sim = Simulator::start(listener, SimConfig::default()).await;
//! // ... point an SMPP client at sim.local_addr() ...
//! sim.shutdown().await;
//! # }
//! ```

pub mod cli;
pub mod client;
mod config;
mod frame;
mod mo;
mod receipt;
mod session;
mod stats;
pub mod text;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use tokio::{
    net::TcpListener,
    sync::{Notify, mpsc, oneshot},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{
    ConfigError, IdFormat, PrefixError, PrefixStatus, ReceiptMode, ReceiptState, SimConfig,
    SimSettings,
};
pub use mo::MoMessage;
pub use session::BindKind;
pub use stats::SimStats;

use receipt::RouterMsg;
use session::{Batch, SessionEntry, ToSession};

/// How long shutdown lets sessions finish their unbind before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Duplicate detection remembers this many accepted submits per generation (two generations
/// are kept), so memory stays bounded in long runs.
const DUPLICATE_WINDOW: usize = 1 << 20;

/// Errors from [`Simulator::inject_mo`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// No session is bound as receiver or transceiver.
    #[error("no receiver or transceiver session is bound")]
    NoReceiver,
    /// The session closed before answering the deliver_sm.
    #[error("the session closed before answering the deliver_sm")]
    SessionClosed,
    /// No deliver_sm_resp within [`SimConfig::mo_ack_timeout`].
    #[error("no deliver_sm_resp within {timeout:?}")]
    ResponseTimeout { timeout: Duration },
    /// The ESME answered the deliver_sm with an error status.
    #[error("deliver_sm refused with command_status {command_status:#010x}")]
    Refused { command_status: u32 },
    /// The message cannot be encoded (address too long, not ASCII, ...).
    #[error("invalid MO message: {0}")]
    InvalidMo(String),
}

/// One submit_sm (or data_sm) as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSubmit {
    /// The connection it came on (numbered from 1 in accept order).
    pub session: u64,
    pub via_data_sm: bool,
    pub source_addr: String,
    pub destination_addr: String,
    pub data_coding: u8,
    pub esm_class: u8,
    pub registered_delivery: u8,
    /// Body bytes, UDH included when esm_class has UDHI (0x40).
    pub short_message: Vec<u8>,
    pub message_payload: Option<Vec<u8>>,
    /// SAR TLVs: (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum).
    pub sar: Option<(u16, u8, u8)>,
    /// The id assigned, for accepted submits.
    pub message_id: Option<String>,
    /// The status answered; `None` if the connection was dropped instead (`drop_every`).
    pub command_status: Option<u32>,
}

impl ReceivedSubmit {
    pub fn udhi(&self) -> bool {
        self.esm_class & 0x40 != 0
    }

    /// The message text, decoded by data_coding with any UDH skipped (best effort).
    pub fn text(&self) -> String {
        let body = match &self.message_payload {
            Some(payload) if self.short_message.is_empty() => payload,
            _ => &self.short_message,
        };
        text::decode_short_message(self.data_coding, self.udhi(), body)
    }
}

/// A running simulator. Cheap to clone; when the last clone is dropped without
/// [`shutdown`](Simulator::shutdown), its tasks are told to stop.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    handle: Arc<Handle>,
}

/// Owned by the user-facing clones only (tasks hold `Inner`), so dropping them stops the tasks.
struct Handle {
    tasks: Mutex<Vec<JoinHandle<()>>>,
    cancel: CancellationToken,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub(crate) struct Inner {
    local_addr: SocketAddr,
    /// Snapshotted by sessions once per read; replaced whole by `set_config`.
    config: Mutex<Arc<SimConfig>>,
    pub(crate) counters: stats::Counters,
    pub(crate) next_message_id: AtomicU64,
    pub(crate) drop_counter: AtomicU64,
    pub(crate) started: Instant,
    log: Mutex<SubmitLog>,
    /// The last binds asked for (accepted or not), oldest first.
    bind_log: Mutex<VecDeque<BindRecord>>,
    submit_notify: Notify,
    pub(crate) bind_notify: Notify,
    pub(crate) sessions: DashMap<u64, SessionEntry>,
    next_session_id: AtomicU64,
    round_robin: AtomicUsize,
    pub(crate) router_tx: mpsc::UnboundedSender<RouterMsg>,
}

struct SubmitLog {
    entries: VecDeque<ReceivedSubmit>,
    /// Accepted-submit fingerprints, current and previous generation.
    seen: HashSet<u64>,
    seen_before: HashSet<u64>,
}

/// A bind request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRecord {
    pub kind: BindKind,
    pub system_id: String,
    pub interface_version: u8,
    pub address_range: String,
}

const BIND_LOG_CAPACITY: usize = 1000;

impl Inner {
    pub(crate) fn record_bind(&self, r: BindRecord) {
        let mut log = self.bind_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == BIND_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(r);
    }

    pub(crate) fn config(&self) -> Arc<SimConfig> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds one read's submits to the log, then wakes `wait_for_submits`.
    pub(crate) fn record(&self, batch: Batch) {
        if batch.received == 0 {
            return;
        }
        let capacity = self.config().submit_log_capacity;
        let mut duplicates = 0;
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            for fingerprint in batch.accepted {
                if log.seen.contains(&fingerprint) || log.seen_before.contains(&fingerprint) {
                    duplicates += 1;
                } else {
                    if log.seen.len() >= DUPLICATE_WINDOW {
                        log.seen_before = std::mem::take(&mut log.seen);
                    }
                    log.seen.insert(fingerprint);
                }
            }
            log.entries.extend(batch.entries);
            while log.entries.len() > capacity {
                log.entries.pop_front();
            }
            // Counted under the lock so that a waiter that sees the count also sees the entries.
            stats::bump(&self.counters.duplicates, duplicates);
            stats::bump(&self.counters.submits_total, batch.received);
        }
        self.submit_notify.notify_waiters();
    }

    /// A session bound as receiver/transceiver (of `system_id` if given), round-robin.
    pub(crate) fn pick_receiver(
        &self,
        system_id: Option<&str>,
    ) -> Option<mpsc::UnboundedSender<ToSession>> {
        let mut candidates: Vec<(u64, mpsc::UnboundedSender<ToSession>)> = self
            .sessions
            .iter()
            .filter(|e| {
                e.can_receive && system_id.is_none_or(|id| e.system_id.as_deref() == Some(id))
            })
            .map(|e| (*e.key(), e.tx.clone()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by_key(|(id, _)| *id);
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % candidates.len();
        Some(candidates.swap_remove(i).1)
    }

    fn receivers(&self) -> usize {
        self.sessions.iter().filter(|e| e.can_receive).count()
    }
}

impl Simulator {
    /// Starts accepting SMPP connections on `listener` and returns at once. The simulator
    /// runs until [`shutdown`](Simulator::shutdown) (or until every handle is dropped).
    pub async fn start(listener: TcpListener, cfg: SimConfig) -> Simulator {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let first_id = cfg.first_message_id.unwrap_or_else(clock_message_id);
        let (router_tx, router_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            local_addr,
            config: Mutex::new(Arc::new(cfg)),
            counters: stats::Counters::default(),
            next_message_id: AtomicU64::new(first_id),
            drop_counter: AtomicU64::new(0),
            started: Instant::now(),
            bind_log: Mutex::new(VecDeque::new()),
            log: Mutex::new(SubmitLog {
                entries: VecDeque::new(),
                seen: HashSet::new(),
                seen_before: HashSet::new(),
            }),
            submit_notify: Notify::new(),
            bind_notify: Notify::new(),
            sessions: DashMap::new(),
            next_session_id: AtomicU64::new(1),
            round_robin: AtomicUsize::new(0),
            router_tx,
        });
        let cancel = CancellationToken::new();
        let router = tokio::spawn(receipt::run_router(
            inner.clone(),
            router_rx,
            cancel.clone(),
        ));
        let acceptor = tokio::spawn(accept_loop(inner.clone(), listener, cancel.clone()));
        info!(addr = %local_addr, "smsc simulator listening");
        Simulator {
            inner,
            handle: Arc::new(Handle {
                tasks: Mutex::new(vec![acceptor, router]),
                cancel,
            }),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn stats(&self) -> SimStats {
        self.inner.counters.snapshot()
    }

    /// The last bind requests received (at most 1000), oldest first.
    pub fn binds(&self) -> Vec<BindRecord> {
        let log = self
            .inner
            .bind_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect()
    }

    /// The submits received, oldest first (the last [`SimConfig::submit_log_capacity`]).
    pub fn submits(&self) -> Vec<ReceivedSubmit> {
        let log = self.inner.log.lock().unwrap_or_else(|e| e.into_inner());
        log.entries.iter().cloned().collect()
    }

    /// How many logged submits went to `dest` (a leading `+` on either side is ignored).
    pub fn submits_to(&self, dest: &str) -> usize {
        let dest = dest.trim_start_matches('+');
        let log = self.inner.log.lock().unwrap_or_else(|e| e.into_inner());
        log.entries
            .iter()
            .filter(|s| s.destination_addr.trim_start_matches('+') == dest)
            .count()
    }

    /// The configuration in force.
    pub fn config(&self) -> SimConfig {
        (*self.inner.config()).clone()
    }

    /// Changes behaviour at run time; each session applies it from its next read.
    pub fn set_config(&self, f: impl FnOnce(&mut SimConfig)) {
        let mut guard = self.inner.config.lock().unwrap_or_else(|e| e.into_inner());
        let mut cfg = (**guard).clone();
        f(&mut cfg);
        *guard = Arc::new(cfg);
    }

    /// Sends `mo` as a deliver_sm (esm_class 0, or 0x40 with UDHI) on a bound receiver or
    /// transceiver session and waits for its deliver_sm_resp.
    pub async fn inject_mo(&self, mo: MoMessage) -> Result<(), SimError> {
        let deliver = mo.to_deliver_sm()?;
        let timeout = self.inner.config().mo_ack_timeout;
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut msg = ToSession::Mo {
            deliver,
            reply: reply_tx,
        };
        // A session may close between choosing it and sending; then try another.
        loop {
            let tx = self.inner.pick_receiver(None).ok_or(SimError::NoReceiver)?;
            match tx.send(msg) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => msg = back,
            }
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Err(_) => Err(SimError::ResponseTimeout { timeout }),
            Ok(Err(_)) => Err(SimError::SessionClosed),
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(command_status)) => Err(SimError::Refused { command_status }),
        }
    }

    /// Waits until at least `n` submits have been received in total; false on timeout.
    pub async fn wait_for_submits(&self, n: usize, timeout: Duration) -> bool {
        let reached = || self.inner.counters.submits_total.load(Ordering::Relaxed) >= n as u64;
        wait_until(&self.inner.submit_notify, reached, timeout).await
    }

    /// Waits until at least `n` sessions are bound as receiver or transceiver.
    pub async fn wait_for_receivers(&self, n: usize, timeout: Duration) -> bool {
        wait_until(
            &self.inner.bind_notify,
            || self.inner.receivers() >= n,
            timeout,
        )
        .await
    }

    /// Closes every open connection at once, without unbind (a network failure).
    pub fn drop_connections(&self) {
        for entry in self.inner.sessions.iter() {
            entry.kill.cancel();
        }
    }

    /// Stops accepting, unbinds every bound session (waiting briefly for unbind_resp), and
    /// returns when every task of this simulator has ended.
    pub async fn shutdown(self) {
        self.handle.cancel.cancel();
        let tasks =
            std::mem::take(&mut *self.handle.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        info!(stats = %self.stats(), "smsc simulator stopped");
    }
}

/// Waits for `reached()` re-checking on every notification; the `Notified` future is
/// enabled before the check so that no wake-up between check and wait is lost.
async fn wait_until(notify: &Notify, reached: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if reached() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return reached();
        }
    }
}

/// Message numbers start from the clock (seconds << 24) so ids stay unique across restarts
/// unless a run averages over 16M submits per second of its lifetime.
fn clock_message_id() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    secs << 24
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, cancel: CancellationToken) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses are batched per wake-up already; Nagle would only add latency.
                    let _ = stream.set_nodelay(true);
                    let id = inner.next_session_id.fetch_add(1, Ordering::Relaxed);
                    sessions.spawn(session::run(inner.clone(), stream, peer, id, cancel.clone()));
                }
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = sessions.join_next() => if joined.is_none() { break },
            _ = &mut deadline => {
                sessions.shutdown().await;
                break;
            }
        }
    }
}
