//! The benchmark's webhook receiver: an axum endpoint on `127.0.0.1:0` that checks every
//! request's Standard Webhooks signature (and timestamp) against the run's secret, counts the
//! events by type, and times the event each message is waited on:
//!
//! - `e2e`: `message.status` with status `delivered`, from the client's HTTP 202 (the load
//!   generator records the accept instant per message id in an [`Awaited`]).
//! - `mo`: `message.received`, from the moment the simulator was asked to send the MO (the
//!   ticket is read back from the `#<ticket>` tag of the body).
//!
//! A request whose signature does not verify is answered `401` (as a real receiver would, so
//! the daemon retries it) and counted; the run then reports an error. Bodies and numbers are
//! never logged.

use std::{
    borrow::Cow,
    hash::Hash,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use dashmap::{DashMap, mapref::entry::Entry};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle, time::Instant};

use super::{BenchError, Latency, http};

/// Path the sink listens on.
pub(crate) const PATH: &str = "/hooks";
/// Standard Webhooks receivers refuse timestamps further than this from their clock.
const TIMESTAMP_TOLERANCE_S: i64 = 300;
/// How long the sink may take to close its connections after the daemon stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message stands between its start (accepted, injected) and its awaited webhook.
#[derive(Debug, Clone, Copy)]
enum Track {
    Started(Instant),
    /// The webhook arrived before the start was recorded (the client had not yet read the
    /// 202 when the whole pipeline had run): timed when the start comes.
    Early(Instant),
    Done,
}

/// Start instants of the messages a run waits on, by key, and the latency from start to the
/// awaited webhook. Shared by the load generator (which calls [`Awaited::start`]) and the sink.
pub struct Awaited<K> {
    map: DashMap<K, Track>,
    latency: Mutex<Histogram<u64>>,
    started: AtomicU64,
    completed: AtomicU64,
    duplicates: AtomicU64,
    early: AtomicU64,
    origin: Instant,
    /// Microseconds after `origin` of the last completion.
    last_us: AtomicU64,
}

impl<K> std::fmt::Debug for Awaited<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Awaited")
            .field("started", &self.started.load(Ordering::Relaxed))
            .field("completed", &self.completed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash> Awaited<K> {
    pub(crate) fn new() -> Self {
        Self {
            map: DashMap::new(),
            latency: Mutex::new(http::histogram()),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            early: AtomicU64::new(0),
            origin: Instant::now(),
            last_us: AtomicU64::new(0),
        }
    }

    /// The message `key` started at `at` (its 202 was read, or its MO was handed over).
    pub fn start(&self, key: K, at: Instant) {
        self.started.fetch_add(1, Ordering::Relaxed);
        match self.map.entry(key) {
            Entry::Vacant(v) => {
                v.insert(Track::Started(at));
            }
            Entry::Occupied(mut o) => {
                if let Track::Early(webhook) = *o.get() {
                    self.early.fetch_add(1, Ordering::Relaxed);
                    self.record(webhook.saturating_duration_since(at));
                    o.insert(Track::Done);
                }
            }
        }
    }

    /// The awaited webhook of `key` arrived at `at`.
    fn complete(&self, key: K, at: Instant) {
        match self.map.entry(key) {
            Entry::Occupied(mut o) => match *o.get() {
                Track::Started(started) => {
                    o.insert(Track::Done);
                    self.record(at.saturating_duration_since(started));
                }
                Track::Early(_) | Track::Done => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            Entry::Vacant(v) => {
                v.insert(Track::Early(at));
            }
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        let us = at.saturating_duration_since(self.origin).as_micros() as u64;
        self.last_us.fetch_max(us, Ordering::Relaxed);
    }

    fn record(&self, d: Duration) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(d.as_micros().max(1) as u64);
    }

    /// Messages whose awaited webhook arrived (each counted once).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// When the last awaited webhook arrived, if any did.
    pub(crate) fn last_completion(&self) -> Option<Instant> {
        let us = self.last_us.load(Ordering::Relaxed);
        (self.completed() > 0).then(|| self.origin + Duration::from_micros(us))
    }
}

/// Counts of one sink, shared with its handler.
struct SinkState {
    keys: Vec<Vec<u8>>,
    requests: AtomicU64,
    verified: AtomicU64,
    signature_failures: AtomicU64,
    malformed: AtomicU64,
    status_events: AtomicU64,
    received_events: AtomicU64,
    other_events: AtomicU64,
    /// `message.status` events with a final state other than `delivered`.
    not_delivered: AtomicU64,
    /// `message.received` events without a ticket tag this run wrote.
    unmatched: AtomicU64,
    delivered: Arc<Awaited<String>>,
    received: Arc<Awaited<u64>>,
}

/// A running webhook receiver; [`Sink::stop`] ends it.
pub(crate) struct Sink {
    addr: SocketAddr,
    secret: String,
    state: Arc<SinkState>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Binds `127.0.0.1:0` and serves with a fresh random 32-byte secret.
    pub(crate) async fn start() -> Result<Sink, BenchError> {
        let key: [u8; 32] = rand::random();
        Sink::start_with(format!("whsec_{}", STANDARD.encode(key))).await
    }

    async fn start_with(secret: String) -> Result<Sink, BenchError> {
        let key = crate::webhook::parse_secret(&secret)
            .map_err(|e| BenchError::Setup(format!("webhook secret: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::Setup(format!("cannot bind the webhook sink: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Setup(format!("webhook sink: {e}")))?;
        let state = Arc::new(SinkState {
            keys: vec![key],
            requests: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            signature_failures: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            status_events: AtomicU64::new(0),
            received_events: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            not_delivered: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            delivered: Arc::new(Awaited::new()),
            received: Arc::new(Awaited::new()),
        });
        let app = Router::new()
            .route(PATH, post(receive))
            .with_state(state.clone());
        let (shutdown, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            // An error here ends the sink; the run then times out waiting for webhooks.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Sink {
            addr,
            secret,
            state,
            shutdown,
            task,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// The `whsec_` secret the daemon must sign with (goes into the generated config only).
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// Where the load generator records 202s (message id -> instant).
    pub(crate) fn delivered(&self) -> Arc<Awaited<String>> {
        self.state.delivered.clone()
    }

    /// Where the MO injectors record injections (ticket -> instant).
    pub(crate) fn received(&self) -> Arc<Awaited<u64>> {
        self.state.received.clone()
    }

    pub(crate) fn signature_failures(&self) -> u64 {
        self.state.signature_failures.load(Ordering::Relaxed)
    }

    /// Messages whose final `message.status` was not `delivered`.
    pub(crate) fn not_delivered(&self) -> u64 {
        self.state.not_delivered.load(Ordering::Relaxed)
    }

    /// The counts so far, for the summary. `which` picks the awaited event; `expected` is how
    /// many messages wait on it; `t0` is when the run's load started.
    pub(crate) fn summary(
        &self,
        which: AwaitedEvent,
        expected: u64,
        t0: Instant,
    ) -> WebhookSummary {
        let s = &self.state;
        let (completed, duplicates, early, latency, last) = match which {
            AwaitedEvent::Delivered => awaited_parts(&s.delivered),
            AwaitedEvent::Received => awaited_parts(&s.received),
        };
        let time_to_last = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(t0));
        let requests = s.requests.load(Ordering::Relaxed);
        let per_sec = |n: u64| {
            if time_to_last.is_zero() {
                0.0
            } else {
                n as f64 / time_to_last.as_secs_f64()
            }
        };
        WebhookSummary {
            awaited_event: which.name(),
            expected,
            completed,
            requests,
            verified: s.verified.load(Ordering::Relaxed),
            signature_failures: s.signature_failures.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            status_events: s.status_events.load(Ordering::Relaxed),
            received_events: s.received_events.load(Ordering::Relaxed),
            other_events: s.other_events.load(Ordering::Relaxed),
            not_delivered: s.not_delivered.load(Ordering::Relaxed),
            unmatched: s.unmatched.load(Ordering::Relaxed),
            duplicates,
            before_start_seen: early,
            time_to_last,
            completed_per_sec: per_sec(completed),
            requests_per_sec: per_sec(requests),
            latency,
        }
    }

    /// Stops serving (after the daemon, whose drain flushes its webhooks).
    pub(crate) async fn stop(self) {
        let _ = self.shutdown.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            abort.abort();
        }
    }
}

fn awaited_parts<K: Eq + Hash>(a: &Awaited<K>) -> (u64, u64, u64, Latency, Option<Instant>) {
    let latency = http::latency(&a.latency.lock().unwrap_or_else(|p| p.into_inner()));
    (
        a.completed(),
        a.duplicates.load(Ordering::Relaxed),
        a.early.load(Ordering::Relaxed),
        latency,
        a.last_completion(),
    )
}

/// Which webhook a run waits on per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwaitedEvent {
    /// `message.status` with status `delivered`.
    Delivered,
    /// `message.received`.
    Received,
}

impl AwaitedEvent {
    fn name(self) -> &'static str {
        match self {
            Self::Delivered => "message.status delivered",
            Self::Received => "message.received",
        }
    }
}

/// What the webhook sink saw during a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WebhookSummary {
    /// The event each message was waited on.
    pub awaited_event: &'static str,
    /// Messages waiting on it (accepted, or MO acknowledged).
    pub expected: u64,
    /// Of those, messages whose awaited event arrived (each once).
    pub completed: u64,
    /// Webhook requests received, all types, retries included.
    pub requests: u64,
    /// Requests whose signature verified.
    pub verified: u64,
    /// Requests with a missing, wrong or stale signature (answered 401).
    pub signature_failures: u64,
    /// Verified requests whose body was not an event this sink understands.
    pub malformed: u64,
    pub status_events: u64,
    pub received_events: u64,
    pub other_events: u64,
    /// `message.status` events with a final state other than `delivered`.
    pub not_delivered: u64,
    /// `message.received` events without a tag of this run.
    pub unmatched: u64,
    /// Awaited events that came again (delivery is at least once).
    pub duplicates: u64,
    /// Awaited events that arrived before the client had read the 202 (latency 0).
    pub before_start_seen: u64,
    /// From the start of the load to the last awaited event.
    #[serde(rename = "time_to_last_s", serialize_with = "super::report::secs")]
    pub time_to_last: Duration,
    /// `completed` / `time_to_last`.
    pub completed_per_sec: f64,
    /// `requests` / `time_to_last`.
    pub requests_per_sec: f64,
    /// Start (202 read, MO handed to the simulator) to awaited webhook.
    pub latency: Latency,
}

impl WebhookSummary {
    /// What makes a run with webhooks a failure.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.signature_failures > 0 {
            p.push(format!(
                "{} webhook signature failures",
                self.signature_failures
            ));
        }
        if self.malformed > 0 {
            p.push(format!("{} malformed webhook events", self.malformed));
        }
        if self.not_delivered > 0 {
            p.push(format!("{} messages not delivered", self.not_delivered));
        }
        if self.unmatched > 0 {
            p.push(format!(
                "{} message.received events of unknown texts",
                self.unmatched
            ));
        }
        if self.completed < self.expected {
            p.push(format!(
                "{} of {} messages have no {} webhook",
                self.expected - self.completed,
                self.expected,
                self.awaited_event
            ));
        }
        p
    }
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    data: EventData<'a>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks the Standard Webhooks headers of one request against `keys`.
pub(super) fn verified(keys: &[Vec<u8>], headers: &HeaderMap, body: &[u8], now: i64) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return false;
    };
    (now - ts).abs() <= TIMESTAMP_TOLERANCE_S && crate::webhook::verify(keys, id, ts, body, sig)
}

/// The ticket of an MO body written by [`super::mo::mo_body`]: the digits after the last `#`.
pub(crate) fn ticket_of(body: &str) -> Option<u64> {
    let tail = &body[body.rfind('#')? + 1..];
    let digits = tail.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

async fn receive(State(s): State<Arc<SinkState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    s.requests.fetch_add(1, Ordering::Relaxed);
    if !verified(&s.keys, &headers, &body, now_unix()) {
        s.signature_failures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    s.verified.fetch_add(1, Ordering::Relaxed);
    let Ok(event) = serde_json::from_slice::<Event<'_>>(&body) else {
        // Signed by the daemon but not an event: a bug there. Acknowledged so it is not
        // retried for ever, counted so the run fails.
        s.malformed.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NO_CONTENT;
    };
    match (
        &*event.kind,
        event.data.id,
        event.data.status,
        event.data.body,
    ) {
        ("message.status", Some(id), Some(status), _) => {
            s.status_events.fetch_add(1, Ordering::Relaxed);
            match &*status {
                "delivered" => s.delivered.complete(id.into_owned(), at),
                "undelivered" | "failed" | "expired" => {
                    s.not_delivered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        ("message.received", _, _, Some(text)) => {
            s.received_events.fetch_add(1, Ordering::Relaxed);
            match ticket_of(&text) {
                Some(ticket) => s.received.complete(ticket, at),
                None => {
                    s.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        ("message.status" | "message.received", ..) => {
            s.malformed.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            s.other_events.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};
    use hyper::{Request, client::conn::http1};
    use hyper_util::rt::TokioIo;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    async fn post(sink: &Sink, id: &str, ts: i64, body: &str, signature: &str) -> u16 {
        let stream = tokio::net::TcpStream::connect(sink.addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post(PATH)
            .header("host", sink.addr.to_string())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    }

    fn sign(id: &str, ts: i64, body: &str) -> String {
        let key = crate::webhook::parse_secret(SECRET).unwrap();
        crate::webhook::sign(&[key], id, ts, body.as_bytes())
    }

    #[tokio::test]
    async fn sink_should_refuse_and_count_bad_signatures_and_time_good_ones() {
        let sink = Sink::start_with(SECRET.into()).await.unwrap();
        sink.delivered().start("msg_1".into(), Instant::now());
        let ts = now_unix();
        let delivered =
            r#"{"id":"evt_1","type":"message.status","data":{"id":"msg_1","status":"delivered"}}"#;

        // Signed with another key, for another body, or too old: refused, not counted.
        let other = crate::webhook::sign(&[vec![7u8; 32]], "evt_1", ts, delivered.as_bytes());
        assert_eq!(post(&sink, "evt_1", ts, delivered, &other).await, 401);
        let wrong_body = sign("evt_1", ts, "{}");
        assert_eq!(post(&sink, "evt_1", ts, delivered, &wrong_body).await, 401);
        let old = ts - 3600;
        let stale = sign("evt_1", old, delivered);
        assert_eq!(post(&sink, "evt_1", old, delivered, &stale).await, 401);
        assert_eq!(sink.signature_failures(), 3);
        assert_eq!(sink.delivered().completed(), 0);

        // The right signature: counted once, a repeat is a duplicate.
        let good = sign("evt_1", ts, delivered);
        assert_eq!(post(&sink, "evt_1", ts, delivered, &good).await, 204);
        assert_eq!(post(&sink, "evt_1", ts, delivered, &good).await, 204);
        let received = r#"{"id":"evt_2","type":"message.received","data":{"id":"in_1","body":"Running late #42"}}"#;
        sink.received().start(42, Instant::now());
        let sig = sign("evt_2", ts, received);
        assert_eq!(post(&sink, "evt_2", ts, received, &sig).await, 204);

        let s = sink.summary(AwaitedEvent::Delivered, 1, Instant::now());
        assert_eq!((s.requests, s.verified, s.signature_failures), (6, 3, 3));
        assert_eq!((s.completed, s.duplicates, s.status_events), (1, 1, 2));
        assert_eq!(s.received_events, 1);
        assert!(s.latency.max_ms > 0.0);
        assert_eq!(
            s.problems(),
            vec!["3 webhook signature failures".to_owned()]
        );
        assert_eq!(sink.received().completed(), 1);
        sink.stop().await;
    }

    #[test]
    fn awaited_should_time_a_webhook_that_beats_its_start() {
        let a: Awaited<String> = Awaited::new();
        let t = Instant::now();
        a.complete("m".into(), t);
        assert_eq!(a.completed(), 1);
        a.start("m".into(), t + Duration::from_millis(3));
        a.complete("m".into(), t + Duration::from_millis(4));
        let (completed, duplicates, early, latency, _) = awaited_parts(&a);
        assert_eq!((completed, duplicates, early), (1, 1, 1));
        assert!(latency.max_ms < 0.01, "{latency:?}");
    }

    #[test]
    fn ticket_of_should_read_the_last_tag() {
        assert_eq!(ticket_of("Running late #123, see you"), Some(123));
        assert_eq!(ticket_of("#1 and #77"), Some(77));
        assert_eq!(ticket_of("no tag"), None);
        assert_eq!(ticket_of("trailing #"), None);
    }
}
