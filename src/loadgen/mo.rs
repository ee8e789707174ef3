//! Inbound (MO) throughput: the e2e stack (simulator, daemon, webhook sink) on loopback, and
//! `concurrency` injectors that each hand the simulator one MO text at a time
//! ([`Simulator::inject_mo`], which returns on the daemon's `deliver_sm_resp`, sent only
//! after the text is stored), from many distinct handsets to the bench line. Then the wait
//! until every acknowledged text's signed `message.received` webhook reached the sink.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::{sync::watch, task::JoinSet, time::Instant};

use super::{
    BenchError, CommitBatches, CpuSplit, E2eOptions, Latency,
    e2e::{LINE, Metrics, Stack, commit_batches, cpu_sample, cpu_split, run_dir, wait_until},
    http,
    sink::{Awaited, AwaitedEvent, WebhookSummary},
};
use crate::sim::{MoMessage, SimError, Simulator};

/// Options of [`run_mo`].
#[derive(Debug, Clone)]
pub struct MoOptions {
    /// MO texts to inject.
    pub messages: u64,
    /// Injectors, each with one text in flight.
    pub concurrency: usize,
    /// Distinct handset numbers the texts come from (round-robin by ticket).
    pub handsets: usize,
    /// Carrier binds (transceivers): the simulator spreads the texts over them.
    pub binds: usize,
    /// `store.commit_batch_max`; `None` keeps the daemon's default.
    pub commit_batch_max: Option<usize>,
    /// `webhooks.concurrency`; `None` keeps the daemon's default.
    pub webhook_concurrency: Option<usize>,
    pub progress: bool,
    pub dir: Option<PathBuf>,
    pub keep_dir: bool,
    /// Longest wait, after the last acknowledgement, for the webhooks.
    pub settle_timeout: Duration,
    /// Seeds the handset numbers.
    pub seed: u64,
}

impl Default for MoOptions {
    fn default() -> Self {
        Self {
            messages: 10_000,
            concurrency: 64,
            handsets: 10_000,
            binds: 1,
            commit_batch_max: None,
            webhook_concurrency: None,
            progress: false,
            dir: None,
            keep_dir: false,
            settle_timeout: Duration::from_secs(300),
            seed: 0x00A1_1CE0,
        }
    }
}

/// What an MO run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MoSummary {
    /// Texts handed to the simulator (each in exactly one of `acked` and `refused`).
    pub messages: u64,
    /// Texts the daemon acknowledged (`deliver_sm_resp` OK: stored).
    pub acked: u64,
    /// Texts not acknowledged, by reason (`status_0x…`, `timeout`, `no_receiver`, ...).
    pub refused: BTreeMap<String, u64>,
    pub concurrency: usize,
    pub handsets: usize,
    pub binds: usize,
    /// Injectors, daemon, simulator and sink run on one runtime with this many workers.
    pub runtime_workers: usize,
    /// From the first injection to the last acknowledgement.
    #[serde(rename = "duration_s", serialize_with = "super::report::secs")]
    pub duration: Duration,
    pub acked_per_sec: f64,
    /// Injection to `deliver_sm_resp`.
    pub ack_latency: Latency,
    /// Texts the daemon counted as stored (`smsgate_mo_total{result="stored"}`).
    pub stored: u64,
    /// `message.received` webhooks: signatures checked, timed from the injection.
    pub webhooks: WebhookSummary,
    pub commit_batches: CommitBatches,
    /// CPU from the first injection to the last `message.received` webhook.
    pub cpu: Option<CpuSplit>,
    pub dir: Option<PathBuf>,
    /// Why the run failed its own checks; the binary exits with an error when not empty.
    pub problems: Vec<String>,
}

/// The body of MO `ticket`: plain GSM-7, no keyword, the ticket last so the sink can match
/// the webhook to its injection (and no two bodies alike: the daemon drops repeats).
pub(crate) fn mo_body(ticket: u64) -> String {
    format!("Running about ten minutes late, sorry. See you soon #{ticket}")
}

struct Shared {
    sim: Simulator,
    handsets: Vec<String>,
    messages: u64,
    tickets: AtomicU64,
    acked: AtomicU64,
    received: Arc<Awaited<u64>>,
    /// Microseconds after the start of the last acknowledgement.
    last_ack_us: AtomicU64,
    start: Instant,
}

struct InjectorResult {
    latency: Histogram<u64>,
    acked: u64,
    refused: BTreeMap<String, u64>,
}

fn reason(e: &SimError) -> String {
    match e {
        SimError::NoReceiver => "no_receiver".into(),
        SimError::SessionClosed => "session_closed".into(),
        SimError::ResponseTimeout { .. } => "timeout".into(),
        SimError::Refused { command_status } => format!("status_{command_status:#04x}"),
        SimError::InvalidMo(_) => "invalid".into(),
    }
}

async fn injector(shared: Arc<Shared>) -> InjectorResult {
    let mut out = InjectorResult {
        latency: http::histogram(),
        acked: 0,
        refused: BTreeMap::new(),
    };
    loop {
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= shared.messages {
            break;
        }
        let from = &shared.handsets[ticket as usize % shared.handsets.len()];
        let mo = MoMessage::text(from, LINE, &mo_body(ticket));
        let started = Instant::now();
        shared.received.start(ticket, started);
        match shared.sim.inject_mo(mo).await {
            Ok(()) => {
                let now = Instant::now();
                out.latency
                    .saturating_record(now.duration_since(started).as_micros().max(1) as u64);
                out.acked += 1;
                shared.acked.fetch_add(1, Ordering::Relaxed);
                let us = now.duration_since(shared.start).as_micros() as u64;
                shared.last_ack_us.fetch_max(us, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(ticket, error = %e, "MO not acknowledged");
                *out.refused.entry(reason(&e)).or_default() += 1;
            }
        }
    }
    out
}

/// One line a second on stderr: acknowledgements and webhooks.
async fn progress(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_acked, mut last_hooks, mut last_at) = (0, 0, Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let secs = (now - last_at).as_secs_f64();
        let acked = shared.acked.load(Ordering::Relaxed);
        let hooks = shared.received.completed();
        eprintln!(
            "[{:>5.0}s] MO acked {:>8.0}/s  message.received {:>8.0}/s  total {:>9} / {:>9}",
            (now - shared.start).as_secs_f64(),
            (acked - last_acked) as f64 / secs,
            (hooks - last_hooks) as f64 / secs,
            acked,
            hooks,
        );
        (last_acked, last_hooks, last_at) = (acked, hooks, now);
    }
}

/// Starts the stack, injects `messages` MO texts, waits for their `message.received`
/// webhooks, drains everything and reports. A run whose checks fail (signature failures,
/// texts without a webhook) still returns its summary, with `problems` saying what failed.
pub async fn run_mo(opts: MoOptions) -> Result<MoSummary, BenchError> {
    if opts.messages == 0 || opts.concurrency == 0 || opts.handsets == 0 {
        return Err(BenchError::Options(
            "--messages, --concurrency and --handsets must be at least 1".into(),
        ));
    }
    if !(1..=64).contains(&opts.binds) {
        return Err(BenchError::Options("--binds must be 1..=64".into()));
    }
    let stack_opts = E2eOptions {
        binds: opts.binds,
        commit_batch_max: opts.commit_batch_max,
        webhooks: true,
        webhook_concurrency: opts.webhook_concurrency,
        dir: opts.dir.clone(),
        keep_dir: opts.keep_dir,
        settle_timeout: opts.settle_timeout,
        ..Default::default()
    };
    let dir = run_dir(&stack_opts)?;
    let result = match Stack::start(&stack_opts, &dir).await {
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

async fn measure(opts: &MoOptions, stack: &Stack) -> Result<MoSummary, BenchError> {
    stack.wait_ready().await?;
    let sink = stack
        .sink
        .as_ref()
        .ok_or_else(|| BenchError::Setup("the MO run needs the webhook sink".into()))?;
    if !stack
        .sim
        .wait_for_receivers(opts.binds, Duration::from_secs(30))
        .await
    {
        return Err(BenchError::Timeout {
            what: format!("{} transceiver bind(s) at the simulator", opts.binds),
            after: Duration::from_secs(30),
        });
    }
    let before = stack.metrics().await?;
    let cpu_before = cpu_sample();

    let start = Instant::now();
    let shared = Arc::new(Shared {
        sim: stack.sim.clone(),
        handsets: http::destinations(opts.handsets, opts.seed),
        messages: opts.messages,
        tickets: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: sink.received(),
        last_ack_us: AtomicU64::new(0),
        start,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress_task = opts
        .progress
        .then(|| tokio::spawn(progress(shared.clone(), stop_rx)));
    let mut injectors = JoinSet::new();
    for _ in 0..opts.concurrency {
        injectors.spawn(injector(shared.clone()));
    }
    let mut ack_latency = http::histogram();
    let mut acked = 0;
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(done) = injectors.join_next().await {
        let Ok(r) = done else {
            *refused.entry("injector_panicked".into()).or_default() += 1;
            continue;
        };
        let _ = ack_latency.add(&r.latency);
        acked += r.acked;
        for (k, v) in r.refused {
            *refused.entry(k).or_default() += v;
        }
    }
    let duration = Duration::from_micros(shared.last_ack_us.load(Ordering::Relaxed));

    let received = sink.received();
    let waited = wait_until(
        opts.settle_timeout,
        "a message.received webhook for every acknowledged text",
        || received.completed() >= acked || sink.signature_failures() > 0,
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    if let Err(BenchError::Timeout { what, after }) = waited {
        return Err(BenchError::Timeout {
            what: format!("{what} ({})", stack.diagnosis().await),
            after,
        });
    }
    let cpu_after = cpu_sample();
    let cpu_wall = start.elapsed();
    let after = stack.metrics().await?;

    let webhooks = sink.summary(AwaitedEvent::Received, acked, start);
    let problems = webhooks.problems();
    let messages = acked + refused.values().sum::<u64>();
    Ok(MoSummary {
        messages,
        acked,
        refused,
        concurrency: opts.concurrency,
        handsets: opts.handsets,
        binds: opts.binds,
        runtime_workers: tokio::runtime::Handle::current().metrics().num_workers(),
        duration,
        acked_per_sec: if duration.is_zero() {
            0.0
        } else {
            acked as f64 / duration.as_secs_f64()
        },
        ack_latency: http::latency(&ack_latency),
        stored: stored(&after) - stored(&before),
        webhooks,
        commit_batches: commit_batches(&before, &after),
        cpu: cpu_split(cpu_before, cpu_after, cpu_wall),
        dir: None,
        problems,
    })
}

/// `smsgate_mo_total{result="stored"}` over every carrier.
fn stored(m: &Metrics) -> u64 {
    m.sum_where("smsgate_mo_total", "result=\"stored\"").round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tiny_mo_run_should_get_one_signed_received_webhook_per_acked_text() {
        let s = run_mo(MoOptions {
            messages: 200,
            concurrency: 8,
            handsets: 50,
            ..Default::default()
        })
        .await
        .expect("MO run succeeds");
        assert_eq!(s.messages, 200);
        assert_eq!(s.acked, 200, "{s:?}");
        assert!(s.refused.is_empty(), "{s:?}");
        assert_eq!(s.stored, 200, "{s:?}");
        let w = &s.webhooks;
        assert_eq!((w.expected, w.completed), (200, 200), "{w:?}");
        assert_eq!(w.received_events, 200 + w.duplicates, "{w:?}");
        assert_eq!(w.signature_failures, 0, "{w:?}");
        // Every request was verified (a sink that stopped checking would count none).
        assert_eq!(w.verified, w.requests, "{w:?}");
        assert!(w.requests >= 200, "{w:?}");
        assert_eq!((w.unmatched, w.malformed), (0, 0), "{w:?}");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let l = w.latency;
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
            "{l:?}"
        );
        assert!(s.ack_latency.p50_ms > 0.0);
    }

    #[test]
    fn mo_bodies_should_be_gsm7_distinct_and_carry_their_ticket() {
        for t in [0, 7, 123_456_789] {
            let b = mo_body(t);
            assert!(crate::sim::text::gsm7_encode(&b).is_some(), "{b}");
            assert!(b.chars().count() <= 160);
            assert_eq!(super::super::sink::ticket_of(&b), Some(t));
        }
        assert_ne!(mo_body(1), mo_body(2));
    }
}
