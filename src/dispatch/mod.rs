//! Moves queued messages to carriers: claims work from the store, splits each message into
//! its parts, queues them on the carrier's sessions, and folds each part's fate back into one
//! recorded attempt per message.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::Duration,
};

use rusmpp::{
    pdus::SubmitSm,
    tlvs::MessageSubmissionRequestTlvValue,
    types::{COctetString, OctetString},
    values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton},
};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinSet,
    time::Instant,
};

use crate::{
    config,
    dlr::{IdSource, normalise_id},
    domain::MessageId,
    ratelimit::{LineLimit, Priority, Scheduler},
    segment,
    smpp::{
        carrier::CarrierHandle,
        session::{Completion, PartCtx, SubmitRequest, SubmitResult},
        status::{self, StatusClass},
    },
    store::{Attempt, Claimed, NotTextable, PartOutcome, Store},
    telemetry::Metrics,
};

/// Parts of one message still waiting for their outcome.
struct InFlight {
    carrier: Arc<str>,
    pdus: Option<u32>,
    attempts: u32,
    remaining: usize,
    outcomes: Vec<(u32, PartOutcome)>,
}

/// Shared between a carrier's dispatcher and the completion task.
#[derive(Default)]
pub struct Tracker {
    // std Mutex: held only for map updates, never across an await.
    messages: Mutex<HashMap<MessageId, InFlight>>,
    /// Throttling answers and accepted submits seen, for the scheduler's adaptive rate.
    throttled: AtomicU64,
    accepted: AtomicU64,
}

impl Tracker {
    fn register(
        &self,
        id: MessageId,
        carrier: Arc<str>,
        attempts: u32,
        parts: usize,
        pdus: Option<u32>,
    ) {
        let mut map = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            id,
            InFlight {
                carrier,
                pdus,
                attempts,
                remaining: parts,
                outcomes: Vec::with_capacity(parts),
            },
        );
    }

    /// Records a part's outcome; returns the whole attempt once every part has one.
    fn complete(&self, ctx: &PartCtx, outcome: impl FnOnce(u32) -> PartOutcome) -> Option<Attempt> {
        let mut map = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(&ctx.message)?;
        let o = outcome(entry.attempts);
        entry.outcomes.push((ctx.seq, o));
        entry.remaining -= 1;
        if entry.remaining > 0 {
            return None;
        }
        let done = map.remove(&ctx.message)?;
        Some(Attempt {
            id: ctx.message.clone(),
            carrier: done.carrier.to_string(),
            pdus: done.pdus,
            parts: done.outcomes,
        })
    }

    pub fn len(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one carrier's dispatcher works with.
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub carrier: Arc<CarrierHandle>,
    pub config: config::Live,
    pub cfg: Arc<config::Carrier>,
    pub tracker: Arc<Tracker>,
    /// Notified when new work is queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Carriers whose lines this carrier takes over when they are down.
    pub failover: Vec<Failover>,
}

/// Another carrier's lines that name this carrier as a fallback.
pub struct Failover {
    pub primary: Arc<CarrierHandle>,
    pub after: Duration,
    pub lines: Vec<String>,
}

/// How much claimed work may wait in the scheduler, in windows.
const SCHEDULED_WINDOWS: usize = 4;
/// How long to wait before claiming again after a claim that skipped lines found nothing.
const EMPTY_CLAIM_BACKOFF: Duration = Duration::from_millis(100);
/// A line with this many messages already waiting for tokens gets no more claimed for now...
const LINE_BACKLOG: usize = 8;
/// ...when they take at least this long to go out at the line's rate.
const SLOW_BACKLOG: Duration = Duration::from_secs(1);

/// Claims and sends one carrier's queued messages until shutdown: claimed messages wait in a
/// fair scheduler until their line and the carrier have rate tokens, then their parts are
/// queued on the carrier's sessions.
pub async fn run_dispatcher(d: Dispatcher, mut shutdown: watch::Receiver<bool>) {
    let Dispatcher {
        store,
        carrier,
        config,
        cfg,
        tracker,
        wake,
        metrics,
        failover,
    } = d;
    let reference = AtomicU16::new(rand::random());
    let window = cfg.window * cfg.binds;
    let cap = window * SCHEDULED_WINDOWS;
    let mut sched: Scheduler<Claimed> = Scheduler::new(cfg.max_rate, 0);
    let (mut seen_throttled, mut seen_accepted) = (0u64, 0u64);
    let mut seen_waits = 0u64;
    let mut backlog = Backlog::default();
    let mut last_empty_claim: Option<Instant> = None;
    let queued_gauge = metrics.scheduler_queued.with_label_values(&[&cfg.id]);
    let waits = metrics.limiter_waits.with_label_values(&[&cfg.id]);
    'outer: loop {
        if *shutdown.borrow() {
            break;
        }
        if carrier.bound() == 0 {
            tokio::select! {
                _ = carrier.wait_bound() => {}
                _ = shutdown.changed() => continue,
            }
        }
        // Carrier back-pressure seen by the completion task since the last turn.
        let now = Instant::now();
        let throttled = tracker.throttled.load(Ordering::Relaxed);
        if throttled != seen_throttled {
            seen_throttled = throttled;
            sched.on_throttled(now);
        }
        let accepted = tracker.accepted.load(Ordering::Relaxed);
        if accepted != seen_accepted {
            seen_accepted = accepted;
            sched.on_accepted(now);
        }

        // Lines (rates, encodings) and the carrier's contract as reloaded, per turn.
        let lines = config.get();
        sched.set_carrier_rate(carrier.settings().max_rate);
        let mut claimed_any = false;
        // When every queued message belongs to a line already waiting for tokens, a claim
        // scans that backlog and finds nothing: do not repeat it on every wake-up.
        let claim_now = sched.len() < cap
            && last_empty_claim.is_none_or(|t: Instant| t.elapsed() >= EMPTY_CLAIM_BACKOFF);
        if claim_now {
            let skip = backlog.lines(|l| sched.line_backlog(l) >= SLOW_BACKLOG);
            let mut claims = vec![(cfg.id.clone(), None)];
            for f in &failover {
                if f.primary.down_for().is_some_and(|d| d >= f.after) {
                    claims.push((f.primary.id.to_string(), Some(f.lines.clone())));
                }
            }
            let mut result = Ok(Vec::new());
            for (claim_carrier, only) in claims {
                let room = cap.saturating_sub(sched.len());
                if room == 0 {
                    break;
                }
                match store
                    .claim_queued(claim_carrier, room, skip.clone(), only)
                    .await
                {
                    Ok(mut c) => {
                        if let Ok(all) = &mut result {
                            all.append(&mut c);
                        }
                    }
                    Err(e) => result = Err(e),
                }
            }
            match result {
                Ok(claimed) => {
                    claimed_any = !claimed.is_empty();
                    last_empty_claim = (!claimed_any && !skip.is_empty()).then(Instant::now);
                    for m in claimed {
                        let line = lines.lines.get(&m.line);
                        let limit =
                            line.map_or(LineLimit::for_class(Default::default()), |l| l.rate);
                        let cost = m.segments.saturating_sub(m.sent_parts.len() as u32).max(1);
                        let priority = if m.high_priority {
                            Priority::High
                        } else {
                            Priority::Normal
                        };
                        let key = m.line.as_str().to_owned();
                        backlog.add(&key);
                        sched.push(&key, limit, cost, priority, m);
                    }
                }
                Err(e) => {
                    tracing::error!(carrier = %cfg.id, error = %e, "cannot claim queued messages");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            }
        }

        let now = Instant::now();
        let mut sent_any = false;
        while let Some(m) = sched.pop_ready(now) {
            sent_any = true;
            backlog.remove(m.line.as_str());
            // The line's options (its carrier's encodings), as when the message was accepted.
            let opts = lines
                .lines
                .get(&m.line)
                .map_or(&cfg.segment, |l| &l.segment);
            let (parts, pdus) = match build_parts(
                &m,
                opts,
                reference.fetch_add(1, Ordering::Relaxed),
            ) {
                Ok(built) => built,
                Err(reason) => {
                    // Nothing this carrier can take (e.g. an auto-reply longer than its
                    // max_parts): fail it rather than leave it sending.
                    tracing::warn!(message = %m.id, %reason, "cannot segment a stored message for this carrier");
                    let _ = store
                        .record_attempt(Attempt {
                            id: m.id.clone(),
                            carrier: cfg.id.clone(),
                            pdus: None,
                            parts: vec![(
                                1,
                                PartOutcome::Permanent {
                                    status: None,
                                    reason: "cannot_segment".into(),
                                    not_textable: None,
                                },
                            )],
                        })
                        .await;
                    continue;
                }
            };
            tracker.register(
                m.id.clone(),
                carrier.id.clone(),
                m.attempts,
                parts.len().max(1),
                // Stored only where it differs from the segments (message_payload).
                (pdus != m.segments).then_some(pdus),
            );
            if parts.is_empty() {
                // Every part already went out in an earlier attempt: settle it now.
                let ctx = PartCtx {
                    message: m.id.clone(),
                    seq: 0,
                };
                if let Some(a) = tracker.complete(&ctx, |_| PartOutcome::Lost) {
                    let _ = store
                        .record_attempt(Attempt {
                            parts: Vec::new(),
                            ..a
                        })
                        .await;
                }
                continue;
            }
            let mut parts = parts.into_iter();
            while let Some(req) = parts.next() {
                if let Err(req) = carrier.submit(req).await {
                    // The carrier task is gone (shutting down): this message and the rest
                    // go back to the queue.
                    let _ = store_lost(&store, &tracker, req.ctx).await;
                    for rest in parts {
                        let _ = store_lost(&store, &tracker, rest.ctx).await;
                    }
                    break 'outer;
                }
            }
        }
        queued_gauge.set(sched.len() as i64);
        let w = sched.limiter_waits();
        waits.inc_by(w - seen_waits);
        seen_waits = w;
        if claimed_any && sched.len() < cap {
            continue;
        }
        if !sent_any || sched.len() >= cap {
            let until = sched
                .next_ready_at(now)
                .unwrap_or(now + Duration::from_millis(250))
                .min(now + Duration::from_millis(250));
            tokio::select! {
                _ = wake.notified() => {}
                // Rate tokens and retries come due without anyone waking us.
                _ = tokio::time::sleep_until(until) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    // Claimed but never sent: back to the queue now rather than at the next start.
    for m in sched.take_all() {
        let _ = store
            .record_attempt(Attempt {
                id: m.id.clone(),
                carrier: cfg.id.clone(),
                pdus: None,
                parts: vec![(1, PartOutcome::Lost)],
            })
            .await;
    }
    queued_gauge.set(0);
}

/// Lines with a deep queue in the scheduler, so claims leave them alone for a while.
#[derive(Default)]
struct Backlog {
    counts: HashMap<String, usize>,
    deep: std::collections::HashSet<String>,
}

impl Backlog {
    /// Most lines named in a claim's skip list; past that a claim may pick up more of a
    /// backlog, which only costs memory, never fairness within the scheduler.
    const MAX_SKIP: usize = 1000;

    fn add(&mut self, line: &str) {
        let n = self.counts.entry(line.to_owned()).or_default();
        *n += 1;
        if *n == LINE_BACKLOG {
            self.deep.insert(line.to_owned());
        }
    }

    fn remove(&mut self, line: &str) {
        if let Some(n) = self.counts.get_mut(line) {
            *n -= 1;
            if *n + 1 == LINE_BACKLOG {
                self.deep.remove(line);
            }
            if *n == 0 {
                self.counts.remove(line);
            }
        }
    }

    /// Deep backlogs of lines that `slow` says take long to send at their own rate. A fast
    /// line's backlog drains at the carrier's pace and is claimed like any other: skipping it
    /// would leave a busy line (or the only line) without claims while every claim scanned its
    /// queue for nothing.
    fn lines(&self, slow: impl Fn(&str) -> bool) -> Vec<String> {
        self.deep
            .iter()
            .filter(|l| slow(l))
            .take(Self::MAX_SKIP)
            .cloned()
            .collect()
    }
}

async fn store_lost(store: &Arc<dyn Store>, tracker: &Tracker, ctx: PartCtx) -> Option<()> {
    let a = tracker.complete(&ctx, |_| PartOutcome::Lost)?;
    store.record_attempt(a).await.ok()
}

/// Builds the submit_sm of every part not yet accepted by the carrier.
/// The submits of a message's parts not yet accepted, and how many submits the whole message
/// takes on this carrier.
fn build_parts(
    m: &Claimed,
    opts: &segment::Options,
    reference: u16,
) -> Result<(Vec<SubmitRequest>, u32), String> {
    let seg = segment::segment(&m.body, opts, reference).map_err(|e| e.to_string())?;
    let pdus = seg.parts.len() as u32;
    let source = m
        .line
        .digits()
        .parse::<COctetString<1, 21>>()
        .unwrap_or_default();
    let dest =
        m.to.digits()
            .parse::<COctetString<1, 21>>()
            .unwrap_or_default();
    let mut out = Vec::with_capacity(seg.parts.len());
    for (i, part) in seg.parts.into_iter().enumerate() {
        let seq = i as u32 + 1;
        if m.sent_parts.contains(&seq) {
            continue;
        }
        let mut tlvs = Vec::new();
        if let Some(sar) = &part.sar {
            tlvs.push(MessageSubmissionRequestTlvValue::SarMsgRefNum(sar.ref_num));
            tlvs.push(MessageSubmissionRequestTlvValue::SarTotalSegments(
                sar.total,
            ));
            tlvs.push(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(sar.seq));
        }
        let short_message = if part.payload {
            tlvs.push(MessageSubmissionRequestTlvValue::MessagePayload(
                MessagePayload::new(part.short_message.into()),
            ));
            OctetString::empty()
        } else {
            OctetString::from_vec(part.short_message).unwrap_or_default()
        };
        let pdu = SubmitSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(source.clone())
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(dest.clone())
            .esm_class(EsmClass::from(if part.udhi { 0x40 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(0x01))
            .data_coding(DataCoding::from(seg.data_coding))
            .short_message(short_message)
            .tlvs(tlvs)
            .build();
        out.push(SubmitRequest {
            pdu,
            ctx: PartCtx {
                message: m.id.clone(),
                seq,
            },
        });
    }
    Ok((out, pdus))
}

/// Turns one carrier's session completions into recorded attempts, until every sender is gone.
pub async fn run_completions(
    mut rx: mpsc::UnboundedReceiver<Completion>,
    store: Arc<dyn Store>,
    settings: watch::Receiver<Arc<config::Carrier>>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
) {
    let mut writes = JoinSet::new();
    while let Some(c) = rx.recv().await {
        // Status overrides and id formats as last reloaded.
        let cfg = settings.borrow().clone();
        if let SubmitResult::Response { status, .. } = &c.result {
            match cfg.classify(*status) {
                StatusClass::Ok => {
                    tracker.accepted.fetch_add(1, Ordering::Relaxed);
                }
                StatusClass::Throttled => {
                    tracker.throttled.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        let outcome = |attempts: u32| classify(&c.result, &cfg, attempts, &metrics, c.latency);
        if let Some(attempt) = tracker.complete(&c.ctx, outcome) {
            let store = store.clone();
            let carrier = cfg.id.clone();
            writes.spawn(async move {
                if let Err(e) = store.record_attempt(attempt).await {
                    tracing::error!(carrier, error = %e, "cannot record a submit outcome; the message is requeued at next start");
                }
            });
        }
        while writes.try_join_next().is_some() {}
    }
    while writes.join_next().await.is_some() {}
}

fn classify(
    result: &SubmitResult,
    cfg: &config::Carrier,
    attempts: u32,
    metrics: &Metrics,
    latency: Option<Duration>,
) -> PartOutcome {
    let carrier = cfg.id.as_str();
    if let Some(l) = latency {
        metrics
            .submit_seconds
            .with_label_values(&[carrier])
            .observe(l.as_secs_f64());
    }
    if let SubmitResult::Response { status, .. } = result
        && *status != 0
    {
        // Named statuses only: a carrier's arbitrary values must not grow the label set.
        let name = status::name(*status);
        let name = if name.starts_with("ESME_") {
            name.as_str()
        } else {
            "other"
        };
        metrics
            .submit_errors
            .with_label_values(&[carrier, name])
            .inc();
    }
    let (label, outcome) = match result {
        SubmitResult::Response { status, message_id } => match cfg.classify(*status) {
            StatusClass::Ok => (
                "ok",
                PartOutcome::Accepted {
                    carrier_message_id: normalise_id(
                        message_id,
                        cfg.dlr_id_format,
                        IdSource::SubmitResponse,
                    ),
                },
            ),
            class @ StatusClass::Throttled => {
                metrics.throttled.with_label_values(&[carrier]).inc();
                (
                    "throttled",
                    PartOutcome::Retry {
                        status: *status,
                        delay: status::retry_delay(class, attempts),
                    },
                )
            }
            class @ StatusClass::Temporary => (
                "retry",
                PartOutcome::Retry {
                    status: *status,
                    delay: status::retry_delay(class, attempts),
                },
            ),
            StatusClass::Permanent => (
                "permanent",
                PartOutcome::Permanent {
                    status: Some(*status),
                    reason: status::name(*status),
                    not_textable: cfg
                        .not_textable_statuses
                        .contains(status)
                        .then(|| NotTextable {
                            reason: format!(
                                "carrier {} answered {}",
                                cfg.id,
                                status::name(*status)
                            ),
                            until: crate::domain::now_millis()
                                + cfg.not_textable_ttl.as_millis() as i64,
                        }),
                },
            ),
        },
        SubmitResult::Timeout | SubmitResult::ConnectionLost => {
            metrics.resubmits.with_label_values(&[carrier]).inc();
            ("lost", PartOutcome::Lost)
        }
        SubmitResult::NotSent => ("not_sent", PartOutcome::Lost),
    };
    metrics.submits.with_label_values(&[carrier, label]).inc();
    outcome
}
