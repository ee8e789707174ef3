//! Keeps a carrier's binds up: each bind slot connects, binds, runs a session and, when the
//! session fails, reconnects with exponential backoff and jitter. Each slot owns a submit
//! channel that outlives its sessions, so a reconnect loses nothing that was queued.
//! A slot binds as a transceiver, or (`bind_type = "transmitter_receiver"`) as a transmitter
//! next to a receiver slot of its own. When a reload changes the carrier's connection settings,
//! the slots re-bind one at a time (see [`CarrierHandle::reconfigure`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;

use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::session::{
    self, BindMode, BindOptions, Completion, InboundHandler, SessionConfig, SessionEnd,
    SessionError, SessionObserver, SubmitRequest, SubmitResult,
};
use crate::{
    config::{self, BindType},
    telemetry::Metrics,
};

/// The dispatcher's view of a carrier.
pub struct CarrierHandle {
    pub id: Arc<str>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    bound: watch::Receiver<usize>,
    /// Since when no session has been bound (`None` while one is).
    down_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// The carrier's settings; the slots re-bind when its connection settings change.
    config: watch::Sender<Arc<config::Carrier>>,
}

/// A bind slot that takes submits: its queue and whether its session is bound now.
struct Slot {
    queue: mpsc::Sender<SubmitRequest>,
    up: Arc<AtomicBool>,
}

impl CarrierHandle {
    /// Sessions currently bound that take submits.
    pub fn bound(&self) -> usize {
        *self.bound.borrow()
    }

    /// How long the carrier has had no bound session (`None` while it has one).
    pub fn down_for(&self) -> Option<Duration> {
        let since = *self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|s| s.elapsed())
    }

    /// Waits until at least one session is bound (or the carrier task is gone).
    pub async fn wait_bound(&self) {
        let mut rx = self.bound.clone();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Queues a submit on a bind slot, round robin, preferring bound sessions with room so a
    /// slot that is reconnecting (or re-binding) holds nothing up; waits for room when every
    /// queue is full. Gives the request back if the carrier has stopped.
    pub async fn submit(&self, req: SubmitRequest) -> Result<(), SubmitRequest> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut req = req;
        for i in 0..n {
            let slot = &self.slots[(start + i) % n];
            if !slot.up.load(Ordering::Relaxed) {
                continue;
            }
            match slot.queue.try_send(req) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(r)) => req = r,
                Err(mpsc::error::TrySendError::Closed(r)) => return Err(r),
            }
        }
        self.slots[start % n].queue.send(req).await.map_err(|e| e.0)
    }

    /// The carrier's settings as last reloaded.
    pub fn settings(&self) -> Arc<config::Carrier> {
        self.config.borrow().clone()
    }

    /// Follows the carrier's settings across reloads.
    pub fn watch_settings(&self) -> watch::Receiver<Arc<config::Carrier>> {
        self.config.subscribe()
    }

    /// Applies a reloaded carrier config. When its connection settings (address, TLS,
    /// credentials, bind options, window, timers) changed, the binds are renewed one at a
    /// time: each drains what it has in flight, unbinds and binds again with the new
    /// settings, and the next one starts only once it is bound. Returns whether it re-binds.
    pub fn reconfigure(&self, new: Arc<config::Carrier>) -> bool {
        self.config.send_if_modified(|cur| {
            let rebind = cur.connection != new.connection;
            *cur = new;
            rebind
        })
    }
}

struct Observer {
    in_flight: prometheus::IntGauge,
    malformed: prometheus::IntCounter,
}

impl SessionObserver for Observer {
    fn in_flight(&self, delta: i64) {
        self.in_flight.add(delta);
    }
    fn malformed(&self) {
        self.malformed.inc();
    }
}

fn session_config(cfg: &config::Carrier, mode: BindMode) -> SessionConfig {
    SessionConfig {
        carrier: Arc::from(cfg.id.as_str()),
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        system_type: cfg.system_type.clone(),
        window: cfg.window,
        response_timeout: cfg.response_timeout,
        enquire_link: cfg.enquire_link,
        max_command_length: cfg.max_command_length,
        drain_timeout: cfg.response_timeout,
        bind: BindOptions {
            mode,
            interface_version: cfg.interface_version,
            address_range: cfg.address_range.clone(),
        },
    }
}

/// Starts the bind slots of one carrier: `binds` transceivers, or `binds` pairs of a
/// transmitter and a receiver.
pub fn start(
    cfg: Arc<config::Carrier>,
    inbound: Arc<dyn InboundHandler>,
    completions: mpsc::UnboundedSender<Completion>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (CarrierHandle, Vec<JoinHandle<()>>) {
    let id: Arc<str> = Arc::from(cfg.id.as_str());
    let (bound_tx, bound_rx) = watch::channel(0usize);
    let bound_tx = Arc::new(bound_tx);
    let down_since = Arc::new(std::sync::Mutex::new(Some(std::time::Instant::now())));
    {
        // Track when the carrier last lost its final bind, for failover to other carriers.
        let (mut rx, down) = (bound_rx.clone(), down_since.clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let n = *rx.borrow_and_update();
                let mut d = down.lock().unwrap_or_else(|p| p.into_inner());
                match (n, *d) {
                    (0, None) => *d = Some(std::time::Instant::now()),
                    (1.., Some(_)) => *d = None,
                    _ => {}
                }
            }
        });
    }
    let (config_tx, config_rx) = watch::channel(cfg.clone());
    let observer: Arc<dyn SessionObserver> = Arc::new(Observer {
        in_flight: metrics.in_flight.with_label_values(&[&cfg.id]),
        malformed: metrics.malformed_pdus.with_label_values(&[&cfg.id]),
    });
    metrics.binds_up.with_label_values(&[&cfg.id]).set(0);
    let modes: &[BindMode] = match cfg.bind_type {
        BindType::Transceiver => &[BindMode::Transceiver],
        BindType::TransmitterReceiver => &[BindMode::Transmitter, BindMode::Receiver],
    };
    // Re-binds after a reload go one slot at a time.
    let rebind_turn = Arc::new(tokio::sync::Mutex::new(()));
    let mut slots = Vec::new();
    let mut tasks = Vec::new();
    for slot in 0..cfg.binds {
        for &mode in modes {
            // The queue in front of a session holds one window: enough to refill it at once.
            // A receiver never reads its queue; nothing is ever put there.
            let (tx, rx) = mpsc::channel(cfg.window.max(16));
            let up = Arc::new(AtomicBool::new(false));
            if mode.can_submit() {
                slots.push(Slot {
                    queue: tx,
                    up: up.clone(),
                });
            }
            tasks.push(tokio::spawn(slot_loop(
                SlotCtx {
                    slot,
                    mode,
                    config: config_rx.clone(),
                    rebind_turn: rebind_turn.clone(),
                    inbound: inbound.clone(),
                    completions: completions.clone(),
                    observer: observer.clone(),
                    metrics: metrics.clone(),
                    bound: bound_tx.clone(),
                    up,
                },
                rx,
                shutdown.clone(),
            )));
        }
    }
    (
        CarrierHandle {
            id,
            slots,
            next: AtomicUsize::new(0),
            bound: bound_rx,
            down_since,
            config: config_tx,
        },
        tasks,
    )
}

/// What a bind slot works with.
struct SlotCtx {
    slot: usize,
    mode: BindMode,
    config: watch::Receiver<Arc<config::Carrier>>,
    rebind_turn: Arc<tokio::sync::Mutex<()>>,
    inbound: Arc<dyn InboundHandler>,
    completions: mpsc::UnboundedSender<Completion>,
    observer: Arc<dyn SessionObserver>,
    metrics: Arc<Metrics>,
    /// Bound sessions of the carrier that take submits.
    bound: Arc<watch::Sender<usize>>,
    /// This slot's session is bound.
    up: Arc<AtomicBool>,
}

async fn slot_loop(
    ctx: SlotCtx,
    mut requests: mpsc::Receiver<SubmitRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    let SlotCtx {
        slot,
        mode,
        mut config,
        rebind_turn,
        inbound,
        completions,
        observer,
        metrics,
        bound,
        up,
    } = ctx;
    let mut cfg = config.borrow_and_update().clone();
    let carrier_id = cfg.id.clone();
    let carrier = carrier_id.as_str();
    let bind = mode.name();
    let binds_up = metrics.binds_up.with_label_values(&[carrier]);
    let mut backoff = cfg.reconnect_min;
    // Held from the moment this slot starts a re-bind until its new session is bound.
    let turn: std::sync::Mutex<Option<tokio::sync::OwnedMutexGuard<()>>> =
        std::sync::Mutex::new(None);
    let mut config_open = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        cfg = config.borrow_and_update().clone();
        let session_cfg = session_config(&cfg, mode);
        let session_cfg_key = cfg.connection.clone();
        let stream = match open(&cfg).await {
            Ok(s) => s,
            Err((label, error)) => {
                tracing::warn!(carrier, slot, bind, %error, retry_in = ?backoff, "cannot open a connection to the carrier");
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, label])
                    .inc();
                if wait_or_shutdown(jitter(backoff), &mut shutdown).await {
                    break;
                }
                backoff = (backoff * 2).min(cfg.reconnect_max);
                continue;
            }
        };
        let was_bound = AtomicBool::new(false);
        let mut rebinding = false;
        let result = {
            let (stop_tx, stop_rx) = watch::channel(false);
            let session = session::run(
                stream,
                &session_cfg,
                session::Links {
                    requests: &mut requests,
                    completions: &completions,
                    inbound: inbound.clone(),
                    observer: observer.clone(),
                },
                stop_rx,
                || {
                    was_bound.store(true, Ordering::Relaxed);
                    up.store(true, Ordering::Relaxed);
                    if mode.can_submit() {
                        bound.send_modify(|n| *n += 1);
                    }
                    binds_up.inc();
                    metrics
                        .bind_attempts
                        .with_label_values(&[carrier, "ok"])
                        .inc();
                    tracing::info!(carrier, slot, bind, "bound");
                    // A re-bind is done: the next slot may start its own.
                    turn.lock().unwrap_or_else(|p| p.into_inner()).take();
                },
            );
            tokio::pin!(session);
            let mut stopping = false;
            let mut waiting_turn: Option<BoxFuture<'static, tokio::sync::OwnedMutexGuard<()>>> =
                None;
            loop {
                tokio::select! {
                    r = &mut session => break r,
                    changed = shutdown.changed(), if !stopping => {
                        if changed.is_err() || *shutdown.borrow() {
                            stopping = true;
                            let _ = stop_tx.send(true);
                        }
                    }
                    changed = config.changed(), if config_open && !stopping && waiting_turn.is_none() => {
                        match changed {
                            Ok(()) if config.borrow_and_update().connection != session_cfg_key => {
                                waiting_turn = Some(Box::pin(rebind_turn.clone().lock_owned()));
                            }
                            Ok(()) => {}
                            Err(_) => config_open = false,
                        }
                    }
                    guard = async { waiting_turn.as_mut().expect("guarded").await }, if waiting_turn.is_some() => {
                        waiting_turn = None;
                        *turn.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
                        tracing::info!(carrier, slot, bind, "connection settings changed: draining to re-bind");
                        rebinding = true;
                        stopping = true;
                        let _ = stop_tx.send(true);
                    }
                }
            }
        };
        if was_bound.load(Ordering::Relaxed) {
            up.store(false, Ordering::Relaxed);
            if mode.can_submit() {
                bound.send_modify(|n| *n = n.saturating_sub(1));
            }
            binds_up.dec();
            backoff = cfg.reconnect_min;
        }
        match result {
            Ok(SessionEnd::Drained) if rebinding && !*shutdown.borrow() => {
                tracing::info!(
                    carrier,
                    slot,
                    bind,
                    "unbound; binding with the new settings"
                );
                continue;
            }
            Ok(SessionEnd::Drained) => {
                tracing::info!(carrier, slot, bind, "unbound");
                break;
            }
            Ok(SessionEnd::Failed(e)) => {
                tracing::warn!(carrier, slot, bind, error = %e, "session ended; reconnecting");
            }
            Err(SessionError::BindRefused { status }) => {
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, "refused"])
                    .inc();
                tracing::warn!(
                    carrier, slot, bind, status = %crate::smpp::status::name(status), retry_in = ?backoff,
                    "bind refused"
                );
            }
            Err(e) => {
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, "connect_error"])
                    .inc();
                tracing::warn!(carrier, slot, bind, error = %e, retry_in = ?backoff, "bind failed");
            }
        }
        if rebinding && !*shutdown.borrow() {
            // Drain cut short by a failure: bind with the new settings right away.
            continue;
        }
        if wait_or_shutdown(jitter(backoff), &mut shutdown).await {
            break;
        }
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
    turn.lock().unwrap_or_else(|p| p.into_inner()).take();
    // Shutting down: what never reached a session goes back to the queue.
    requests.close();
    while let Ok(r) = requests.try_recv() {
        let _ = completions.send(Completion {
            ctx: r.ctx,
            result: SubmitResult::NotSent,
            latency: None,
        });
    }
}

/// Connects (and, for smpps, completes the TLS handshake) within the response timeout.
/// Errors carry the `bind_attempts` result label and a description.
async fn open(cfg: &config::Carrier) -> Result<Box<dyn Io>, (&'static str, String)> {
    let connect = TcpStream::connect((cfg.host.as_str(), cfg.port));
    let stream = match tokio::time::timeout(cfg.response_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(("connect_error", e.to_string())),
        Err(_) => return Err(("connect_error", "connect timed out".into())),
    };
    // Small PDUs must not wait for Nagle; we batch writes ourselves.
    let _ = stream.set_nodelay(true);
    let Some((tls, name)) = &cfg.tls else {
        return Ok(Box::new(stream));
    };
    let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name.clone(), stream);
    match tokio::time::timeout(cfg.response_timeout, handshake).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(("tls_error", format!("TLS handshake failed: {e}"))),
        Err(_) => Err(("tls_error", "TLS handshake timed out".into())),
    }
}

/// A carrier connection: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Sleeps unless shutdown comes first; true when shutting down.
async fn wait_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// ±25 % so many gateways do not reconnect to a recovering carrier in lockstep.
fn jitter(d: Duration) -> Duration {
    let f = 0.75 + rand::random::<f64>() * 0.5;
    d.mul_f64(f)
}
