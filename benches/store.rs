//! The store's share of one message: accept, claim, the submit's outcome and the receipt, as
//! the pipeline hands them to the SQLite writer (256 messages at a time, so they group-commit
//! as under load), with and without `message.status` events (three per message, then their
//! delivery outcomes recorded as the webhook dispatcher does).
//!
//! The database lives in `/dev/shm` where there is one, so the numbers are the writer's CPU
//! and not the disk's fsync; on a real disk each commit adds its fsync on top (BENCHMARKS.md).
//!
//! Run: `cargo bench --bench store`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use smsgate::{
    domain::{MessageId, PhoneNumber, StateSet, now_millis},
    store::{
        Attempt, EventOutcome, MessageKind, NewMessage, PartOutcome, Receipt, ReceiptState, Store,
        WebhookApp, sqlite::SqliteStore,
    },
    telemetry::Metrics,
};

const BATCH: usize = 256;
const CARRIER: &str = "sim";

fn message(i: u64) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        app_id: "bench".into(),
        line: PhoneNumber::parse("+12125551000").expect("valid line"),
        to: PhoneNumber::parse(&format!("+1917456{:04}", i % 10_000)).expect("valid number"),
        body: "Your appointment with Dr. Rivera is tomorrow at 9:30 AM. Reply C to confirm or R to reschedule. Reply STOP to opt out.".into(),
        client_ref: None,
        encoding: "gsm7",
        segments: 1,
        carrier: CARRIER.into(),
        created_at: now_millis(),
        kind: MessageKind::Api,
        exempt_opt_out: false,
        high_priority: false,
        send_at: None,
        expires_at: None,
        status_url: None,
    }
}

/// One batch of messages through every store step of their life.
async fn lifecycle(store: &SqliteStore, next: &mut u64, events: bool) {
    let msgs: Vec<NewMessage> = (0..BATCH as u64).map(|k| message(*next + k)).collect();
    let ids: Vec<MessageId> = msgs.iter().map(|m| m.id.clone()).collect();
    *next += BATCH as u64;
    for r in join_all(msgs.into_iter().map(|m| store.insert_message(m, None))).await {
        r.expect("insert");
    }
    let mut claimed = 0;
    while claimed < BATCH {
        let got = store
            .claim_queued(CARRIER.into(), BATCH, Vec::new(), None)
            .await
            .expect("claim");
        assert!(!got.is_empty(), "claim found nothing");
        claimed += got.len();
    }
    let carrier_ids: Vec<String> = ids.iter().map(|id| format!("c-{}", id.as_str())).collect();
    let attempts = ids.iter().zip(&carrier_ids).map(|(id, cid)| {
        store.record_attempt(Attempt {
            id: id.clone(),
            carrier: CARRIER.into(),
            pdus: None,
            parts: vec![(
                1,
                PartOutcome::Accepted {
                    carrier_message_id: cid.clone(),
                },
            )],
        })
    });
    for r in join_all(attempts).await {
        r.expect("attempt");
    }
    let receipts = carrier_ids.iter().map(|cid| {
        store.record_receipt(Receipt {
            carrier: CARRIER.into(),
            carrier_message_id: cid.clone(),
            state: ReceiptState::Delivered,
            stat: "DELIVRD".into(),
            err: Some("000".into()),
            received_at: now_millis(),
            not_textable: None,
        })
    });
    for r in join_all(receipts).await {
        r.expect("receipt");
    }
    if events {
        // What the dispatcher does: fetch what is due, record each outcome, until the outbox
        // is empty (one event per conversation is due at a time).
        loop {
            let due = store
                .due_events(now_millis(), 1000, Vec::new())
                .await
                .expect("due events");
            if due.is_empty() {
                break;
            }
            store
                .record_events(
                    due.into_iter()
                        .map(|e| (e.seq, EventOutcome::Delivered))
                        .collect(),
                )
                .await
                .expect("record events");
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let mut g = c.benchmark_group("store_lifecycle");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    for (name, events) in [("no_events", false), ("three_events", true)] {
        let store = SqliteStore::open(
            &dir.path().join(format!("{name}.db")),
            1024,
            Arc::new(Metrics::new()),
        )
        .expect("open store");
        if events {
            store.set_webhook_apps([(
                "bench".to_owned(),
                WebhookApp {
                    has_url: true,
                    status_events: StateSet::status_events(),
                },
            )]);
        }
        let mut next = 0u64;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        lifecycle(&store, &mut next, events).await;
                        total += started.elapsed();
                    }
                    total
                })
            })
        });
        rt.block_on(store.close());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
