//! `smsgate-bench floor`: what the HTTP transport alone costs on this machine, with no
//! gateway behind it. One message end to end takes one API request (app -> smsgate) and one
//! signed webhook request per status event (smsgate -> app), and on a benchmark machine both
//! ends of each run on the same cores. This mode drives the same client and server stacks the
//! e2e run uses, with handlers that do nothing but answer, and reports the CPU each request
//! costs; the sum for one message is a floor under any gateway built on these stacks here.
//!
//! - Raw TCP exchanges: the same number of connections each writing a request of a webhook
//!   request's size and reading a short answer, with no HTTP at all: what the kernel's
//!   loopback path and tokio's wake-ups cost per exchange, the floor under any HTTP stack.
//! - API requests: the bench's own HTTP worker ([`super::run_http`]: one keep-alive
//!   connection per worker, the e2e traffic mix) against an axum route that answers `202`
//!   with a fixed body, as smsgate's submit does.
//! - Webhook requests: the daemon's webhook client (`net::https_client`, keep-alive pool) POSTs
//!   a status-event-sized body built by the dispatcher's own `signed_request`, to an axum route that checks
//!   the signature as the bench's sink does and answers `204`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{StatusCode, Uri};
use serde::Serialize;
use tokio::{net::TcpListener, sync::watch, task::JoinSet, time::Instant};

use super::{
    BenchError, HttpOptions, Stop, Traffic,
    e2e::{CpuSplit, cpu_sample, cpu_split},
};
use crate::webhook::dispatcher::signed_request;

/// Options of [`run_floor`].
#[derive(Debug, Clone)]
pub struct FloorOptions {
    /// How long each of the three phases runs.
    pub duration: Duration,
    /// Connections (TCP and API phases) and requests in flight (webhook phase).
    pub concurrency: usize,
}

impl Default for FloorOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            concurrency: 64,
        }
    }
}

/// One phase: requests answered and the process CPU they took.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloorPhase {
    /// Requests answered with the expected status.
    pub requests: u64,
    /// Requests that failed (transport error or unexpected status).
    pub failed: u64,
    pub wall_s: f64,
    pub per_sec: f64,
    /// Process CPU (client and server together) per answered request.
    pub cpu_us_per_request: f64,
    /// Cores the process kept busy.
    pub cores_busy: f64,
    pub cpu: Option<CpuSplit>,
}

/// What [`run_floor`] measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloorSummary {
    /// Request/answer exchanges over plain TCP, no HTTP.
    pub tcp: FloorPhase,
    pub api: FloorPhase,
    pub webhook: FloorPhase,
    /// Bytes of each webhook body.
    pub webhook_body_bytes: usize,
    /// Cores of the machine (`available_parallelism`).
    pub cores: usize,
}

impl FloorSummary {
    /// CPU per message for the HTTP requests alone: one API request and `events` webhooks.
    pub fn cpu_us_per_message(&self, events: u32) -> f64 {
        self.api.cpu_us_per_request + f64::from(events) * self.webhook.cpu_us_per_request
    }

    /// The most messages per second the machine's cores could carry if those requests were
    /// all a message cost.
    pub fn max_msgs_per_sec(&self, events: u32) -> f64 {
        self.rate_for(self.cpu_us_per_message(events))
    }

    /// The same bound with every request costing only a raw TCP exchange: what no HTTP stack
    /// can beat here.
    pub fn tcp_max_msgs_per_sec(&self, events: u32) -> f64 {
        self.rate_for(f64::from(1 + events) * self.tcp.cpu_us_per_request)
    }

    fn rate_for(&self, us: f64) -> f64 {
        if us > 0.0 {
            self.cores as f64 * 1e6 / us
        } else {
            0.0
        }
    }
}

/// Bytes of a raw exchange's request: about a signed webhook request, headers included.
const TCP_REQUEST_BYTES: usize = 900;
/// Bytes of a raw exchange's answer: about an HTTP 204 or 202 answer.
const TCP_ANSWER_BYTES: usize = 120;

async fn bind_loopback() -> Result<(TcpListener, std::net::SocketAddr), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(format!("cannot bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok((listener, addr))
}

async fn tcp_phase(opts: &FloorOptions) -> Result<FloorPhase, BenchError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, addr) = bind_loopback().await?;
    let server = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            conns.spawn(async move {
                let mut req = vec![0u8; TCP_REQUEST_BYTES];
                let answer = [b'A'; TCP_ANSWER_BYTES];
                while s.read_exact(&mut req).await.is_ok() {
                    if s.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let before = cpu_sample();
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..opts.concurrency.max(1) {
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return (0, 1);
            };
            let _ = s.set_nodelay(true);
            let req = [b'R'; TCP_REQUEST_BYTES];
            let mut answer = [0u8; TCP_ANSWER_BYTES];
            while Instant::now() < deadline {
                if s.write_all(&req).await.is_err() || s.read_exact(&mut answer).await.is_err() {
                    failed += 1;
                    break;
                }
                ok += 1;
            }
            (ok, failed)
        });
    }
    let (ok, failed) = join_counts(tasks).await;
    let wall = started.elapsed();
    let cpu = cpu_split(before, cpu_sample(), wall);
    server.abort();
    Ok(phase(ok, failed, wall, cpu))
}

/// The body smsgate's submit answers with (same size and shape).
const ACCEPTED: &str =
    r#"{"id":"msg_01JZ8Q4W2E5R7T9Y1U3I5O7P9A","status":"queued","segments":1,"encoding":"gsm7"}"#;

/// A `message.status` event as the dispatcher sends it (same fields and size; the values do
/// not matter to the transport).
fn status_event_body(n: u64) -> String {
    format!(
        r#"{{"id":"evt_01JZ8Q4W2E5R7T9Y1U3I{n:06}","type":"message.status","created_at":"2026-12-03T08:00:00.000Z","data":{{"id":"msg_01JZ8Q4W2E5R7T9Y1U3I5O7P9A","app_id":"bench","from":"+12125551000","to":"+19175550123","client_ref":null,"status":"delivered","encoding":"gsm7","segments":1,"carrier":"sim","error_code":null,"error_message":null,"attempts":1,"created_at":"2026-12-03T08:00:00.000Z","updated_at":"2026-12-03T08:00:00.120Z","parts":[{{"seq":1,"carrier":"sim","carrier_message_id":"4F2A9C11","status":"delivered","receipt_stat":"DELIVRD","receipt_err":"000","sent_at":"2026-12-03T08:00:00.040Z","done_at":"2026-12-03T08:00:00.120Z"}}]}}}}"#
    )
}

async fn serve(app: Router) -> Result<(String, watch::Sender<bool>), BenchError> {
    let (listener, addr) = bind_loopback().await?;
    let (stop, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await;
    });
    Ok((format!("http://{addr}"), stop))
}

/// Sums the (answered, failed) counts of a phase's client tasks; a task that panicked counts
/// as one failure.
async fn join_counts(mut tasks: JoinSet<(u64, u64)>) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (o, f) = done.unwrap_or((0, 1));
        ok += o;
        failed += f;
    }
    (ok, failed)
}

fn phase(requests: u64, failed: u64, wall: Duration, cpu: Option<CpuSplit>) -> FloorPhase {
    let wall_s = wall.as_secs_f64();
    let process_s = cpu.as_ref().map_or(0.0, |c| c.process_s);
    FloorPhase {
        requests,
        failed,
        wall_s,
        per_sec: if wall_s > 0.0 {
            requests as f64 / wall_s
        } else {
            0.0
        },
        cpu_us_per_request: if requests > 0 {
            process_s * 1e6 / requests as f64
        } else {
            0.0
        },
        cores_busy: if wall_s > 0.0 {
            process_s / wall_s
        } else {
            0.0
        },
        cpu,
    }
}

async fn api_phase(opts: &FloorOptions) -> Result<FloorPhase, BenchError> {
    async fn accept(_body: Bytes) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
        (
            StatusCode::ACCEPTED,
            [("content-type", "application/json")],
            ACCEPTED,
        )
    }
    let (url, stop) = serve(Router::new().route("/v1/messages", post(accept))).await?;
    let before = cpu_sample();
    let started = Instant::now();
    let s = super::run_http(HttpOptions {
        url,
        key: "floor".into(),
        from: vec!["+12125551000".into()],
        concurrency: opts.concurrency,
        stop: Stop::Duration(opts.duration),
        traffic: Traffic::default(),
        ..Default::default()
    })
    .await;
    let wall = started.elapsed();
    let cpu = cpu_split(before, cpu_sample(), wall);
    let _ = stop.send(true);
    let s = s?;
    Ok(phase(s.accepted, s.not_accepted(), wall, cpu))
}

struct Receiver {
    keys: Vec<Vec<u8>>,
    verified: AtomicU64,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // The same check as the e2e run's sink: headers present, timestamp fresh, signature good.
    if !super::sink::verified(&r.keys, &headers, &body, super::sink::now_unix()) {
        return StatusCode::UNAUTHORIZED;
    }
    r.verified.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn webhook_phase(opts: &FloorOptions) -> Result<(FloorPhase, usize), BenchError> {
    let key: [u8; 32] = rand::random();
    let receiver = Arc::new(Receiver {
        keys: vec![key.to_vec()],
        verified: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let (base, stop) = serve(app).await?;
    let uri: Uri = format!("{base}/hook")
        .parse()
        .map_err(|e| BenchError::Setup(format!("sink url: {e}")))?;
    let client = crate::net::https_client::<Full<Bytes>>(Duration::from_secs(5));
    let signer = Arc::new(crate::webhook::Signer::new(&[key.to_vec()]));
    let body_bytes = status_event_body(0).len();
    let next = Arc::new(AtomicU64::new(0));
    let before = cpu_sample();
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..opts.concurrency.max(1) {
        let (client, signer, uri, next) =
            (client.clone(), signer.clone(), uri.clone(), next.clone());
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("evt_floor_{n}");
                let payload = status_event_body(n);
                let ts = crate::domain::now_millis().div_euclid(1000);
                let Ok(req) = signed_request(&signer, uri.clone(), &id, ts, payload) else {
                    failed += 1;
                    continue;
                };
                match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        if status == StatusCode::NO_CONTENT {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    let (ok, failed) = join_counts(tasks).await;
    let wall = started.elapsed();
    let cpu = cpu_split(before, cpu_sample(), wall);
    let _ = stop.send(true);
    // Every 204 the client counted is a signature the receiver verified.
    if receiver.verified.load(Ordering::Relaxed) < ok {
        return Err(BenchError::Setup(
            "the receiver verified fewer webhooks than the client saw answered".into(),
        ));
    }
    Ok((phase(ok, failed, wall, cpu), body_bytes))
}

/// Runs the raw TCP phase, the API phase, then the webhook phase, on the caller's runtime.
pub async fn run_floor(opts: FloorOptions) -> Result<FloorSummary, BenchError> {
    if opts.concurrency == 0 {
        return Err(BenchError::Options(
            "--concurrency must be at least 1".into(),
        ));
    }
    let tcp = tcp_phase(&opts).await?;
    let api = api_phase(&opts).await?;
    let (webhook, webhook_body_bytes) = webhook_phase(&opts).await?;
    Ok(FloorSummary {
        tcp,
        api,
        webhook,
        webhook_body_bytes,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_floor_run_should_answer_every_request_and_count_its_cpu() {
        let s = run_floor(FloorOptions {
            duration: Duration::from_millis(300),
            concurrency: 4,
        })
        .await
        .expect("floor run");
        for (name, p) in [("tcp", &s.tcp), ("api", &s.api), ("webhook", &s.webhook)] {
            assert!(p.requests > 0, "{name}: no request answered");
            assert_eq!(p.failed, 0, "{name}: failed requests");
            assert!(p.cpu.is_some(), "{name}: no CPU sample");
            assert!(p.cpu_us_per_request > 0.0, "{name}: no CPU counted");
        }
        assert!(s.webhook_body_bytes > 500);
        // One message costs its API request plus each event's webhook.
        let one = s.cpu_us_per_message(1);
        let three = s.cpu_us_per_message(3);
        assert!((three - one - 2.0 * s.webhook.cpu_us_per_request).abs() < 1e-6);
        assert!(s.max_msgs_per_sec(3) < s.max_msgs_per_sec(1));
    }

    #[test]
    fn max_rate_should_follow_from_cores_and_cpu_per_message() {
        let s = FloorSummary {
            tcp: FloorPhase {
                cpu_us_per_request: 5.0,
                ..Default::default()
            },
            api: FloorPhase {
                cpu_us_per_request: 20.0,
                ..Default::default()
            },
            webhook: FloorPhase {
                cpu_us_per_request: 10.0,
                ..Default::default()
            },
            webhook_body_bytes: 600,
            cores: 2,
        };
        assert_eq!(s.cpu_us_per_message(3), 50.0);
        assert_eq!(s.max_msgs_per_sec(3), 40_000.0);
        assert_eq!(s.max_msgs_per_sec(1), 2e6 / 30.0);
        // Four exchanges of 5 µs each.
        assert_eq!(s.tcp_max_msgs_per_sec(3), 100_000.0);
    }
}
