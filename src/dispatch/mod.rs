//! Moves queued messages to carriers: claims work from the store, splits each message into
//! its parts, queues them on the carrier's sessions, and folds each part's fate back into one
//! recorded attempt per message.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicU16, atomic::Ordering},
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
};

use crate::{
    config,
    dlr::{IdSource, normalise_id},
    domain::MessageId,
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
    attempts: u32,
    remaining: usize,
    outcomes: Vec<(u32, PartOutcome)>,
}

/// Shared between a carrier's dispatcher and the completion task.
#[derive(Default)]
pub struct Tracker {
    // std Mutex: held only for map updates, never across an await.
    messages: Mutex<HashMap<MessageId, InFlight>>,
}

impl Tracker {
    fn register(&self, id: MessageId, carrier: Arc<str>, attempts: u32, parts: usize) {
        let mut map = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(
            id,
            InFlight {
                carrier,
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

/// Claims and sends one carrier's queued messages until shutdown.
pub async fn run_dispatcher(
    store: Arc<dyn Store>,
    carrier: Arc<CarrierHandle>,
    cfg: Arc<config::Carrier>,
    tracker: Arc<Tracker>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let reference = AtomicU16::new(rand::random());
    let opts = segment::Options::default();
    let limit = cfg.window * cfg.binds;
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
        let claimed = match store.claim_queued(cfg.id.clone(), limit).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(carrier = %cfg.id, error = %e, "cannot claim queued messages");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                // Retries come due without anyone waking us.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for m in claimed {
            let parts = build_parts(&m, &opts, reference.fetch_add(1, Ordering::Relaxed));
            tracker.register(
                m.id.clone(),
                carrier.id.clone(),
                m.attempts,
                parts.len().max(1),
            );
            if parts.is_empty() {
                // Every part already went out in an earlier attempt: settle it now.
                let ctx = PartCtx {
                    message: m.id.clone(),
                    seq: 0,
                };
                if let Some(a) = tracker.complete(&ctx, |_| PartOutcome::Lost) {
                    let a = Attempt {
                        parts: Vec::new(),
                        ..a
                    };
                    let _ = store.record_attempt(a).await;
                }
                continue;
            }
            for req in parts {
                if let Err(req) = carrier.submit(req).await {
                    // The carrier task is gone (shutting down): nothing more goes out.
                    let _ = store_lost(&store, &tracker, req.ctx).await;
                    break 'outer;
                }
            }
        }
    }
}

async fn store_lost(store: &Arc<dyn Store>, tracker: &Tracker, ctx: PartCtx) -> Option<()> {
    let a = tracker.complete(&ctx, |_| PartOutcome::Lost)?;
    store.record_attempt(a).await.ok()
}

/// Builds the submit_sm of every part not yet accepted by the carrier.
fn build_parts(m: &Claimed, opts: &segment::Options, reference: u16) -> Vec<SubmitRequest> {
    let seg = match segment::segment(&m.body, opts, reference) {
        Ok(s) => s,
        Err(e) => {
            // Accepted bodies were planned with the same options, so this is a bug.
            tracing::error!(message = %m.id, error = %e, "cannot segment a stored message");
            return Vec::new();
        }
    };
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
    out
}

/// Turns one carrier's session completions into recorded attempts, until every sender is gone.
pub async fn run_completions(
    mut rx: mpsc::UnboundedReceiver<Completion>,
    store: Arc<dyn Store>,
    cfg: Arc<config::Carrier>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
) {
    let mut writes = JoinSet::new();
    while let Some(c) = rx.recv().await {
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
    let (label, outcome) = match result {
        SubmitResult::Response { status, message_id } => match status::classify(*status) {
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
                    status: *status,
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
