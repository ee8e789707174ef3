//! The carrier layer alone (session + window, no HTTP, no store) against smsc-sim, for
//! BENCHMARKS.md. Ignored by default; run with
//! `cargo test --release --test bench_carrier -- --ignored --nocapture`.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rusmpp::{
    pdus::{DeliverSm, SubmitSm},
    types::{COctetString, OctetString},
    values::{Npi, Ton},
};
use smsgate::{
    domain::MessageId,
    sim::{ReceiptMode, SimConfig, Simulator},
    smpp::session::{
        self, InboundHandler, Links, PartCtx, SessionConfig, SessionObserver, SubmitRequest,
    },
};
use tokio::sync::{mpsc, watch};

struct AckAll;
impl InboundHandler for AckAll {
    fn deliver_sm(&self, _: Arc<str>, _: DeliverSm) -> BoxFuture<'static, u32> {
        Box::pin(async { 0 })
    }
}
struct Quiet;
impl SessionObserver for Quiet {}

/// Sends `n` submits spread over `sessions` sessions (each its own connection and window) and
/// returns submits answered per second.
async fn run(n: usize, window: usize, sessions: usize, receipts: bool) -> f64 {
    let sim = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            receipt: ReceiptMode {
                state: if receipts {
                    Some(smsgate::sim::ReceiptState::Delivered)
                } else {
                    None
                },
                ..Default::default()
            },
            submit_log_capacity: 0,
            ..Default::default()
        },
    )
    .await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (_sd, sd_rx) = watch::channel(false);
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let tcp = tokio::net::TcpStream::connect(sim.local_addr())
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let cfg = SessionConfig {
            carrier: Arc::from("bench"),
            system_id: "smsgate".into(),
            password: "secret".into(),
            system_type: String::new(),
            window,
            response_timeout: Duration::from_secs(30),
            enquire_link: Duration::from_secs(30),
            max_command_length: 4096,
            drain_timeout: Duration::from_secs(5),
            bind: Default::default(),
        };
        let (req_tx, mut req_rx) = mpsc::channel(window * 2);
        queues.push(req_tx);
        let (done_tx, sd_rx) = (done_tx.clone(), sd_rx.clone());
        tasks.push(tokio::spawn(async move {
            session::run(
                tcp,
                &cfg,
                Links {
                    requests: &mut req_rx,
                    completions: &done_tx,
                    inbound: Arc::new(AckAll),
                    observer: Arc::new(Quiet),
                },
                sd_rx,
                || {},
            )
            .await
        }));
    }
    let body = OctetString::from_vec(vec![b'a'; 160]).unwrap();
    let (src, dst): (COctetString<1, 21>, COctetString<1, 21>) = (
        "12125551000".parse().unwrap(),
        "19175551234".parse().unwrap(),
    );
    let id = MessageId::generate();
    let start = std::time::Instant::now();
    // One producer per session, like the dispatcher's round robin over bind slots.
    let mut producers = Vec::new();
    for (k, req_tx) in queues.into_iter().enumerate() {
        let (src, dst, body, id) = (src.clone(), dst.clone(), body.clone(), id.clone());
        let share = n / sessions + usize::from(k < n % sessions);
        producers.push(tokio::spawn(async move {
            for i in 0..share {
                let pdu = SubmitSm::builder()
                    .source_addr_ton(Ton::International)
                    .source_addr_npi(Npi::Isdn)
                    .source_addr(src.clone())
                    .dest_addr_ton(Ton::International)
                    .dest_addr_npi(Npi::Isdn)
                    .destination_addr(dst.clone())
                    .registered_delivery(rusmpp::values::RegisteredDelivery::from(u8::from(
                        receipts,
                    )))
                    .short_message(body.clone())
                    .build();
                if req_tx
                    .send(SubmitRequest {
                        pdu,
                        ctx: PartCtx {
                            message: id.clone(),
                            seq: i as u32,
                        },
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    let mut ok = 0;
    while ok < n {
        let c = done_rx.recv().await.expect("session alive");
        assert!(
            matches!(c.result, session::SubmitResult::Response { status: 0, .. }),
            "{c:?}"
        );
        ok += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for p in producers {
        p.await.unwrap();
    }
    for t in tasks {
        t.abort();
    }
    sim.shutdown().await;
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode"]
async fn carrier_layer_submit_sm_per_second() {
    for sessions in [1, 4] {
        for (window, receipts) in [
            (1, false),
            (10, false),
            (64, false),
            (256, false),
            (256, true),
        ] {
            let n = if window == 1 { 20_000 } else { 200_000 };
            let rate = run(n, window, sessions, receipts).await;
            println!(
                "sessions {sessions}, window {window:>3}, receipts {receipts:>5}: {n} submit_sm in-process against smsc-sim: {rate:>9.0} submit_sm/s"
            );
        }
    }
}

#[tokio::test]
async fn the_carrier_bench_harness_works_on_a_small_run() {
    assert!(run(200, 16, 1, true).await > 0.0);
    assert!(run(203, 16, 4, true).await > 0.0);
}
