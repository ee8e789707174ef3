//! Keeps a carrier's binds up: each bind slot connects, binds, runs a session and, when the
//! session fails, reconnects with exponential backoff and jitter. Each slot owns a submit
//! channel that outlives its sessions, so a reconnect loses nothing that was queued.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::session::{
    self, Completion, InboundHandler, SessionConfig, SessionEnd, SessionError, SessionObserver,
    SubmitRequest, SubmitResult,
};
use crate::{config, telemetry::Metrics};

/// The dispatcher's view of a carrier.
pub struct CarrierHandle {
    pub id: Arc<str>,
    slots: Vec<mpsc::Sender<SubmitRequest>>,
    next: AtomicUsize,
    bound: watch::Receiver<usize>,
    /// Since when no session has been bound (`None` while one is).
    down_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl CarrierHandle {
    /// Sessions currently bound.
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

    /// Queues a submit on the next bind slot, waiting for room in its window queue.
    /// Gives the request back if the carrier has stopped.
    pub async fn submit(&self, req: SubmitRequest) -> Result<(), SubmitRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].send(req).await.map_err(|e| e.0)
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

/// Starts the bind slots of one carrier.
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
    let session_cfg = SessionConfig {
        carrier: id.clone(),
        system_id: cfg.system_id.clone(),
        password: cfg.password.clone(),
        system_type: cfg.system_type.clone(),
        window: cfg.window,
        response_timeout: cfg.response_timeout,
        enquire_link: cfg.enquire_link,
        max_command_length: cfg.max_command_length,
        drain_timeout: cfg.response_timeout,
    };
    let observer: Arc<dyn SessionObserver> = Arc::new(Observer {
        in_flight: metrics.in_flight.with_label_values(&[&cfg.id]),
        malformed: metrics.malformed_pdus.with_label_values(&[&cfg.id]),
    });
    metrics.binds_up.with_label_values(&[&cfg.id]).set(0);
    let mut slots = Vec::new();
    let mut tasks = Vec::new();
    for slot in 0..cfg.binds {
        // The queue in front of a session holds one window: enough to refill it at once.
        let (tx, rx) = mpsc::channel(cfg.window.max(16));
        slots.push(tx);
        tasks.push(tokio::spawn(slot_loop(
            slot,
            cfg.clone(),
            session_cfg.clone(),
            rx,
            inbound.clone(),
            completions.clone(),
            observer.clone(),
            metrics.clone(),
            bound_tx.clone(),
            shutdown.clone(),
        )));
    }
    (
        CarrierHandle {
            id,
            slots,
            next: AtomicUsize::new(0),
            bound: bound_rx,
            down_since,
        },
        tasks,
    )
}

#[allow(clippy::too_many_arguments)]
async fn slot_loop(
    slot: usize,
    cfg: Arc<config::Carrier>,
    session_cfg: SessionConfig,
    mut requests: mpsc::Receiver<SubmitRequest>,
    inbound: Arc<dyn InboundHandler>,
    completions: mpsc::UnboundedSender<Completion>,
    observer: Arc<dyn SessionObserver>,
    metrics: Arc<Metrics>,
    bound: Arc<watch::Sender<usize>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let carrier = cfg.id.as_str();
    let binds_up = metrics.binds_up.with_label_values(&[carrier]);
    let mut backoff = cfg.reconnect_min;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let stream = match open(&cfg).await {
            Ok(s) => s,
            Err((label, error)) => {
                tracing::warn!(carrier, slot, %error, retry_in = ?backoff, "cannot open a connection to the carrier");
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
        let mut was_bound = false;
        let result = session::run(
            stream,
            &session_cfg,
            session::Links {
                requests: &mut requests,
                completions: &completions,
                inbound: inbound.clone(),
                observer: observer.clone(),
            },
            shutdown.clone(),
            || {
                was_bound = true;
                bound.send_modify(|n| *n += 1);
                binds_up.inc();
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, "ok"])
                    .inc();
                tracing::info!(carrier, slot, "bound");
            },
        )
        .await;
        if was_bound {
            bound.send_modify(|n| *n = n.saturating_sub(1));
            binds_up.dec();
            backoff = cfg.reconnect_min;
        }
        match result {
            Ok(SessionEnd::Drained) => {
                tracing::info!(carrier, slot, "unbound");
                break;
            }
            Ok(SessionEnd::Failed(e)) => {
                tracing::warn!(carrier, slot, error = %e, "session ended; reconnecting");
            }
            Err(SessionError::BindRefused { status }) => {
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, "refused"])
                    .inc();
                tracing::warn!(
                    carrier, slot, status = %crate::smpp::status::name(status), retry_in = ?backoff,
                    "bind refused"
                );
            }
            Err(e) => {
                metrics
                    .bind_attempts
                    .with_label_values(&[carrier, "connect_error"])
                    .inc();
                tracing::warn!(carrier, slot, error = %e, retry_in = ?backoff, "bind failed");
            }
        }
        if wait_or_shutdown(jitter(backoff), &mut shutdown).await {
            break;
        }
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
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
