//! The delivery loop. One task (the loop) owns the view of the outbox: it fetches due events,
//! routes each to its app's lane and keeps the `seq`s it handed out, so `due_events` never
//! returns an event that is still being delivered, and a conversation's next event only comes
//! due once the previous one is recorded (per-conversation order). Each lane (one per app with
//! an endpoint) starts a delivery task per event under its own semaphore, so a slow or dead
//! endpoint only ever fills its own lane. A delivery task signs and POSTs, releases its permit
//! as soon as the response is in, and hands the outcome to the recorder, which writes the
//! outcomes that came in meanwhile to the store in one operation and then tells the loop.

use std::{
    collections::{HashMap, HashSet},
    error::Error as StdError,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, StatusCode, Uri,
    header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT},
};
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{Endpoint, WebhookConfig, WebhookMetrics, signer::Signer};
use crate::{
    domain::{EventId, Millis, now_millis},
    store::{EventOutcome, OutboxEvent, Store, StoreResult},
};

/// Most events asked of the store at once.
const BATCH: usize = 1000;
/// Most `seq`s remembered as "seen, not deliverable now" (their lane is full, or their app has
/// no endpoint) so the next fetches skip them; beyond this they are simply fetched again.
const MAX_PARKED: usize = 100_000;
/// A response body is read (so the connection can be reused) up to this size, then dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most outcomes the recorder writes in one store operation.
const RECORD_BATCH: usize = 1024;
/// Fetches triggered by completions are at least this far apart.
const MIN_FETCH_GAP: Duration = Duration::from_millis(2);
/// Under load, fetch again after this many completions (a fetch reads every pending event's
/// conversation head, so it is not cheap)...
const REFETCH_AFTER: usize = BATCH / 2;
/// ...or as soon as anything completes when fewer than this many are in flight.
const LOW_WATER: usize = BATCH / 4;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const GONE_ERROR: &str = "endpoint answered 410 Gone";

/// One shared client: keep-alive pool, https through rustls, plain http allowed.
type HttpClient = crate::net::HttpsClient<Full<Bytes>>;

/// Delivers the outbox until `shutdown` turns true (or its sender is dropped), then waits up to
/// `cfg.drain_timeout` for deliveries in flight to be recorded. Anything not recorded stays
/// pending and goes out again at the next start (at-least-once). `endpoints` is keyed by app
/// id; events of apps without one stay pending. Producers call `wake.notify_one()` after
/// enqueueing; otherwise the outbox is polled every `cfg.poll_interval`.
pub async fn run_dispatcher(
    store: Arc<dyn Store>,
    endpoints: HashMap<String, Endpoint>,
    cfg: WebhookConfig,
    metrics: Arc<WebhookMetrics>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hard_stop = CancellationToken::new();
    let stop_lanes = CancellationToken::new();
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        client: crate::net::https_client(cfg.connect_timeout),
        cfg: cfg.clone(),
        hard_stop: hard_stop.clone(),
    });
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (record_tx, record_rx) = mpsc::unbounded_channel();
    tokio::spawn(run_recorder(ctx.clone(), record_rx, done_tx));
    let mut router = Router::start(&ctx, endpoints, &metrics, &record_tx, &stop_lanes);
    // Lanes also stop if this future is dropped instead of shut down.
    let _lanes = stop_lanes.clone().drop_guard();
    // Only lanes and deliveries hold recorder senders now, and only the recorder holds the
    // done sender: `recv` ends once all of them are gone.
    drop(record_tx);
    let gauge = CancellationToken::new();
    tokio::spawn(run_outbox_gauge(store.clone(), metrics, gauge.clone()));
    let _gauge = gauge.drop_guard();

    let mut tick = tokio::time::interval(cfg.poll_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut want_fetch = true;
    let mut next_fetch = Instant::now();
    let mut completed = 0usize;
    let mut lanes_open = !router.lanes.is_empty();
    loop {
        while let Ok(d) = done_rx.try_recv() {
            want_fetch |= router.complete(d);
            completed += 1;
        }
        if completed >= REFETCH_AFTER || (completed > 0 && router.in_flight.len() < LOW_WATER) {
            want_fetch = true;
        }
        if *shutdown.borrow() {
            break;
        }
        if want_fetch && Instant::now() >= next_fetch {
            completed = 0;
            next_fetch = Instant::now() + MIN_FETCH_GAP;
            // The poll only matters when nothing else triggers fetches.
            tick.reset();
            match router.fetch(&*store).await {
                Ok(more) => want_fetch = more,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the webhook outbox");
                    next_fetch = Instant::now() + Duration::from_secs(1);
                    want_fetch = true;
                }
            }
            continue;
        }
        tokio::select! {
            biased;
            r = shutdown.changed() => {
                if r.is_err() {
                    break; // Nobody can stop us any more: stop now.
                }
            }
            d = done_rx.recv(), if lanes_open => match d {
                Some(d) => {
                    want_fetch |= router.complete(d);
                    completed += 1;
                }
                None => lanes_open = false,
            },
            // New events. When every lane has a backlog in hand, the next refetch (after
            // REFETCH_AFTER completions, or the poll) picks them up: a fetch scans every
            // pending event's conversation, and one per commit was a tenth of the daemon's
            // CPU under load.
            _ = wake.notified() => want_fetch |= router.a_lane_runs_low(),
            _ = tick.tick() => want_fetch = true,
            _ = tokio::time::sleep_until(next_fetch), if want_fetch => {}
        }
    }

    // Drain: no new deliveries start; those under way get `drain_timeout` to be recorded.
    stop_lanes.cancel();
    let started = router.in_flight.len();
    drop(router);
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        while done_rx.recv().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        hard_stop.cancel();
        tracing::warn!(
            timeout = ?cfg.drain_timeout,
            "webhook deliveries still running at the drain deadline were abandoned; \
             they stay pending and go out again at the next start"
        );
    }
    tracing::debug!(handed_out = started, "webhook dispatcher stopped");
}

/// Everything a delivery needs, shared by all lanes.
struct Ctx {
    store: Arc<dyn Store>,
    client: HttpClient,
    cfg: WebhookConfig,
    /// Abandons deliveries still running at the drain deadline.
    hard_stop: CancellationToken,
}

/// A delivery finished and its outcome is recorded (or recording failed).
#[derive(Debug)]
struct Done {
    seq: i64,
    lane: usize,
}

/// A delivery finished; its outcome waits for the recorder.
#[derive(Debug)]
struct Finished {
    seq: i64,
    lane: usize,
    outcome: EventOutcome,
}

/// Loop-side state of one app's lane.
struct Lane {
    tx: mpsc::Sender<OutboxEvent>,
    shared: Arc<LaneShared>,
    /// Handed to the lane and not yet `Done`.
    outstanding: usize,
    /// Seen while the lane was full; skipped by fetches until it drains.
    parked: Vec<i64>,
}

/// What the lane task and its deliveries share.
struct LaneShared {
    idx: usize,
    app: String,
    /// `None` when the app has no (usable) webhook_url: only events with their own url go.
    url: Option<Uri>,
    signer: Signer,
    permits: Arc<Semaphore>,
    m: LaneMetrics,
    /// The endpoint is failing (logged once when it starts, once when it recovers).
    failing: AtomicBool,
    gone_logged: AtomicBool,
}

/// Metric handles resolved once per app (no label lookups per event).
struct LaneMetrics {
    delivered: IntCounter,
    retried: IntCounter,
    dead: IntCounter,
    class: [IntCounter; Class::ALL.len()],
    latency: Histogram,
    in_flight: IntGauge,
    dead_max_age: IntCounter,
    dead_gone: IntCounter,
    dead_invalid: IntCounter,
}

impl LaneMetrics {
    fn new(m: &WebhookMetrics, app: &str) -> Self {
        Self {
            delivered: m.deliveries.with_label_values(&[app, "delivered"]),
            retried: m.deliveries.with_label_values(&[app, "retry"]),
            dead: m.deliveries.with_label_values(&[app, "dead"]),
            class: Class::ALL.map(|c| m.attempts.with_label_values(&[app, c.as_str()])),
            latency: m.latency.with_label_values(&[app]),
            in_flight: m.in_flight.with_label_values(&[app]),
            dead_max_age: m.dead_letters.with_label_values(&[app, "max_age"]),
            dead_gone: m.dead_letters.with_label_values(&[app, "gone"]),
            dead_invalid: m.dead_letters.with_label_values(&[app, "invalid"]),
        }
    }
}

/// The loop's bookkeeping: lanes, what is in flight, what is parked.
struct Router {
    lanes: Vec<Lane>,
    by_app: HashMap<String, usize>,
    /// Most events a lane holds (queued + sending + being recorded).
    lane_cap: usize,
    in_flight: HashSet<i64>,
    parked_in_lanes: usize,
    /// Events of apps without an endpoint: they wait for a config that gives them one.
    unroutable: HashSet<i64>,
    unroutable_apps: HashSet<String>,
}

impl Router {
    fn start(
        ctx: &Arc<Ctx>,
        endpoints: HashMap<String, Endpoint>,
        metrics: &WebhookMetrics,
        record: &mpsc::UnboundedSender<Finished>,
        stop: &CancellationToken,
    ) -> Self {
        let concurrency = ctx.cfg.per_endpoint_concurrency.max(1);
        let lane_cap = concurrency + BATCH;
        let mut lanes = Vec::new();
        let mut by_app = HashMap::new();
        let mut apps: Vec<_> = endpoints.into_iter().collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        for (app, ep) in apps {
            if ep.keys.is_empty() {
                tracing::error!(app = %app, "webhook endpoint has no signing key; its events stay pending");
                continue;
            }
            let url = match ep.url.as_str() {
                "" => None,
                s => match parse_url(s) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::error!(app = %app, error = %e, "unusable webhook_url; its events stay pending");
                        None
                    }
                },
            };
            let idx = lanes.len();
            let shared = Arc::new(LaneShared {
                idx,
                m: LaneMetrics::new(metrics, &app),
                app: app.clone(),
                url,
                signer: Signer::new(&ep.keys),
                permits: Arc::new(Semaphore::new(concurrency)),
                failing: AtomicBool::new(false),
                gone_logged: AtomicBool::new(false),
            });
            let (tx, rx) = mpsc::channel(lane_cap);
            tokio::spawn(run_lane(
                shared.clone(),
                ctx.clone(),
                rx,
                record.clone(),
                stop.clone(),
            ));
            by_app.insert(app, idx);
            lanes.push(Lane {
                tx,
                shared,
                outstanding: 0,
                parked: Vec::new(),
            });
        }
        Self {
            lanes,
            by_app,
            lane_cap,
            in_flight: HashSet::new(),
            parked_in_lanes: 0,
            unroutable: HashSet::new(),
            unroutable_apps: HashSet::new(),
        }
    }

    /// Some lane holds fewer than `LOW_WATER` events (an idle app's lane always does).
    fn a_lane_runs_low(&self) -> bool {
        self.lanes.iter().any(|l| l.outstanding < LOW_WATER)
    }

    /// How many more events the lanes can take.
    fn room(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| self.lane_cap.saturating_sub(l.outstanding))
            .sum()
    }

    /// Fetches due events and hands them to their lanes. True when more are probably due
    /// and there is room for them (fetch again soon).
    async fn fetch(&mut self, store: &dyn Store) -> StoreResult<bool> {
        let room = self.room();
        if room == 0 {
            return Ok(false);
        }
        let limit = room.min(BATCH);
        let mut exclude =
            Vec::with_capacity(self.in_flight.len() + self.parked_in_lanes + self.unroutable.len());
        exclude.extend(self.in_flight.iter().copied());
        exclude.extend(self.lanes.iter().flat_map(|l| l.parked.iter().copied()));
        exclude.extend(self.unroutable.iter().copied());
        let events = store.due_events(now_millis(), limit, exclude).await?;
        let full = events.len() == limit;
        let mut progress = false;
        for ev in events {
            progress |= self.route(ev);
        }
        // Without progress (everything seen was over MAX_PARKED) the next fetch would return
        // the same events: leave it to completions and the poll.
        Ok(full && progress && self.room() > 0)
    }

    /// Hands an event to its lane, or remembers it as not deliverable now. False when it
    /// could do neither (the next fetch will return it again).
    fn route(&mut self, ev: OutboxEvent) -> bool {
        let has_room = self.parked_in_lanes + self.unroutable.len() < MAX_PARKED;
        let lane = self
            .by_app
            .get(ev.app_id.as_str())
            .map(|&i| &mut self.lanes[i]);
        let Some(lane) = lane.filter(|l| ev.url.is_some() || l.shared.url.is_some()) else {
            if self.unroutable_apps.insert(ev.app_id.clone()) {
                tracing::debug!(
                    app = %ev.app_id,
                    "no webhook endpoint for this app; its events stay pending"
                );
            }
            return has_room && self.unroutable.insert(ev.seq);
        };
        if lane.outstanding >= self.lane_cap {
            if !has_room {
                return false;
            }
            lane.parked.push(ev.seq);
            self.parked_in_lanes += 1;
            return true;
        }
        let seq = ev.seq;
        // Never full: the channel holds `lane_cap` and `outstanding` counts what it holds.
        // Closed only while shutting down; the event then stays pending.
        if lane.tx.try_send(ev).is_err() {
            return false;
        }
        lane.outstanding += 1;
        self.in_flight.insert(seq);
        true
    }

    /// Bookkeeping for a finished delivery. True when a full lane reopened (fetch again).
    fn complete(&mut self, d: Done) -> bool {
        self.in_flight.remove(&d.seq);
        let Some(lane) = self.lanes.get_mut(d.lane) else {
            return false;
        };
        lane.outstanding = lane.outstanding.saturating_sub(1);
        if !lane.parked.is_empty() && lane.outstanding <= self.lane_cap / 2 {
            self.parked_in_lanes -= lane.parked.len();
            lane.parked.clear();
            return true;
        }
        false
    }
}

/// Starts one delivery task per event, at most `per_endpoint_concurrency` at a time. Stops at
/// `stop`: events still queued here stay pending in the store.
async fn run_lane(
    lane: Arc<LaneShared>,
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<OutboxEvent>,
    record: mpsc::UnboundedSender<Finished>,
    stop: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
        };
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            p = lane.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (lane, ctx, record) = (lane.clone(), ctx.clone(), record.clone());
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = ctx.hard_stop.cancelled() => {}
                _ = deliver(&ctx, &lane, ev, permit, &record) => {}
            }
        });
    }
}

/// Writes finished deliveries' outcomes to the store, as many as came in while the previous
/// write was committing in one operation (the webhook's share of the store writer was one
/// operation per event), then tells the loop. Ends when every sender is gone and all is
/// written, or at `hard_stop` (what is not written stays pending and goes out again).
async fn run_recorder(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<Finished>,
    done: mpsc::UnboundedSender<Done>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    loop {
        let n = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => return,
            n = rx.recv_many(&mut batch, RECORD_BATCH) => n,
        };
        if n == 0 {
            return;
        }
        let mut finished = Vec::with_capacity(batch.len());
        let outcomes = batch
            .drain(..)
            .map(|f: Finished| {
                finished.push(Done {
                    seq: f.seq,
                    lane: f.lane,
                });
                (f.seq, f.outcome)
            })
            .collect();
        let recorded = tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => return,
            r = ctx.store.record_events(outcomes) => r,
        };
        if let Err(e) = recorded {
            // Not recorded: the events are still pending and will be delivered again.
            tracing::error!(events = finished.len(), error = %e, "cannot record webhook outcomes");
        }
        for d in finished {
            let _ = done.send(d);
        }
    }
}

/// What one attempt came to, before deciding what to record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempted {
    Status(StatusCode),
    Timeout(Duration),
    Connect(String),
    Failed(String),
    /// The request cannot be made (bad url): retrying cannot help.
    Unsendable(String),
}

/// Attempt classes for `smsgate_webhook_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    S2xx,
    S3xx,
    S4xx,
    S5xx,
    Timeout,
    Connect,
    Error,
}

impl Class {
    const ALL: [Class; 7] = [
        Class::S2xx,
        Class::S3xx,
        Class::S4xx,
        Class::S5xx,
        Class::Timeout,
        Class::Connect,
        Class::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Class::S2xx => "2xx",
            Class::S3xx => "3xx",
            Class::S4xx => "4xx",
            Class::S5xx => "5xx",
            Class::Timeout => "timeout",
            Class::Connect => "connect_error",
            Class::Error => "error",
        }
    }

    fn of(a: &Attempted) -> Class {
        match a {
            Attempted::Status(s) if s.is_success() => Class::S2xx,
            Attempted::Status(s) if s.is_redirection() => Class::S3xx,
            Attempted::Status(s) if s.is_client_error() => Class::S4xx,
            Attempted::Status(s) if s.is_server_error() => Class::S5xx,
            Attempted::Status(_) => Class::Error,
            Attempted::Timeout(_) => Class::Timeout,
            Attempted::Connect(_) => Class::Connect,
            Attempted::Failed(_) | Attempted::Unsendable(_) => Class::Error,
        }
    }
}

/// Why an event became a dead letter (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadReason {
    MaxAge,
    Gone,
    Invalid,
}

/// One delivery: sign, POST, hand the outcome to the recorder.
async fn deliver(
    ctx: &Ctx,
    lane: &LaneShared,
    ev: OutboxEvent,
    permit: OwnedSemaphorePermit,
    record: &mpsc::UnboundedSender<Finished>,
) {
    let OutboxEvent {
        seq,
        id,
        payload,
        url,
        attempts,
        created_at,
        ..
    } = ev;
    lane.m.in_flight.inc();
    let attempted = send(ctx, lane, &id, url.as_deref(), payload).await;
    lane.m.in_flight.dec();
    // The endpoint's slot is free; recording (a group commit) happens outside it.
    drop(permit);
    let (outcome, dead) = decide(
        &attempted,
        attempts,
        created_at,
        now_millis(),
        &ctx.cfg,
        rand::random::<f64>(),
    );
    observe(lane, &id, attempts + 1, &attempted, &outcome, dead);
    let _ = record.send(Finished {
        seq,
        lane: lane.idx,
        outcome,
    });
}

async fn send(
    ctx: &Ctx,
    lane: &LaneShared,
    id: &EventId,
    url: Option<&str>,
    payload: String,
) -> Attempted {
    let uri = match url {
        Some(u) => match parse_url(u) {
            Ok(u) => u,
            Err(e) => return Attempted::Unsendable(e),
        },
        None => match &lane.url {
            Some(u) => u.clone(),
            None => return Attempted::Unsendable("no webhook url".into()),
        },
    };
    let ts = now_millis().div_euclid(1000);
    let req = match signed_request(&lane.signer, uri, id.as_str(), ts, payload) {
        Ok(r) => r,
        Err(e) => return Attempted::Unsendable(e.into()),
    };

    let started = Instant::now();
    let deadline = started + ctx.cfg.request_timeout;
    let resp = match tokio::time::timeout_at(deadline, ctx.client.request(req)).await {
        Err(_) => return Attempted::Timeout(ctx.cfg.request_timeout),
        Ok(Err(e)) if e.is_connect() => return Attempted::Connect(error_chain(&e)),
        Ok(Err(e)) => return Attempted::Failed(error_chain(&e)),
        Ok(Ok(r)) => r,
    };
    lane.m.latency.observe(started.elapsed().as_secs_f64());
    let status = resp.status();
    // Read (a bounded amount of) the body so the connection goes back to the pool; its
    // content does not matter and a body that fails or overruns only costs the connection.
    let _ = tokio::time::timeout_at(
        deadline,
        Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect(),
    )
    .await;
    Attempted::Status(status)
}

/// The POST of one event: the JSON body and the Standard Webhooks headers, signed at `ts`
/// (Unix seconds). Errs when the id or signature cannot be a header value.
pub(crate) fn signed_request(
    signer: &Signer,
    uri: Uri,
    id: &str,
    ts: i64,
    payload: String,
) -> Result<Request<Full<Bytes>>, &'static str> {
    let id_value = HeaderValue::from_str(id).map_err(|_| "event id is not a valid header value")?;
    let signature = HeaderValue::try_from(signer.sign(id, ts, payload.as_bytes()))
        .map_err(|_| "signature is not a valid header value")?;
    let mut req = Request::new(Full::new(Bytes::from(payload)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("smsgate-webhooks/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(WEBHOOK_ID, id_value);
    h.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(ts));
    h.insert(WEBHOOK_SIGNATURE, signature);
    Ok(req)
}

/// Turns an attempt into what the store records. `unit` in [0, 1) draws the jitter.
fn decide(
    attempted: &Attempted,
    previous_attempts: u32,
    created_at: Millis,
    now: Millis,
    cfg: &WebhookConfig,
    unit: f64,
) -> (EventOutcome, Option<DeadReason>) {
    let error = match attempted {
        Attempted::Status(s) if s.is_success() => return (EventOutcome::Delivered, None),
        Attempted::Status(StatusCode::GONE) if cfg.disable_on_410 => {
            return (
                EventOutcome::Dead {
                    error: GONE_ERROR.into(),
                },
                Some(DeadReason::Gone),
            );
        }
        Attempted::Unsendable(e) => {
            return (
                EventOutcome::Dead {
                    error: format!("cannot send: {e}"),
                },
                Some(DeadReason::Invalid),
            );
        }
        Attempted::Status(s) => format!("endpoint answered {s}"),
        Attempted::Timeout(t) => format!("no response within {t:?}"),
        Attempted::Connect(e) | Attempted::Failed(e) => e.clone(),
    };
    let attempt = previous_attempts.saturating_add(1);
    let max_age = duration_millis(cfg.max_age);
    let deadline = created_at.saturating_add(max_age);
    if now >= deadline {
        let error = format!(
            "gave up after {attempt} attempt{} over {}: {error}",
            if attempt == 1 { "" } else { "s" },
            humantime::format_duration(Duration::from_secs(
                (now - created_at).max(0) as u64 / 1000
            ))
        );
        return (EventOutcome::Dead { error }, Some(DeadReason::MaxAge));
    }
    let delay = duration_millis(backoff(cfg, attempt, unit)).max(1);
    // The last try falls on the deadline rather than after it.
    let next_attempt_at = now.saturating_add(delay).min(deadline);
    (
        EventOutcome::Retry {
            next_attempt_at,
            error,
        },
        None,
    )
}

/// Full jitter: uniform in [0, min(max_backoff, initial_backoff * 2^(attempt-1))).
fn backoff(cfg: &WebhookConfig, attempt: u32, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let ceiling = cfg
        .initial_backoff
        .saturating_mul(1u32 << exp.min(31))
        .min(cfg.max_backoff);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Metrics and logs of one attempt, in one place.
fn observe(
    lane: &LaneShared,
    id: &EventId,
    attempt: u32,
    attempted: &Attempted,
    outcome: &EventOutcome,
    dead: Option<DeadReason>,
) {
    let class = Class::of(attempted);
    lane.m.class[class as usize].inc();
    match outcome {
        EventOutcome::Delivered => {
            lane.m.delivered.inc();
            tracing::trace!(app = %lane.app, event = %id, attempt, "webhook delivered");
            if lane.failing.swap(false, Ordering::Relaxed) {
                tracing::info!(app = %lane.app, "webhook endpoint is accepting deliveries again");
            }
        }
        EventOutcome::Retry { error, .. } => {
            lane.m.retried.inc();
            tracing::debug!(app = %lane.app, event = %id, attempt, error = %error, "webhook attempt failed; will retry");
            if !lane.failing.swap(true, Ordering::Relaxed) {
                tracing::warn!(app = %lane.app, error = %error, "webhook endpoint is failing; events are retried with backoff");
            }
        }
        EventOutcome::Dead { error } => {
            lane.m.dead.inc();
            match dead {
                Some(DeadReason::Gone) => {
                    lane.m.dead_gone.inc();
                    if !lane.gone_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(app = %lane.app, "webhook endpoint answered 410 Gone; events it refuses become dead letters");
                    }
                }
                Some(DeadReason::Invalid) => lane.m.dead_invalid.inc(),
                Some(DeadReason::MaxAge) | None => lane.m.dead_max_age.inc(),
            }
            if dead != Some(DeadReason::Gone) {
                tracing::warn!(app = %lane.app, event = %id, attempt, error = %error, "webhook event dead-lettered");
            }
        }
    }
}

/// An absolute http(s) URL, or why not (without repeating it: it may hold a token).
fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|_| "not a valid URL".to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err("URL must be absolute http:// or https://".into()),
    }
}

/// `scheme://host:port` of a URL, for logs: paths and credentials may carry secrets.
pub(crate) fn redact_url(s: &str) -> String {
    match s.parse::<Uri>() {
        Ok(u) => {
            let host = u
                .authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or_default())
                .unwrap_or_default();
            format!("{}://{host}", u.scheme_str().unwrap_or("?"))
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// `error: cause: cause` (hyper's top-level errors alone say little).
fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Keeps `smsgate_webhook_outbox_depth` current (about every second) until `stop`.
async fn run_outbox_gauge(
    store: Arc<dyn Store>,
    metrics: Arc<WebhookMetrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.outbox_depth().await {
            Ok(n) => metrics
                .outbox_depth
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => tracing::debug!(error = %e, "cannot read the webhook outbox depth"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WebhookConfig {
        WebhookConfig::default()
    }

    const HOUR: i64 = 3600 * 1000;

    #[test]
    fn backoff_should_double_up_to_the_cap() {
        let c = cfg();
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(&c, 2, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&c, 4, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(&c, 12, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff(&c, 1000, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff(&c, 3, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(&c, 3, 0.0), Duration::ZERO);
    }

    #[test]
    fn any_2xx_should_be_delivered() {
        for s in [200, 201, 202, 204, 299] {
            let st = StatusCode::from_u16(s).unwrap();
            let (o, d) = decide(&Attempted::Status(st), 0, 0, 1, &cfg(), 0.5);
            assert_eq!((o, d), (EventOutcome::Delivered, None));
        }
    }

    #[test]
    fn gone_should_be_dead_only_when_disable_on_410_is_set() {
        let a = Attempted::Status(StatusCode::GONE);
        let (o, d) = decide(&a, 0, 0, 1, &cfg(), 0.5);
        assert_eq!(
            o,
            EventOutcome::Dead {
                error: GONE_ERROR.into()
            }
        );
        assert_eq!(d, Some(DeadReason::Gone));
        let c = WebhookConfig {
            disable_on_410: false,
            ..cfg()
        };
        assert!(matches!(
            decide(&a, 0, 0, 1, &c, 0.5).0,
            EventOutcome::Retry { .. }
        ));
    }

    #[test]
    fn failures_should_retry_with_jittered_backoff_until_max_age() {
        let now = 10 * HOUR;
        let a = Attempted::Status(StatusCode::INTERNAL_SERVER_ERROR);
        let (o, _) = decide(&a, 2, now - HOUR, now, &cfg(), 0.5);
        // Third attempt: ceiling 20 s, half of it.
        assert_eq!(
            o,
            EventOutcome::Retry {
                next_attempt_at: now + 10_000,
                error: "endpoint answered 500 Internal Server Error".into()
            }
        );
        // Near the deadline the next try is at the deadline.
        let created = now - 72 * HOUR + 1000;
        let (o, _) = decide(&a, 40, created, now, &cfg(), 0.99);
        assert!(
            matches!(o, EventOutcome::Retry { next_attempt_at, .. } if next_attempt_at == created + 72 * HOUR)
        );
        // Past it: dead, with the count and the last error.
        let (o, d) = decide(
            &Attempted::Timeout(Duration::from_secs(10)),
            80,
            now - 73 * HOUR,
            now,
            &cfg(),
            0.5,
        );
        assert_eq!(d, Some(DeadReason::MaxAge));
        let EventOutcome::Dead { error } = o else {
            panic!("{o:?}")
        };
        assert!(
            error.starts_with("gave up after 81 attempts over 3days 1h"),
            "{error}"
        );
        assert!(error.ends_with("no response within 10s"), "{error}");
    }

    #[test]
    fn an_unsendable_event_should_be_dead_at_once() {
        let (o, d) = decide(
            &Attempted::Unsendable("not a valid URL".into()),
            0,
            0,
            1,
            &cfg(),
            0.5,
        );
        assert_eq!(
            o,
            EventOutcome::Dead {
                error: "cannot send: not a valid URL".into()
            }
        );
        assert_eq!(d, Some(DeadReason::Invalid));
    }

    #[test]
    fn urls_should_be_absolute_http_and_logged_without_path_or_credentials() {
        assert!(parse_url("https://example.com/hooks?token=x").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/").is_ok());
        assert!(parse_url("/relative").is_err());
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("not a url").is_err());
        assert_eq!(
            redact_url("https://user:pw@hooks.example.com:8443/path?token=secret"),
            "https://hooks.example.com:8443"
        );
    }
}
