//! Property: for any sequence of keyword texts, API opt-out changes and sends, no message other
//! than an opt-out confirmation is ever handed to a carrier for a number opted out of its line.

mod common;

use std::{path::Path, sync::Arc};

use proptest::prelude::*;
use smsgate::{
    config,
    domain::{MessageId, PhoneNumber, now_millis},
    mo::Planner,
    store::{
        InboundOutcome, InboundPart, MessageKind, NewMessage, OptOutChange, Store,
        sqlite::SqliteStore,
    },
    telemetry::Metrics,
};

#[derive(Debug, Clone)]
enum Op {
    /// An inbound text from number `n` to line `l`.
    Text {
        n: usize,
        l: usize,
        body: &'static str,
    },
    /// The app changes the list through the API.
    Api { n: usize, l: usize, opted_out: bool },
    /// The app sends to number `n` from line `l` (straight into the store, as if an API check
    /// had raced with a STOP).
    Send { n: usize, l: usize },
    /// A dispatcher claims what is queued.
    Claim,
}

const BODIES: &[&str] = &[
    "STOP",
    "stop.",
    "STOPALL",
    "START",
    "unstop",
    "HELP",
    "hi",
    "please stop",
    "Yes",
];
const NUMBERS: &[&str] = &["+19175551234", "+13125551234"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..2usize, 0..BODIES.len()).prop_map(|(n, l, b)| Op::Text {
            n,
            l,
            body: BODIES[b]
        }),
        (0..2usize, 0..2usize, any::<bool>()).prop_map(|(n, l, opted_out)| Op::Api {
            n,
            l,
            opted_out
        }),
        (0..2usize, 0..2usize).prop_map(|(n, l)| Op::Send { n, l }),
        Just(Op::Claim),
    ]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let text = common::config_text(Path::new("unused.db"), 2775, "")
            .replace("app = \"dental\"\ncarrier", "app = \"clinic\"\ncarrier");
        let cfg = Arc::new(config::parse(&text).unwrap());
        // Both lines belong to one app for this property, so STOPALL spans them.
        let lines = [
            PhoneNumber::parse(common::CLINIC_LINE).unwrap(),
            PhoneNumber::parse(common::DENTAL_LINE).unwrap(),
        ];
        let store =
            SqliteStore::open(&dir.path().join("p.db"), 64, Arc::new(Metrics::new())).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let planner = Planner::new(config::Live::new(cfg.clone())).into_planner();
        let numbers: Vec<PhoneNumber> = NUMBERS
            .iter()
            .map(|n| PhoneNumber::parse(n).unwrap())
            .collect();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Text { n, l, body } => {
                    seq += 1;
                    let out = store
                        .record_inbound(
                            InboundPart {
                                carrier: "sim".into(),
                                line: lines[l].clone(),
                                from: numbers[n].clone(),
                                concat: None,
                                text: body.into(),
                                dedup_key: format!("k{seq}"),
                                received_at: now_millis(),
                            },
                            planner.clone(),
                        )
                        .await
                        .unwrap();
                    let stored = matches!(out, InboundOutcome::Stored { .. });
                    prop_assert!(stored);
                }
                Op::Api { n, l, opted_out } => {
                    let app = cfg.lines[&lines[l]].app.clone();
                    store
                        .change_opt_out(
                            app,
                            OptOutChange {
                                lines: vec![lines[l].clone()],
                                number: numbers[n].clone(),
                                opted_out,
                                source: "api".into(),
                            },
                        )
                        .await
                        .unwrap();
                }
                Op::Send { n, l } => {
                    let line = &cfg.lines[&lines[l]];
                    store
                        .insert_message(
                            NewMessage {
                                id: MessageId::generate(),
                                app_id: line.app.clone(),
                                line: lines[l].clone(),
                                to: numbers[n].clone(),
                                body: "reminder".into(),
                                client_ref: None,
                                encoding: "gsm7",
                                segments: 1,
                                carrier: "sim".into(),
                                created_at: now_millis(),
                                kind: MessageKind::Api,
                                exempt_opt_out: false,
                                high_priority: false,
                                send_at: None,
                                expires_at: None,
                                status_url: None,
                            },
                            None,
                        )
                        .await
                        .unwrap();
                }
                Op::Claim => {
                    for m in store
                        .claim_queued("sim".into(), 1000, Vec::new(), None)
                        .await
                        .unwrap()
                    {
                        let opted_out = store
                            .opt_out(m.line.clone(), m.to.clone())
                            .await
                            .unwrap()
                            .is_some();
                        if opted_out {
                            // Only the confirmation of that very opt-out may go.
                            prop_assert!(
                                m.body
                                    .starts_with("You have successfully been unsubscribed"),
                                "{:?} would reach an opted-out number",
                                m.body
                            );
                        }
                    }
                }
            }
        }
        store.close().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn nothing_but_a_confirmation_reaches_an_opted_out_number(ops in prop::collection::vec(op(), 1..40)) {
        let mut ops = ops;
        ops.push(Op::Claim);
        run(ops)?;
    }
}
