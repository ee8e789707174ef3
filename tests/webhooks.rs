//! Webhook delivery end to end: the dispatcher driven directly against a `SqliteStore` in a
//! temp dir, delivering to axum sinks on 127.0.0.1:0. Signatures are checked with our own
//! `verify` and with the reference python library (`tests/support/verify_webhook.py`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap};
use base64::{Engine, engine::general_purpose::STANDARD};
use futures::future::join_all;
use prometheus::Registry;
use serde_json::json;
use smsgate::{
    domain::{EventId, Millis, now_millis, rfc3339},
    store::{NewEvent, Store, sqlite::SqliteStore},
    telemetry::Metrics,
    webhook::{self, Endpoint, WebhookConfig, WebhookMetrics, parse_secret},
};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
};

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// A webhook sink: records every request and answers what the test's `respond` says.

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: Bytes,
    status: u16,
}

impl Hit {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Decides the status of a request, given it and every earlier request.
type Respond = dyn Fn(&Hit, &[Hit]) -> u16 + Send + Sync;

struct SinkState {
    hits: Mutex<Vec<Hit>>,
    respond: Box<Respond>,
}

struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl Sink {
    async fn start(respond: impl Fn(&Hit, &[Hit]) -> u16 + Send + Sync + 'static) -> Sink {
        async fn handle(
            State(s): State<Arc<SinkState>>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::http::StatusCode {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut hit = Hit {
                path: uri.path().to_owned(),
                id: h("webhook-id"),
                timestamp: h("webhook-timestamp"),
                signature: h("webhook-signature"),
                content_type: h("content-type"),
                body,
                status: 0,
            };
            // Decided under the lock so "the first N requests" means exactly N.
            let mut hits = s.hits.lock().unwrap();
            hit.status = (s.respond)(&hit, &hits);
            let status = hit.status;
            hits.push(hit);
            axum::http::StatusCode::from_u16(status).unwrap()
        }
        let state = Arc::new(SinkState {
            hits: Mutex::new(Vec::new()),
            respond: Box::new(respond),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// 2xx answers per event id.
    fn ok_counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for h in self.hits().iter().filter(|h| h.ok()) {
            *m.entry(h.id.clone()).or_insert(0) += 1;
        }
        m
    }

    async fn wait_delivered(&self, ids: &[EventId]) {
        let all = || {
            let ok = self.ok_counts();
            ids.iter().all(|id| ok.contains_key(id.as_str()))
        };
        assert!(
            eventually(all).await,
            "not every event reached the sink; got {} of {}",
            self.ok_counts().len(),
            ids.len()
        );
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and never answers (a hung backend).
async fn silent_endpoint() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (addr, task)
}

/// A loopback port with nothing listening (bound, then released).
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// Store, events, dispatcher.

fn open_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(&dir.join("smsgate.db"), 1024, Arc::new(Metrics::new()))
            .expect("store opens"),
    )
}

fn secret(fill: u8) -> String {
    format!("whsec_{}", STANDARD.encode([fill; 32]))
}

fn endpoint(app: &str, url: &str, secrets: &[String]) -> Endpoint {
    Endpoint {
        app_id: app.into(),
        url: url.into(),
        keys: secrets.iter().map(|s| parse_secret(s).unwrap()).collect(),
    }
}

/// Millisecond-scale backoff and timeouts so retries happen within a test.
fn fast() -> WebhookConfig {
    WebhookConfig {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        drain_timeout: Duration::from_millis(500),
        ..WebhookConfig::default()
    }
}

struct Event {
    id: EventId,
    payload: String,
}

fn new_event(app: &str, conversation: &str, created_at: Millis, url: Option<String>) -> NewEvent {
    let id = EventId::generate();
    let payload = json!({
        "id": id.as_str(),
        "type": "message.status",
        "created_at": rfc3339(created_at),
        "data": {"conversation": conversation, "status": "delivered", "note": "café ✓ – 日本"},
    })
    .to_string();
    NewEvent {
        id,
        app_id: app.into(),
        kind: "message.status".into(),
        conversation: conversation.into(),
        payload,
        url,
        created_at,
    }
}

async fn enqueue(store: &Arc<dyn Store>, ev: NewEvent) -> Event {
    let out = Event {
        id: ev.id.clone(),
        payload: ev.payload.clone(),
    };
    store.enqueue_event(ev).await.expect("enqueued");
    out
}

/// Enqueues `count` events of `app`, one conversation each (concurrently: group commit).
async fn enqueue_many(store: &Arc<dyn Store>, app: &str, count: usize) -> Vec<EventId> {
    let now = now_millis();
    let evs: Vec<NewEvent> = (0..count)
        .map(|i| new_event(app, &format!("{app}:+1917555{i:04}"), now, None))
        .collect();
    let ids = evs.iter().map(|e| e.id.clone()).collect();
    for r in join_all(evs.into_iter().map(|e| store.enqueue_event(e))).await {
        r.expect("enqueued");
    }
    ids
}

struct Dispatcher {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    wake: Arc<Notify>,
    metrics: Arc<WebhookMetrics>,
}

impl Dispatcher {
    fn start(store: &Arc<dyn Store>, endpoints: Vec<Endpoint>, cfg: WebhookConfig) -> Self {
        let metrics = Arc::new(WebhookMetrics::new(&Registry::new()).unwrap());
        let wake = Arc::new(Notify::new());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(webhook::run_dispatcher(
            store.clone(),
            webhook::endpoints(endpoints),
            cfg,
            metrics.clone(),
            wake.clone(),
            rx,
        ));
        Self {
            shutdown,
            task,
            wake,
            metrics,
        }
    }

    fn count(&self, app: &str, result: &str) -> u64 {
        self.metrics
            .deliveries
            .with_label_values(&[app, result])
            .get()
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("dispatcher stops after shutdown")
            .expect("dispatcher task");
    }
}

async fn wait_outbox_empty(store: &Arc<dyn Store>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let depth = store.outbox_depth().await.unwrap();
        if depth == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox still holds {depth} events"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The independent check: python's `standardwebhooks`.

const VERIFY_PY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/verify_webhook.py"
);

/// True when python3 and `standardwebhooks` are there. Missing is a failure under CI and a
/// notice otherwise.
fn python_verifier_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with the standardwebhooks package (pip install standardwebhooks)"
        );
        eprintln!(
            "NOTICE: python3 with `standardwebhooks` not found; skipping the independent \
             signature check (pip install standardwebhooks)"
        );
    }
    ok
}

/// Runs the reference verifier on one delivery; true when it accepts it.
fn python_verifies(secret: &str, hit: &Hit, body: &[u8]) -> bool {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg(VERIFY_PY)
        .args([secret, &hit.id, &hit.timestamp, &hit.signature])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "verify_webhook.py failed ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_should_arrive_once_signed_with_every_key_and_verify_independently() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Any 2xx is success: answer 200, 202 and 204 in turn.
    let sink = Sink::start(|_, hits| [200, 202, 204][hits.len() % 3]).await;
    let (new_key, old_key) = (secret(7), secret(42));
    let now = now_millis();
    let mut events = HashMap::new();
    for conv in 0..20 {
        for _ in 0..3 {
            let ev = new_event(
                "clinic",
                &format!("+12125551000:+1917555{conv:04}"),
                now,
                None,
            );
            let ev = enqueue(&store, ev).await;
            events.insert(ev.id.as_str().to_owned(), ev);
        }
    }
    let ids: Vec<EventId> = events.values().map(|e| e.id.clone()).collect();

    let d = Dispatcher::start(
        &store,
        vec![endpoint(
            "clinic",
            &sink.url("/hooks/smsgate?token=abc"),
            &[new_key.clone(), old_key.clone()],
        )],
        fast(),
    );
    sink.wait_delivered(&ids).await;
    wait_outbox_empty(&store).await;
    assert_eq!(d.count("clinic", "delivered"), 60);
    d.stop().await;

    let hits = sink.hits();
    assert_eq!(hits.len(), 60, "one request per event, no retries needed");
    let keys = |s: &str| vec![parse_secret(s).unwrap()];
    let now_s = now_millis() / 1000;
    for h in &hits {
        let ev = &events[&h.id];
        assert_eq!(h.path, "/hooks/smsgate");
        assert_eq!(h.content_type, "application/json");
        assert_eq!(
            h.body,
            ev.payload.as_bytes(),
            "the stored payload, byte for byte"
        );
        let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(body["id"], h.id, "webhook-id is the event id");
        let ts: i64 = h.timestamp.parse().expect("unix seconds");
        assert!((now_s - ts).abs() < 300, "timestamp {ts} is send time");
        assert_eq!(h.signature.split(' ').count(), 2, "one signature per key");
        for k in [&new_key, &old_key] {
            assert!(webhook::verify(&keys(k), &h.id, ts, &h.body, &h.signature));
        }
        assert!(!webhook::verify(
            &keys(&secret(1)),
            &h.id,
            ts,
            &h.body,
            &h.signature
        ));
    }
    assert!(sink.ok_counts().values().all(|&n| n == 1));

    if python_verifier_available() {
        for h in hits.iter().take(3) {
            for k in [&new_key, &old_key] {
                assert!(
                    python_verifies(k, h, &h.body),
                    "standardwebhooks accepts {h:?}"
                );
            }
            let mut tampered = h.body.to_vec();
            tampered[1] ^= 1;
            assert!(
                !python_verifies(&new_key, h, &tampered),
                "and refuses a changed body"
            );
            assert!(!python_verifies(&secret(1), h, &h.body), "and another key");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_should_get_every_event_exactly_once_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    const FAILURES: usize = 25;
    let sink = Sink::start(|_, hits| if hits.len() < FAILURES { 500 } else { 200 }).await;
    let now = now_millis();
    let mut ids = Vec::new();
    for i in 0..40 {
        let ev = new_event("clinic", &format!("conv-{}", i % 10), now, None);
        ids.push(enqueue(&store, ev).await.id);
    }

    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &sink.url("/"), &[secret(7)])],
        fast(),
    );
    sink.wait_delivered(&ids).await;
    wait_outbox_empty(&store).await;
    // Give a wrongly repeated delivery the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(d.count("clinic", "retry"), FAILURES as u64);
    assert_eq!(d.count("clinic", "delivered"), 40);
    d.stop().await;

    let ok = sink.ok_counts();
    assert_eq!(ok.len(), 40);
    for id in &ids {
        assert_eq!(ok[id.as_str()], 1, "event {id} answered 2xx exactly once");
    }
    assert_eq!(
        sink.hits().len(),
        40 + FAILURES,
        "every failure was retried"
    );
    assert!(
        store
            .dead_events("clinic".into(), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_should_stay_in_order_while_its_head_is_retried_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let now = now_millis();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(
            enqueue(&store, new_event("clinic", "conv-a", now, None))
                .await
                .id,
        );
        b.push(
            enqueue(&store, new_event("clinic", "conv-b", now, None))
                .await
                .id,
        );
    }
    let (a1, b_last) = (a[0].as_str().to_owned(), b[4].as_str().to_owned());
    // a1 fails at least twice, and until all of conversation b went through: if b waited
    // for a, this would never finish.
    let sink = Sink::start(move |hit, hits| {
        if hit.id != a1 {
            return 200;
        }
        let failures = hits.iter().filter(|h| h.id == a1).count();
        let b_done = hits.iter().any(|h| h.id == b_last && h.ok());
        if failures < 2 || !b_done { 503 } else { 200 }
    })
    .await;

    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &sink.url("/"), &[secret(7)])],
        fast(),
    );
    let all: Vec<EventId> = a.iter().chain(&b).cloned().collect();
    sink.wait_delivered(&all).await;
    wait_outbox_empty(&store).await;
    d.stop().await;

    let hits = sink.hits();
    let first_ok = |id: &EventId| hits.iter().position(|h| h.id == id.as_str() && h.ok());
    let first_try = |id: &EventId| hits.iter().position(|h| h.id == id.as_str());
    for conv in [&a, &b] {
        for pair in conv.windows(2) {
            let done = first_ok(&pair[0]).unwrap();
            assert!(
                first_try(&pair[1]).unwrap() > done,
                "{} was sent before {} was delivered",
                pair[1],
                pair[0]
            );
        }
    }
    assert!(
        hits.iter()
            .filter(|h| h.id == a[0].as_str() && !h.ok())
            .count()
            >= 2
    );
    assert!(first_ok(&b[4]).unwrap() < first_ok(&a[0]).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hung_endpoints_should_not_stall_another_apps_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let sink = Sink::start(|_, _| 200).await;
    let (hung, hung_task) = silent_endpoint().await;
    // More hung events than a lane holds, ahead of everything else in the outbox.
    let hung_ids = enqueue_many(&store, "hung", 1500).await;
    let dead_ids = enqueue_many(&store, "dead", 200).await;
    let live_ids = enqueue_many(&store, "clinic", 100).await;

    let cfg = WebhookConfig {
        per_endpoint_concurrency: 2,
        request_timeout: Duration::from_secs(60),
        ..fast()
    };
    let d = Dispatcher::start(
        &store,
        vec![
            endpoint("hung", &format!("http://{hung}/"), &[secret(1)]),
            endpoint(
                "dead",
                &format!("http://127.0.0.1:{}/", refused_port()),
                &[secret(2)],
            ),
            endpoint("clinic", &sink.url("/"), &[secret(3)]),
        ],
        cfg,
    );
    sink.wait_delivered(&live_ids).await;
    assert!(
        eventually(|| d.count("dead", "retry") > 200).await,
        "the refusing endpoint is retried"
    );
    // Shutdown does not wait on the hung requests beyond the drain timeout.
    d.stop().await;
    hung_task.abort();

    assert_eq!(
        store.outbox_depth().await.unwrap(),
        (hung_ids.len() + dead_ids.len()) as u64,
        "undelivered events stay pending (not dead: they are young)"
    );
    assert!(
        store
            .dead_events("dead".into(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogged_endpoint_should_not_delay_another_app_and_should_get_all_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // The busy endpoint refuses everything until the other app has all its events: if the
    // backlog held the other app up, this would never finish.
    let release = Arc::new(AtomicBool::new(false));
    let busy = {
        let release = release.clone();
        Sink::start(move |_, _| {
            if release.load(Ordering::SeqCst) {
                200
            } else {
                503
            }
        })
        .await
    };
    let other = Sink::start(|_, _| 200).await;
    // More than a lane holds, so part of the backlog waits outside the lane and is fetched
    // again as the lane drains; the other app's events come last in the outbox.
    let backlog = enqueue_many(&store, "busy", 2500).await;
    let others = enqueue_many(&store, "other", 10).await;

    let cfg = WebhookConfig {
        per_endpoint_concurrency: 4,
        ..fast()
    };
    let d = Dispatcher::start(
        &store,
        vec![
            endpoint("busy", &busy.url("/"), &[secret(1)]),
            endpoint("other", &other.url("/"), &[secret(2)]),
        ],
        cfg,
    );
    other.wait_delivered(&others).await;
    release.store(true, Ordering::SeqCst);
    busy.wait_delivered(&backlog).await;
    wait_outbox_empty(&store).await;
    d.stop().await;
    let ok = busy.ok_counts();
    assert_eq!(ok.len(), backlog.len());
    assert!(ok.values().all(|&n| n == 1), "each event succeeded once");
    assert_eq!(other.hits().len(), others.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_older_than_max_age_should_be_dead_lettered_and_replay_should_deliver_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let accept = Arc::new(AtomicBool::new(false));
    let sink = {
        let accept = accept.clone();
        Sink::start(move |_, _| {
            if accept.load(Ordering::SeqCst) {
                200
            } else {
                500
            }
        })
        .await
    };
    let two_hours_ago = now_millis() - 2 * 3600 * 1000;
    let old = enqueue(&store, new_event("clinic", "conv-old", two_hours_ago, None)).await;

    let cfg = WebhookConfig {
        max_age: Duration::from_secs(3600),
        ..fast()
    };
    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &sink.url("/"), &[secret(7)])],
        cfg,
    );
    let dead = loop {
        let dead = store.dead_events("clinic".into(), 0, 10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, old.id);
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("gave up after 1 attempt over 2h")
            && error.contains("500 Internal Server Error"),
        "{error}"
    );
    assert_eq!(
        d.metrics
            .dead_letters
            .with_label_values(&["clinic", "max_age"])
            .get(),
        1
    );

    accept.store(true, Ordering::SeqCst);
    assert_eq!(
        store
            .replay_dead("clinic".into(), Some(old.id.clone()))
            .await
            .unwrap(),
        1
    );
    d.wake.notify_one();
    sink.wait_delivered(std::slice::from_ref(&old.id)).await;
    wait_outbox_empty(&store).await;
    d.stop().await;
    assert!(
        store
            .dead_events("clinic".into(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let hits = sink.hits();
    assert_eq!(hits.len(), 2, "one failed attempt, one after the replay");
    assert_eq!(hits[1].body, old.payload.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_should_dead_letter_each_event_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let sink = Sink::start(|_, _| 410).await;
    let ids = enqueue_many(&store, "clinic", 3).await;

    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &sink.url("/"), &[secret(7)])],
        fast(),
    );
    let dead = loop {
        let dead = store.dead_events("clinic".into(), 0, 10).await.unwrap();
        if dead.len() == ids.len() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.stop().await;
    for ev in &dead {
        assert_eq!(ev.last_error.as_deref(), Some("endpoint answered 410 Gone"));
    }
    assert_eq!(sink.hits().len(), ids.len(), "no retries after 410");
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_an_app_without_endpoint_should_stay_pending_without_blocking_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let sink = Sink::start(|_, _| 200).await;
    let orphans = enqueue_many(&store, "orphan", 1200).await;
    let live = enqueue_many(&store, "clinic", 50).await;

    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &sink.url("/"), &[secret(7)])],
        fast(),
    );
    sink.wait_delivered(&live).await;
    // Let a few polls pass over the orphans.
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.stop().await;
    assert_eq!(store.outbox_depth().await.unwrap(), orphans.len() as u64);
    assert!(
        store
            .dead_events("orphan".into(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(sink.hits().iter().all(|h| h.ok()));
    assert_eq!(sink.hits().len(), live.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_its_own_url_should_go_there_signed_with_its_apps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let (main, status) = (Sink::start(|_, _| 200).await, Sink::start(|_, _| 200).await);
    let now = now_millis();
    let plain = enqueue(&store, new_event("clinic", "c1", now, None)).await;
    let own = enqueue(
        &store,
        new_event("clinic", "c2", now, Some(status.url("/status"))),
    )
    .await;

    let d = Dispatcher::start(
        &store,
        vec![endpoint("clinic", &main.url("/hooks"), &[secret(7)])],
        fast(),
    );
    main.wait_delivered(std::slice::from_ref(&plain.id)).await;
    status.wait_delivered(std::slice::from_ref(&own.id)).await;
    wait_outbox_empty(&store).await;
    d.stop().await;
    let h = &status.hits()[0];
    assert_eq!(h.path, "/status");
    let ts = h.timestamp.parse().unwrap();
    let keys = vec![parse_secret(&secret(7)).unwrap()];
    assert!(webhook::verify(&keys, &h.id, ts, &h.body, &h.signature));
    assert_eq!(main.hits().len(), 1);
}

/// Deliveries per second to a local sink (sink, dispatcher and store share the machine).
/// `cargo test --test webhooks -- --ignored --nocapture throughput`; `WEBHOOK_BENCH_EVENTS`
/// (default 20000), `WEBHOOK_BENCH_PER_CONVERSATION` (default 1) and
/// `WEBHOOK_BENCH_CONCURRENCY` (per endpoint, default 32) shape the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn throughput_of_signed_deliveries_to_a_local_sink() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("WEBHOOK_BENCH_EVENTS", 20_000);
    let per_conv = env("WEBHOOK_BENCH_PER_CONVERSATION", 1).max(1);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());

    let received = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let received = received.clone();
        Router::new().fallback(move || {
            received.fetch_add(1, Ordering::Relaxed);
            async { axum::http::StatusCode::NO_CONTENT }
        })
    };
    let sink = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let started = std::time::Instant::now();
    let now = now_millis();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let evs = chunk
            .iter()
            .map(|i| new_event("bench", &format!("conv-{}", i / per_conv), now, None));
        for r in join_all(evs.map(|e| store.enqueue_event(e))).await {
            r.unwrap();
        }
    }
    let enqueue_time = started.elapsed();

    let started = std::time::Instant::now();
    let cpu_before = process_cpu();
    let d = Dispatcher::start(
        &store,
        vec![endpoint(
            "bench",
            &format!("http://{addr}/hooks"),
            &[secret(7)],
        )],
        WebhookConfig {
            per_endpoint_concurrency: env("WEBHOOK_BENCH_CONCURRENCY", 32),
            ..WebhookConfig::default()
        },
    );
    loop {
        if store.outbox_depth().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().zip(cpu_before).map(|(a, b)| a - b);
    let latency = d.metrics.latency.with_label_values(&["bench"]);
    let mean_latency = latency.get_sample_sum() / latency.get_sample_count().max(1) as f64;
    d.stop().await;
    sink.abort();
    let got = received.load(Ordering::Relaxed);
    assert!(got >= n);
    if let Some(cpu) = cpu {
        println!(
            "CPU (dispatcher + store + sink, whole process): {:.0} µs per delivery = {:.0} \
             deliveries/s per fully used core",
            cpu.as_secs_f64() * 1e6 / n as f64,
            n as f64 / cpu.as_secs_f64()
        );
    }
    println!(
        "{n} events ({per_conv} per conversation): enqueued in {enqueue_time:.2?}; delivered \
         and recorded in {elapsed:.2?} = {:.0} deliveries/s ({got} requests, mean request \
         latency {:.2} ms; {} build)",
        n as f64 / elapsed.as_secs_f64(),
        mean_latency * 1000.0,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}

/// User + system CPU time of this process so far (Linux), to measure cost independently of
/// whatever else the machine is running.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 per second).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
