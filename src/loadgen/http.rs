//! The HTTP load: `concurrency` workers, each owning one keep-alive HTTP/1.1 connection
//! (hyper `client::conn::http1` over a `TcpStream` with TCP_NODELAY; no pool in the way).
//!
//! Workers draw numbered tickets from one shared counter: the ticket bounds `--count`, names
//! the message (its number is in the body, so no two bodies are alike), and with `--rate`
//! gives the send time `start + ticket / rate`, a schedule all workers share.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{
    Request, StatusCode, Uri,
    body::Body,
    client::conn::http1::{self, SendRequest},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Deserialize;
use tokio::{net::TcpStream, sync::watch, task::JoinSet, time::Instant};

use super::{BenchError, HttpSummary, Latency, Stop, Traffic, sink::Awaited};

/// Options of [`run_http`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Base URL of the app-facing listener, e.g. `http://127.0.0.1:8080` (plain HTTP only).
    pub url: String,
    /// API key sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// Lines to send from, used round-robin by ticket.
    pub from: Vec<String>,
    /// Workers, one connection each.
    pub concurrency: usize,
    /// Requests per second across all workers; `None` sends back-to-back.
    pub rate: Option<f64>,
    pub stop: Stop,
    pub traffic: Traffic,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// A request with no answer by then counts as a transport error (`timeout`).
    pub request_timeout: Duration,
    /// Seeds destinations and the UCS-2 choice, so runs are repeatable.
    pub seed: u64,
    /// When set, the id and arrival instant of every 202 go here (the e2e webhook sink
    /// times each message from its 202 to its `delivered` webhook).
    pub accepted: Option<Arc<Awaited<String>>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            key: String::new(),
            from: Vec::new(),
            concurrency: 64,
            rate: None,
            stop: Stop::Duration(Duration::from_secs(30)),
            traffic: Traffic::default(),
            progress: false,
            request_timeout: Duration::from_secs(30),
            seed: 0x5EED,
            accepted: None,
        }
    }
}

/// Latencies are kept in microseconds, 1 µs to 1 h, three significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
/// After a failed connect a worker waits this long, so a dead target is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Distinct destination numbers available: exchanges 200-999 minus N11s and 555, x 10^4.
const MAX_DESTINATIONS: usize = 782 * 10_000;

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    pub connect: String,
    pub host_header: HeaderValue,
    /// Path of the submit endpoint, base path included.
    pub submit_path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, BenchError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| BenchError::Options(format!("--url {url:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(BenchError::Options(format!(
                    "--url {url:?}: scheme {other} is not supported (plain http only)"
                )));
            }
            None => {
                return Err(BenchError::Options(format!(
                    "--url {url:?}: expected http://host:port"
                )));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| BenchError::Options(format!("--url {url:?}: no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        let connect = format!("{}:{port}", authority.host());
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|e| BenchError::Options(format!("--url {url:?}: {e}")))?;
        let base = uri.path().trim_end_matches('/');
        Ok(Target {
            connect,
            host_header,
            submit_path: format!("{base}/v1/messages"),
        })
    }
}

/// Opens one HTTP/1.1 connection; its driver task ends when the sender is dropped.
async fn connect<B>(addr: &str) -> Result<SendRequest<B>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Errors surface on the sender side as failed requests.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One GET on a fresh connection: `(status, body)`. For readiness and metrics scrapes.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut sender = connect::<Empty<Bytes>>(&addr.to_string()).await?;
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `count` distinct NANP mobiles-looking numbers: +1 917 NXX XXXX with the exchange in
/// 200-999, never an N11 and never 555 (smsgate refuses 555-01xx as fictional).
pub(crate) fn destinations(count: usize, seed: u64) -> Vec<String> {
    let count = count.clamp(1, MAX_DESTINATIONS);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let exchange: u32 = rng.random_range(200..1000);
        if exchange % 100 == 11 || exchange == 555 {
            continue;
        }
        let line: u32 = rng.random_range(0..10_000);
        if seen.insert((exchange, line)) {
            out.push(format!("+1917{exchange:03}{line:04}"));
        }
    }
    out
}

/// A body of exactly `length` characters. The ticket number recurs every
/// [`TAG_PERIOD`] characters and ends the body, so every part of a long message (the
/// short last one included) differs from every part of any other: the simulator counts
/// identical submits as duplicates. UCS-2 bodies carry a Cyrillic letter, which no GSM-7
/// table or look-alike replacement covers.
pub(crate) fn message_body(ticket: u64, ucs2: bool, length: usize) -> String {
    const FILLER: &str = "The quick brown fox jumps over the lazy dog. ";
    let tag = if ucs2 {
        format!("#{ticket} Ж ")
    } else {
        format!("#{ticket} ")
    };
    let mut body = String::with_capacity(length + 8);
    let mut chars = 0;
    while chars < length {
        for c in tag.chars().chain(FILLER.chars()).take(TAG_PERIOD) {
            if chars == length {
                break;
            }
            body.push(c);
            chars += 1;
        }
    }
    let tag_len = tag.chars().count();
    if length >= 2 * tag_len {
        let keep: String = body.chars().take(length - tag_len).collect();
        body = keep + &tag;
    }
    body
}

/// Shorter than the smallest part (67 UCS-2 units with a UDH), with room for a whole tag.
const TAG_PERIOD: usize = 40;

/// State shared by the workers of one run.
struct Shared {
    target: Target,
    auth: HeaderValue,
    from: Vec<String>,
    destinations: Vec<String>,
    traffic: Traffic,
    stop: Stop,
    rate: Option<f64>,
    timeout: Duration,
    seed: u64,
    start: Instant,
    deadline: Option<Instant>,
    tickets: AtomicU64,
    accepted: Option<Arc<Awaited<String>>>,
    live_accepted: AtomicU64,
    live_failed: AtomicU64,
}

impl Shared {
    /// The next ticket and, when paced, its send time; `None` once the run is over.
    fn next_ticket(&self) -> Option<(u64, Option<Instant>)> {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if let Stop::Count(n) = self.stop
            && ticket >= n
        {
            return None;
        }
        let due = self
            .rate
            .map(|r| self.start + Duration::from_secs_f64(ticket as f64 / r));
        if let Some(deadline) = self.deadline
            && due.unwrap_or_else(Instant::now) >= deadline
        {
            return None;
        }
        Some((ticket, due))
    }

    fn request(&self, ticket: u64, ucs2: bool, to: &str) -> Request<Full<Bytes>> {
        let from = &self.from[ticket as usize % self.from.len()];
        let body = message_body(ticket, ucs2, self.traffic.length);
        // Every field is digits, '+', ASCII filler or one Cyrillic letter: nothing to escape.
        let json = format!(r#"{{"from":"{from}","to":"{to}","body":"{body}"}}"#);
        let mut req = Request::new(Full::new(Bytes::from(json)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = Uri::try_from(self.target.submit_path.as_str())
            .unwrap_or_else(|_| Uri::from_static("/v1/messages"));
        let h = req.headers_mut();
        h.insert(HOST, self.target.host_header.clone());
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }
}

/// What one worker counted.
struct WorkerResult {
    latency: Histogram<u64>,
    accepted: u64,
    accepted_segments: u64,
    rejected: HashMap<String, u64>,
    server_errors: HashMap<String, u64>,
    transport_errors: HashMap<&'static str, u64>,
}

impl WorkerResult {
    fn new() -> Self {
        Self {
            latency: histogram(),
            accepted: 0,
            accepted_segments: 0,
            rejected: HashMap::new(),
            server_errors: HashMap::new(),
            transport_errors: HashMap::new(),
        }
    }
}

#[derive(Deserialize)]
struct AcceptedBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    segments: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    // Read the whole body: the connection is reused only once it is consumed.
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn worker(
    shared: Arc<Shared>,
    index: usize,
    interval: Arc<Mutex<Histogram<u64>>>,
) -> WorkerResult {
    let mut out = WorkerResult::new();
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while let Some((ticket, due)) = shared.next_ticket() {
        let ucs2 = rng.random::<f64>() < shared.traffic.ucs2_fraction;
        let to = &shared.destinations[rng.random_range(0..shared.destinations.len())];
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        // A connection the server closed while idle is replaced without counting an error.
        if let Some(s) = conn.as_mut()
            && s.ready().await.is_err()
        {
            conn = None;
        }
        if conn.is_none() {
            match connect(&shared.target.connect).await {
                Ok(s) => conn = Some(s),
                Err(_) => {
                    *out.transport_errors.entry("connect").or_default() += 1;
                    shared.live_failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let sender = conn.as_mut().expect("connected above");
        let req = shared.request(ticket, ucs2, to);
        // Paced runs measure from the scheduled time: a stalled server then shows up in the
        // percentiles instead of merely slowing the senders (coordinated omission).
        let started = due.unwrap_or_else(Instant::now);
        let (status, body) = match tokio::time::timeout(shared.timeout, exchange(sender, req)).await
        {
            Ok(Ok(answer)) => answer,
            failed => {
                let kind = if failed.is_err() { "timeout" } else { "io" };
                conn = None;
                *out.transport_errors.entry(kind).or_default() += 1;
                shared.live_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if status == StatusCode::ACCEPTED {
            let answered = Instant::now();
            let us = answered.duration_since(started).as_micros().max(1) as u64;
            out.latency.saturating_record(us);
            interval
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .saturating_record(us);
            out.accepted += 1;
            if let Ok(b) = serde_json::from_slice::<AcceptedBody>(&body) {
                out.accepted_segments += b.segments;
                if let Some(log) = &shared.accepted {
                    log.start(b.id, answered);
                }
            }
            shared.live_accepted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        shared.live_failed.fetch_add(1, Ordering::Relaxed);
        let code = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.code)
            .unwrap_or_else(|_| format!("http_{}", status.as_u16()));
        let map = if status.is_server_error() {
            &mut out.server_errors
        } else {
            &mut out.rejected
        };
        *map.entry(code).or_default() += 1;
    }
    out
}

/// Prints one line a second on stderr until `stop` turns true.
async fn progress(
    shared: Arc<Shared>,
    intervals: Vec<Arc<Mutex<Histogram<u64>>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_accepted = 0;
    let mut last_at = Instant::now();
    let mut merged = histogram();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        merged.reset();
        for h in &intervals {
            let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
            let _ = merged.add(&*h);
            h.reset();
        }
        let now = Instant::now();
        let accepted = shared.live_accepted.load(Ordering::Relaxed);
        let failed = shared.live_failed.load(Ordering::Relaxed);
        let rate = (accepted - last_accepted) as f64 / (now - last_at).as_secs_f64();
        eprintln!(
            "[{:>5.0}s] accepted {:>9.0}/s  p99 {:>8.2} ms  total {:>10}  errors {}",
            (now - shared.start).as_secs_f64(),
            rate,
            merged.value_at_quantile(0.99) as f64 / 1000.0,
            accepted,
            failed,
        );
        last_accepted = accepted;
        last_at = now;
    }
}

pub(crate) fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

fn check(opts: &HttpOptions) -> Result<(), BenchError> {
    let bad = |m: &str| Err(BenchError::Options(m.to_owned()));
    if opts.from.is_empty() {
        return bad("at least one --from line is needed");
    }
    if opts.concurrency == 0 {
        return bad("--concurrency must be at least 1");
    }
    if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return bad("--rate must be a positive number of requests per second");
    }
    if opts.traffic.length == 0 {
        return bad("--length must be at least 1");
    }
    if !(0.0..=1.0).contains(&opts.traffic.ucs2_fraction) {
        return bad("--ucs2-fraction must be between 0 and 1");
    }
    if opts.traffic.destinations == 0 {
        return bad("--destinations must be at least 1");
    }
    if matches!(opts.stop, Stop::Count(0)) {
        return bad("--count must be at least 1");
    }
    Ok(())
}

/// Runs the HTTP load and returns once every worker has its last answer.
pub async fn run_http(opts: HttpOptions) -> Result<HttpSummary, BenchError> {
    check(&opts)?;
    let target = Target::parse(&opts.url)?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", opts.key))
        .map_err(|_| BenchError::Options("--key must be visible ASCII".into()))?;
    // Fail fast when nothing listens, instead of counting a run of connect errors.
    connect::<Full<Bytes>>(&target.connect)
        .await
        .map_err(|reason| BenchError::Connect {
            addr: target.connect.clone(),
            reason,
        })?;

    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        auth,
        from: opts.from.clone(),
        destinations: destinations(opts.traffic.destinations, opts.seed),
        traffic: opts.traffic.clone(),
        stop: opts.stop,
        rate: opts.rate,
        timeout: opts.request_timeout,
        seed: opts.seed,
        start,
        deadline: match opts.stop {
            Stop::Duration(d) => Some(start + d),
            Stop::Count(_) => None,
        },
        tickets: AtomicU64::new(0),
        accepted: opts.accepted.clone(),
        live_accepted: AtomicU64::new(0),
        live_failed: AtomicU64::new(0),
    });
    let intervals: Vec<_> = (0..opts.concurrency)
        .map(|_| Arc::new(Mutex::new(histogram())))
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress_task = opts
        .progress
        .then(|| tokio::spawn(progress(shared.clone(), intervals.clone(), stop_rx)));

    let mut workers = JoinSet::new();
    for (i, interval) in intervals.iter().enumerate() {
        workers.spawn(worker(shared.clone(), i, interval.clone()));
    }
    let mut total = histogram();
    let mut summary = HttpSummary {
        concurrency: opts.concurrency,
        target_rate: opts.rate,
        ..Default::default()
    };
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(done) = workers.join_next().await {
        let Ok(w) = done else {
            // A panicking worker is a bug in this module; its counts are lost, say so.
            *summary
                .transport_errors
                .entry("worker_panicked".into())
                .or_default() += 1;
            continue;
        };
        let _ = total.add(&w.latency);
        summary.accepted += w.accepted;
        summary.accepted_segments += w.accepted_segments;
        for (k, v) in w.rejected {
            *rejected.entry(k).or_default() += v;
        }
        for (k, v) in w.server_errors {
            *summary.server_errors.entry(k).or_default() += v;
        }
        for (k, v) in w.transport_errors {
            *summary.transport_errors.entry(k.to_owned()).or_default() += v;
        }
    }
    summary.duration = start.elapsed();
    let _ = stop_tx.send(true);
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    summary.rejected = rejected;
    summary.requests = summary.accepted + summary.not_accepted();
    summary.accepted_per_sec = summary.accepted as f64 / summary.duration.as_secs_f64();
    summary.latency = latency(&total);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneNumber;

    #[test]
    fn destinations_should_be_distinct_valid_nanp_numbers() {
        let d = destinations(5_000, 7);
        assert_eq!(d.len(), 5_000);
        assert_eq!(d.iter().collect::<HashSet<_>>().len(), 5_000);
        for n in &d {
            assert_eq!(PhoneNumber::parse(n).expect(n).as_str(), n);
        }
    }

    #[test]
    fn message_body_should_have_the_requested_length_and_encoding_hint() {
        for length in [1, 5, 70, 160, 161, 1000] {
            for ucs2 in [false, true] {
                let b = message_body(123_456, ucs2, length);
                assert_eq!(b.chars().count(), length, "{b:?}");
                if length >= 10 {
                    assert_eq!(b.contains('Ж'), ucs2, "{b:?}");
                }
                // Any 67-character window (the smallest part) holds a whole tag.
                let chars: Vec<char> = b.chars().collect();
                for w in chars.windows(67) {
                    let w: String = w.iter().collect();
                    assert!(w.contains("#123456 "), "{w:?}");
                }
                if length >= 20 {
                    let tail: String = chars[length - 10..].iter().collect();
                    assert!(tail.contains("#123456"), "{tail:?}");
                }
            }
        }
    }

    #[test]
    fn target_should_keep_a_base_path_and_refuse_https() {
        let t = Target::parse("http://127.0.0.1:8080/gw/").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.submit_path, "/gw/v1/messages");
        assert_eq!(
            Target::parse("http://localhost").unwrap().connect,
            "localhost:80"
        );
        assert!(Target::parse("https://example.com").is_err());
    }
}
