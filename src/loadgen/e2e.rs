//! End to end in one process: a carrier simulator, a daemon and (by default) a webhook sink
//! on loopback `127.0.0.1:0`, the HTTP load against the daemon, then the wait until every
//! accepted part reached the carrier, every receipt was recorded and every accepted message's
//! signed `delivered` webhook arrived. Client, daemon, simulator and sink share one runtime
//! (and the machine's cores); the summary says so.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle, time::Instant};

use super::{
    BenchError, HttpOptions, HttpSummary, Stop, Traffic, http, run_http,
    sink::{AwaitedEvent, Sink, WebhookSummary},
};
use crate::{
    app, config,
    sim::{ReceiptMode, SimConfig, SimStats, Simulator},
};

pub(super) const APP_KEY: &str = "smsgate-bench-key-0001";
pub(super) const LINE: &str = "+12125551000";
/// Polling interval of the simulator's counters (atomics: cheap) while waiting for receipts.
pub(super) const POLL: Duration = Duration::from_millis(5);
/// Polling interval of `/metrics` (each scrape counts the queue in the store).
const SCRAPE_POLL: Duration = Duration::from_millis(100);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of [`run_e2e`].
#[derive(Debug, Clone)]
pub struct E2eOptions {
    pub stop: Stop,
    pub concurrency: usize,
    /// Paced request rate; `None` sends back-to-back.
    pub rate: Option<f64>,
    /// Carrier window (submit_sm in flight per bind) and number of binds.
    pub window: usize,
    pub binds: usize,
    /// Simulator delay between a submit and its receipt.
    pub receipt_delay: Duration,
    /// `store.commit_batch_max`; `None` keeps the daemon's default.
    pub commit_batch_max: Option<usize>,
    /// The line's rate in segments per second. The default is high enough never to be the
    /// limit, so the run measures the pipeline rather than the line's contract.
    pub line_rate: f64,
    pub traffic: Traffic,
    pub progress: bool,
    /// Where the run's directory (config + store) is made; default the system temp dir.
    pub dir: Option<PathBuf>,
    /// Keep the run's directory (config and store) instead of deleting it.
    pub keep_dir: bool,
    /// Longest wait, after the load, for the carrier submits, for the receipts and for the
    /// webhooks.
    pub settle_timeout: Duration,
    /// Give the app a webhook endpoint (the bench's own sink, which verifies every
    /// signature) and wait for each accepted message's `delivered` webhook.
    pub webhooks: bool,
    /// `webhooks.concurrency` (requests in flight to the sink); `None` keeps the default.
    pub webhook_concurrency: Option<usize>,
    /// The app's `status_events`; `None`: every state change (three events per message).
    pub status_events: Option<Vec<String>>,
}

impl Default for E2eOptions {
    fn default() -> Self {
        Self {
            stop: Stop::Count(10_000),
            concurrency: 64,
            rate: None,
            window: 256,
            binds: 1,
            receipt_delay: Duration::ZERO,
            commit_batch_max: None,
            line_rate: 1_000_000.0,
            traffic: Traffic::default(),
            progress: false,
            dir: None,
            keep_dir: false,
            settle_timeout: Duration::from_secs(300),
            webhooks: true,
            webhook_concurrency: None,
            status_events: None,
        }
    }
}

/// Store group commits during the run (deltas of `smsgate_store_commit_batch_size`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommitBatches {
    /// Transactions committed.
    pub commits: u64,
    /// Operations folded into them.
    pub operations: u64,
    pub mean: f64,
    /// Mean time per commit (apply + fsync), from `smsgate_store_commit_seconds`.
    pub mean_commit_ms: f64,
    /// `(upper bound, commits in this bucket)`, empty buckets left out.
    pub buckets: Vec<(String, u64)>,
    /// Pages the commits wrote to the WAL (`smsgate_store_wal_frames_total`).
    pub wal_frames: u64,
    /// Times the writer finished a checkpoint to start the WAL over, and how long that held
    /// it in all (`smsgate_store_wal_restart_seconds`).
    pub wal_restarts: u64,
    pub wal_restart_ms: f64,
}

/// CPU time used during the run (load start to last receipt), from `/proc/self/task`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuSplit {
    pub wall_s: f64,
    /// Process CPU seconds (all threads, exited ones included).
    pub process_s: f64,
    /// By thread name, for threads alive at the end that ran during the run.
    pub threads: BTreeMap<String, ThreadGroup>,
}

/// The threads of one name (tokio names its workers and its blocking pool alike).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThreadGroup {
    pub threads: usize,
    /// Seconds on a CPU.
    pub cpu_s: f64,
    /// Seconds runnable but waiting for a CPU (schedstat): CPU starvation.
    pub runqueue_wait_s: f64,
}

/// What an end-to-end run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eSummary {
    pub http: HttpSummary,
    pub window: usize,
    pub binds: usize,
    #[serde(rename = "receipt_delay_s", serialize_with = "super::report::secs")]
    pub receipt_delay: Duration,
    /// Client, daemon and simulator run on one runtime with this many worker threads.
    pub runtime_workers: usize,
    /// submit_sm the simulator accepted during the run (resubmits included).
    pub carrier_submits: u64,
    /// Of those, repeats of an earlier accepted submit.
    pub carrier_duplicates: u64,
    /// Parts the daemon sent again for want of a response (`smsgate_resubmits_total`).
    pub resubmits: u64,
    /// From the first request until the simulator had every accepted part.
    #[serde(rename = "time_to_carrier_s", serialize_with = "super::report::secs")]
    pub time_to_carrier: Duration,
    pub submits_per_sec: f64,
    /// Receipts the daemon counted (`smsgate_receipts_total`, all states).
    pub receipts_recorded: u64,
    /// From the first request until every part's receipt was acknowledged (so stored).
    #[serde(rename = "time_to_receipts_s", serialize_with = "super::report::secs")]
    pub time_to_receipts: Duration,
    /// Accepted messages / time to receipts.
    pub e2e_msgs_per_sec: f64,
    /// The bench's webhook sink: signatures checked, `delivered` webhooks timed from the 202.
    pub webhooks: Option<WebhookSummary>,
    /// The app's `status_events` (`None`: every state change).
    pub status_events: Option<Vec<String>>,
    pub commit_batches: CommitBatches,
    /// CPU from the load start to the last receipt, or to the last `delivered` webhook.
    pub cpu: Option<CpuSplit>,
    /// The run's directory, when kept.
    pub dir: Option<PathBuf>,
    /// Why the run failed its own checks (signature failures, missing webhooks...); the
    /// binary prints the summary and exits with an error when this is not empty.
    pub problems: Vec<String>,
}

fn config_text(
    opts: &E2eOptions,
    db: &std::path::Path,
    carrier: SocketAddr,
    sink: Option<&Sink>,
) -> String {
    let batch = opts
        .commit_batch_max
        .map(|n| format!("commit_batch_max = {n}\n"))
        .unwrap_or_default();
    // A transient sink error must not park an event for the production backoff (5 s+).
    let (hook, hooks_section) = match sink {
        Some(sink) => (
            format!(
                "webhook_url = \"{}\"\nwebhook_secrets = [\"{}\"]\n{}",
                sink.url(),
                sink.secret(),
                opts.status_events
                    .as_ref()
                    .map(|s| format!("status_events = {s:?}\n"))
                    .unwrap_or_default()
            ),
            format!(
                "\n[webhooks]\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\n{}",
                opts.webhook_concurrency
                    .map(|n| format!("concurrency = {n}\n"))
                    .unwrap_or_default()
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"# Written by smsgate-bench e2e.
[http]
listen = "127.0.0.1:0"
concurrency_limit = 65536
request_timeout = "60s"

[admin]
listen = "127.0.0.1:0"

[store]
path = "{db}"
{batch}
[[apps]]
id = "bench"
api_keys = ["{APP_KEY}"]
{hook}
[[carriers]]
id = "sim"
host = "{host}"
port = {port}
system_id = "smsgate"
password = "secret"
binds = {binds}
window = {window}
response_timeout = "30s"
reconnect_min = "50ms"
reconnect_max = "1s"

[[lines]]
number = "{LINE}"
app = "bench"
carrier = "sim"
rate = {line_rate}
{hooks_section}"#,
        db = db.display(),
        host = carrier.ip(),
        port = carrier.port(),
        binds = opts.binds,
        window = opts.window,
        line_rate = opts.line_rate,
    )
}

pub(super) fn run_dir(opts: &E2eOptions) -> Result<PathBuf, BenchError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("smsgate-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// The daemon, simulator and webhook sink of one run; stopped by [`Stack::stop`] whatever
/// happened.
pub(super) struct Stack {
    pub(super) sim: Simulator,
    admin: SocketAddr,
    pub(super) http: SocketAddr,
    shutdown: watch::Sender<bool>,
    daemon: JoinHandle<anyhow::Result<()>>,
    pub(super) sink: Option<Sink>,
}

impl Stack {
    pub(super) async fn start(
        opts: &E2eOptions,
        dir: &std::path::Path,
    ) -> Result<Stack, BenchError> {
        let sink = if opts.webhooks {
            Some(Sink::start().await?)
        } else {
            None
        };
        match Stack::start_with(opts, dir, sink.as_ref()).await {
            Ok(parts) => Ok(parts.with_sink(sink)),
            Err(e) => {
                if let Some(sink) = sink {
                    sink.stop().await;
                }
                Err(e)
            }
        }
    }

    fn with_sink(mut self, sink: Option<Sink>) -> Stack {
        self.sink = sink;
        self
    }

    async fn start_with(
        opts: &E2eOptions,
        dir: &std::path::Path,
        sink: Option<&Sink>,
    ) -> Result<Stack, BenchError> {
        let setup =
            |what: &str, e: &dyn std::fmt::Display| BenchError::Setup(format!("{what}: {e}"));
        let sim_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| setup("cannot bind the simulator", &e))?;
        let sim = Simulator::start(
            sim_listener,
            SimConfig {
                receipt: ReceiptMode {
                    delay: opts.receipt_delay,
                    ..Default::default()
                },
                // The log is for tests that inspect submits; keep it small.
                submit_log_capacity: 1024,
                // The daemon acknowledges an MO after its group commit; under load on a
                // shared machine that can take seconds.
                mo_ack_timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await;
        let text = config_text(opts, &dir.join("smsgate.db"), sim.local_addr(), sink);
        let config_path = dir.join("smsgate.toml");
        if let Err(e) = std::fs::write(&config_path, &text) {
            sim.shutdown().await;
            return Err(setup(
                &format!("cannot write {}", config_path.display()),
                &e,
            ));
        }
        let cfg = match config::parse(&text) {
            Ok(c) => c,
            Err(errors) => {
                sim.shutdown().await;
                let msgs: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
                return Err(setup("generated config is invalid", &msgs.join("; ")));
            }
        };
        let bind = async {
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let admin = TcpListener::bind("127.0.0.1:0").await?;
            std::io::Result::Ok((http, admin))
        };
        let (http, admin) = match bind.await {
            Ok(l) => l,
            Err(e) => {
                sim.shutdown().await;
                return Err(setup("cannot bind the daemon's listeners", &e));
            }
        };
        let (http_addr, admin_addr) = (
            http.local_addr().map_err(|e| setup("http listener", &e))?,
            admin
                .local_addr()
                .map_err(|e| setup("admin listener", &e))?,
        );
        let (shutdown, rx) = watch::channel(false);
        let daemon = tokio::spawn(app::run(cfg, app::Listeners { http, admin }, rx));
        Ok(Stack {
            sim,
            admin: admin_addr,
            http: http_addr,
            shutdown,
            daemon,
            sink: None,
        })
    }

    pub(super) async fn wait_ready(&self) -> Result<(), BenchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.daemon.is_finished() {
                return Err(BenchError::Daemon("stopped before it was ready".into()));
            }
            if let Ok((200, _)) = http::get(self.admin, "/readyz").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(BenchError::Timeout {
            what: "/readyz to answer 200".into(),
            after: READY_TIMEOUT,
        })
    }

    pub(super) async fn metrics(&self) -> Result<Metrics, BenchError> {
        match http::get(self.admin, "/metrics").await {
            Ok((200, text)) => Ok(Metrics::parse(&text)),
            Ok((status, _)) => Err(BenchError::Daemon(format!("/metrics answered {status}"))),
            Err(e) => Err(BenchError::Daemon(format!("/metrics: {e}"))),
        }
    }

    /// What the simulator and the daemon say, for a run that stalled.
    pub(super) async fn diagnosis(&self) -> String {
        let daemon = match self.metrics().await {
            Ok(m) => {
                let series = |name: &str| {
                    let v: Vec<String> = m
                        .samples
                        .iter()
                        .filter(|(n, _, _)| n == name)
                        .map(|(_, l, v)| format!("{{{l}}}={v}"))
                        .collect();
                    format!("{name}{}", v.join(","))
                };
                [
                    "smsgate_queue_depth",
                    "smsgate_binds_up",
                    "smsgate_window_in_flight",
                    "smsgate_submits_total",
                    "smsgate_resubmits_total",
                    "smsgate_receipts_total",
                    "smsgate_store_commit_errors_total",
                    "smsgate_mo_total",
                    "smsgate_webhook_outbox_depth",
                    "smsgate_webhook_attempts_total",
                ]
                .map(series)
                .join(" ")
            }
            Err(e) => e.to_string(),
        };
        format!(
            "simulator: {}; daemon: {daemon}; daemon task finished: {}",
            self.sim.stats(),
            self.daemon.is_finished()
        )
    }

    /// Drains the daemon (shutdown watch; it flushes its webhooks), then stops the simulator
    /// and the sink.
    pub(super) async fn stop(self) -> Result<(), BenchError> {
        let _ = self.shutdown.send(true);
        let daemon = tokio::time::timeout(DRAIN_TIMEOUT, self.daemon).await;
        self.sim.shutdown().await;
        if let Some(sink) = self.sink {
            sink.stop().await;
        }
        match daemon {
            Err(_) => Err(BenchError::Timeout {
                what: "the daemon to drain".into(),
                after: DRAIN_TIMEOUT,
            }),
            Ok(Err(join)) => Err(BenchError::Daemon(join.to_string())),
            Ok(Ok(Err(e))) => Err(BenchError::Daemon(format!("{e:#}"))),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

/// Starts a simulator, a daemon and (with `webhooks`) a webhook sink on loopback, loads the
/// daemon, waits for every part to reach the carrier, every receipt to be stored and every
/// `delivered` webhook to arrive, drains everything and reports. A run whose checks fail
/// (signature failures, missing webhooks) still returns its summary, with `problems` saying
/// what failed: callers must treat a non-empty list as a failed run.
pub async fn run_e2e(opts: E2eOptions) -> Result<E2eSummary, BenchError> {
    if !(1..=1000).contains(&opts.window) || !(1..=64).contains(&opts.binds) {
        return Err(BenchError::Options(
            "--window must be 1..=1000 and --binds 1..=64".into(),
        ));
    }
    let dir = run_dir(&opts)?;
    let result = match Stack::start(&opts, &dir).await {
        Ok(stack) => {
            let measured = measure(&opts, &stack).await;
            let stopped = stack.stop().await;
            measured.and_then(|s| stopped.map(|()| s))
        }
        Err(e) => Err(e),
    };
    if opts.keep_dir {
        eprintln!("smsgate-bench: kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|mut s| {
        s.dir = opts.keep_dir.then_some(dir);
        s
    })
}

async fn measure(opts: &E2eOptions, stack: &Stack) -> Result<E2eSummary, BenchError> {
    stack.wait_ready().await?;
    let before = stack.metrics().await?;
    let sim_before = stack.sim.stats();
    let cpu_before = cpu_sample();

    let t0 = Instant::now();
    let http = run_http(HttpOptions {
        url: format!("http://{}", stack.http),
        key: APP_KEY.into(),
        from: vec![LINE.into()],
        concurrency: opts.concurrency,
        rate: opts.rate,
        stop: opts.stop,
        traffic: opts.traffic.clone(),
        progress: opts.progress,
        accepted: stack.sink.as_ref().map(Sink::delivered),
        ..Default::default()
    })
    .await?;
    let parts = http.accepted_segments;
    let settled = settle(opts, stack, t0, &before, sim_before, &http).await;
    let Settled {
        time_to_carrier,
        time_to_receipts,
        cpu_after,
        cpu_wall,
        after,
    } = match settled {
        Ok(v) => v,
        Err(BenchError::Timeout { what, after }) => {
            return Err(BenchError::Timeout {
                what: format!("{what} ({})", stack.diagnosis().await),
                after,
            });
        }
        Err(e) => return Err(e),
    };
    let sim_after = stack.sim.stats();

    let webhooks = stack
        .sink
        .as_ref()
        .map(|sink| sink.summary(AwaitedEvent::Delivered, http.accepted, t0));
    let problems = webhooks.as_ref().map(|w| w.problems()).unwrap_or_default();
    let e2e_msgs_per_sec = http.accepted as f64 / time_to_receipts.as_secs_f64();
    Ok(E2eSummary {
        status_events: opts.status_events.clone(),
        window: opts.window,
        binds: opts.binds,
        receipt_delay: opts.receipt_delay,
        runtime_workers: tokio::runtime::Handle::current().metrics().num_workers(),
        carrier_submits: sim_after.submits_ok - sim_before.submits_ok,
        carrier_duplicates: sim_after.duplicates - sim_before.duplicates,
        resubmits: (after.sum("smsgate_resubmits_total") - before.sum("smsgate_resubmits_total"))
            .round() as u64,
        time_to_carrier,
        submits_per_sec: parts as f64 / time_to_carrier.as_secs_f64(),
        receipts_recorded: (after.sum("smsgate_receipts_total")
            - before.sum("smsgate_receipts_total"))
        .round() as u64,
        time_to_receipts,
        e2e_msgs_per_sec,
        webhooks,
        commit_batches: commit_batches(&before, &after),
        cpu: cpu_split(cpu_before, cpu_after, cpu_wall),
        dir: None,
        problems,
        http,
    })
}

/// Where [`settle`] got to.
struct Settled {
    time_to_carrier: Duration,
    time_to_receipts: Duration,
    /// CPU sample at the end of the pipeline (last receipt, or last awaited webhook).
    cpu_after: Option<CpuSample>,
    cpu_wall: Duration,
    /// The final scrape.
    after: Metrics,
}

/// After the load: waits until the simulator has every accepted part, then every receipt
/// acknowledgement, then (with webhooks) every accepted message's `delivered` webhook, then
/// until `/metrics` agrees (receipts counted, queue empty). Times are from `t0`.
async fn settle(
    opts: &E2eOptions,
    stack: &Stack,
    t0: Instant,
    before: &Metrics,
    sim_before: SimStats,
    http: &HttpSummary,
) -> Result<Settled, BenchError> {
    let parts = http.accepted_segments;
    // Woken by the simulator on every read, so this returns as soon as the last part lands;
    // submits answered with an error would be resubmitted, hence the second wait on `ok`.
    let want = sim_before.submits_ok + parts;
    let landed = stack
        .sim
        .wait_for_submits(
            usize::try_from(sim_before.submits_total + parts).unwrap_or(usize::MAX),
            opts.settle_timeout,
        )
        .await;
    if !landed {
        return Err(BenchError::Timeout {
            what: format!("{parts} accepted parts at the carrier"),
            after: opts.settle_timeout,
        });
    }
    wait_until(
        opts.settle_timeout,
        "every accepted part at the carrier",
        || stack.sim.stats().submits_ok >= want,
    )
    .await?;
    let time_to_carrier = t0.elapsed();

    wait_until(opts.settle_timeout, "every receipt acknowledged", || {
        stack.sim.stats().receipts_acked >= sim_before.receipts_acked + parts
    })
    .await?;
    let time_to_receipts = t0.elapsed();
    let mut cpu_after = cpu_sample();
    let mut cpu_wall = time_to_receipts;

    if let Some(sink) = &stack.sink {
        let delivered = sink.delivered();
        // Every accepted message ends in one final status event; a signature failure ends
        // the wait at once (the summary then says what failed).
        wait_until(
            opts.settle_timeout,
            "a delivered webhook for every accepted message",
            || {
                delivered.completed() + sink.not_delivered() >= http.accepted
                    || sink.signature_failures() > 0
            },
        )
        .await?;
        cpu_after = cpu_sample();
        cpu_wall = t0.elapsed();
    }

    // The simulator saw the acks; now the daemon must agree: receipts counted, queue empty.
    let deadline = Instant::now() + opts.settle_timeout;
    let after = loop {
        let m = stack.metrics().await?;
        let receipts = m.sum("smsgate_receipts_total") - before.sum("smsgate_receipts_total");
        if receipts >= parts as f64 && m.value("smsgate_queue_depth") == Some(0.0) {
            break m;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout {
                what: format!(
                    "smsgate_queue_depth 0 and {parts} receipts in /metrics (have {receipts})"
                ),
                after: opts.settle_timeout,
            });
        }
        tokio::time::sleep(SCRAPE_POLL).await;
    };
    Ok(Settled {
        time_to_carrier,
        time_to_receipts,
        cpu_after,
        cpu_wall,
        after,
    })
}

pub(super) async fn wait_until(
    timeout: Duration,
    what: &str,
    done: impl Fn() -> bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout {
                what: what.into(),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

pub(super) fn commit_batches(before: &Metrics, after: &Metrics) -> CommitBatches {
    const NAME: &str = "smsgate_store_commit_batch_size";
    let delta = |name: &str| after.value(name).unwrap_or(0.0) - before.value(name).unwrap_or(0.0);
    let commits = delta(&format!("{NAME}_count")).round() as u64;
    let operations = delta(&format!("{NAME}_sum")).round() as u64;
    let seconds = delta("smsgate_store_commit_seconds_sum");
    let mut buckets = Vec::new();
    let mut below = 0.0;
    for (le, cumulative) in after.buckets(NAME) {
        let was = before
            .buckets(NAME)
            .into_iter()
            .find(|(l, _)| *l == le)
            .map_or(0.0, |(_, v)| v);
        let c = cumulative - was;
        let n = (c - below).round() as u64;
        below = c;
        if n > 0 {
            buckets.push((le, n));
        }
    }
    CommitBatches {
        commits,
        operations,
        mean: if commits > 0 {
            operations as f64 / commits as f64
        } else {
            0.0
        },
        mean_commit_ms: if commits > 0 {
            seconds * 1000.0 / commits as f64
        } else {
            0.0
        },
        buckets,
        wal_frames: delta("smsgate_store_wal_frames_total").round() as u64,
        wal_restarts: delta("smsgate_store_wal_restart_seconds_count").round() as u64,
        wal_restart_ms: delta("smsgate_store_wal_restart_seconds_sum") * 1000.0,
    }
}

/// A Prometheus text exposition, parsed just enough for the few metrics read here.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    /// `(name, labels, value)` per sample line.
    samples: Vec<(String, String, f64)>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value: f64 = value.trim().parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_owned(), labels.to_owned(), value))
            })
            .collect();
        Metrics { samples }
    }

    /// The first sample of `name` (for unlabelled metrics).
    pub(super) fn value(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    /// The sum over every label set of `name`.
    pub(super) fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The sum over the label sets of `name` that contain `label` (e.g. `result="stored"`).
    pub(super) fn sum_where(&self, name: &str, label: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && l.split(',').any(|kv| kv.trim() == label))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `(le, cumulative count)` of histogram `name`, in exposition order.
    fn buckets(&self, name: &str) -> Vec<(String, f64)> {
        let bucket = format!("{name}_bucket");
        self.samples
            .iter()
            .filter(|(n, _, _)| *n == bucket)
            .filter_map(|(_, labels, v)| {
                let le = labels
                    .split(',')
                    .find_map(|kv| kv.trim().strip_prefix("le="))?
                    .trim_matches('"');
                Some((le.to_owned(), *v))
            })
            .collect()
    }
}

/// Per-thread CPU and run-queue time and the process total, from procfs (Linux only).
pub(super) struct CpuSample {
    process_ticks: u64,
    /// tid -> (name, ns on CPU, ns waiting for a CPU)
    threads: HashMap<u64, (String, u64, u64)>,
}

/// Linux reports process CPU times in clock ticks; USER_HZ is 100 on mainstream platforms.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised name: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `schedstat` is "ns on CPU, ns waiting on a run queue, timeslices".
fn schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

pub(super) fn cpu_sample() -> Option<CpuSample> {
    let process_ticks = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let times = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| schedstat(&s))
            .or_else(|| {
                let ticks = stat_ticks(&std::fs::read_to_string(path.join("stat")).ok()?)?;
                Some((ticks * 10_000_000, 0))
            });
        if let Some((run, wait)) = times {
            threads.insert(tid, (name.trim().to_owned(), run, wait));
        }
    }
    Some(CpuSample {
        process_ticks,
        threads,
    })
}

pub(super) fn cpu_split(
    before: Option<CpuSample>,
    after: Option<CpuSample>,
    wall: Duration,
) -> Option<CpuSplit> {
    let (before, after) = (before?, after?);
    let mut threads: BTreeMap<String, ThreadGroup> = BTreeMap::new();
    for (tid, (name, run, wait)) in &after.threads {
        let (run0, wait0) = before.threads.get(tid).map_or((0, 0), |t| (t.1, t.2));
        let ran = run.saturating_sub(run0);
        if ran == 0 {
            continue;
        }
        let g = threads.entry(name.clone()).or_default();
        g.threads += 1;
        g.cpu_s += ran as f64 / 1e9;
        g.runqueue_wait_s += wait.saturating_sub(wait0) as f64 / 1e9;
    }
    Some(CpuSplit {
        wall_s: wall.as_secs_f64(),
        process_s: after.process_ticks.saturating_sub(before.process_ticks) as f64
            / CLOCK_TICKS_PER_SEC,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tiny_e2e_run_should_account_for_every_message() {
        let s = run_e2e(E2eOptions {
            stop: Stop::Count(200),
            concurrency: 8,
            window: 64,
            traffic: Traffic {
                length: 100,
                ucs2_fraction: 0.0,
                destinations: 50,
            },
            ..Default::default()
        })
        .await
        .expect("e2e run succeeds");
        let h = &s.http;
        assert_eq!(h.requests, 200);
        assert_eq!(h.accepted, 200, "{h:?}");
        assert_eq!(h.accepted + h.not_accepted(), h.requests);
        assert_eq!(
            h.accepted_segments, 200,
            "one part per 100-character GSM-7 body"
        );
        assert!(s.carrier_submits >= 200, "{s:?}");
        assert!(s.receipts_recorded >= 200, "{s:?}");
        let l = h.latency;
        assert!(l.p50_ms > 0.0);
        assert!(l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms, "{l:?}");
        assert!(l.p99_ms <= l.p999_ms && l.p999_ms <= l.max_ms, "{l:?}");
        assert!(s.commit_batches.commits > 0 && s.commit_batches.operations >= 200);
        let bucketed: u64 = s.commit_batches.buckets.iter().map(|(_, n)| n).sum();
        assert_eq!(bucketed, s.commit_batches.commits);
        // The daemon's WAL counter reaches the report: every commit writes a table's page
        // and an index's at least.
        assert!(
            s.commit_batches.wal_frames >= 2 * s.commit_batches.commits,
            "{:?}",
            s.commit_batches
        );
        let table = crate::loadgen::e2e_table(&s);
        let wal_row = format!("{} pages written", s.commit_batches.wal_frames);
        assert!(table.contains(&wal_row), "{table}");
        assert_eq!(s.runtime_workers, 2);

        // One signed `delivered` webhook per accepted message, every request verified.
        let w = s.webhooks.as_ref().expect("webhooks are on by default");
        assert_eq!(w.awaited_event, "message.status delivered");
        assert_eq!((w.expected, w.completed), (200, 200), "{w:?}");
        assert_eq!(w.signature_failures, 0, "{w:?}");
        assert_eq!(w.verified, w.requests, "{w:?}");
        assert!(w.status_events >= 200 + w.duplicates, "{w:?}");
        assert_eq!((w.not_delivered, w.malformed), (0, 0), "{w:?}");
        let l = w.latency;
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
            "{l:?}"
        );
        assert!(w.completed_per_sec > 0.0);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_key_run_should_count_every_request_as_unauthorized() {
        // The e2e stack with a load that is refused: every request still lands in one count.
        let dir = run_dir(&E2eOptions::default()).unwrap();
        let opts = E2eOptions::default();
        let stack = Stack::start(&opts, &dir).await.unwrap();
        stack.wait_ready().await.unwrap();
        let s = run_http(HttpOptions {
            url: format!("http://{}", stack.http),
            key: "not-a-key-of-this-gateway".into(),
            from: vec![LINE.into()],
            concurrency: 4,
            stop: Stop::Count(50),
            ..Default::default()
        })
        .await
        .unwrap();
        stack.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(s.requests, 50);
        assert_eq!(s.accepted, 0);
        assert_eq!(s.rejected.get("unauthorized"), Some(&50), "{s:?}");
        assert_eq!(s.latency.max_ms, 0.0, "only 202s are timed");
    }

    #[test]
    fn metrics_parse_should_read_histogram_deltas() {
        let before = Metrics::parse(
            "# HELP x\nsmsgate_store_commit_batch_size_bucket{le=\"1\"} 1\n\
             smsgate_store_commit_batch_size_bucket{le=\"2\"} 1\n\
             smsgate_store_commit_batch_size_bucket{le=\"+Inf\"} 1\n\
             smsgate_store_commit_batch_size_sum 1\nsmsgate_store_commit_batch_size_count 1\n\
             smsgate_store_wal_frames_total 30\n",
        );
        let after = Metrics::parse(
            "smsgate_store_commit_batch_size_bucket{le=\"1\"} 2\n\
             smsgate_store_commit_batch_size_bucket{le=\"2\"} 4\n\
             smsgate_store_commit_batch_size_bucket{le=\"+Inf\"} 5\n\
             smsgate_store_commit_batch_size_sum 12\nsmsgate_store_commit_batch_size_count 5\n\
             smsgate_store_wal_frames_total 230\n\
             smsgate_store_wal_restart_seconds_sum 0.0125\n\
             smsgate_store_wal_restart_seconds_count 2\n\
             smsgate_receipts_total{carrier=\"sim\",state=\"delivered\"} 3\n\
             smsgate_receipts_total{carrier=\"sim\",state=\"expired\"} 1\n",
        );
        let c = commit_batches(&before, &after);
        assert_eq!((c.commits, c.operations), (4, 11));
        assert_eq!(
            c.buckets,
            vec![("1".into(), 1), ("2".into(), 2), ("+Inf".into(), 1)]
        );
        assert_eq!((c.wal_frames, c.wal_restarts), (200, 2));
        assert!(
            (c.wal_restart_ms - 12.5).abs() < 1e-9,
            "{}",
            c.wal_restart_ms
        );
        assert_eq!(after.sum("smsgate_receipts_total"), 4.0);
    }
}
