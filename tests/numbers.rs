//! Number intelligence: lookups with a cache, fail open/closed, marks learned from carriers.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::Query, routing::get};
use common::*;
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};
use tokio::net::TcpListener;

/// A line-type lookup stub: numbers ending in 0000 are landlines; counts calls per number.
async fn lookup_stub() -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = calls.clone();
    let app = Router::new().route(
        "/lookup",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let seen = seen.clone();
            async move {
                let n = q.get("number").cloned().unwrap_or_default();
                *seen.lock().unwrap().entry(n.clone()).or_default() += 1;
                let kind = if n.ends_with("0000") {
                    "landline"
                } else {
                    "mobile"
                };
                Json(json!({ "carrier": { "type": kind } }))
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, calls)
}

fn numbers_section(lookup_port: u16) -> String {
    format!(
        "\n[numbers]\nlookup_url = \"http://127.0.0.1:{lookup_port}/lookup?number={{number}}\"\nlookup_timeout = \"1s\"\nline_type_field = \"carrier.type\"\n"
    )
}

#[tokio::test]
async fn a_landline_from_the_lookup_is_refused_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (port, calls) = lookup_stub().await;
    let cfg = format!(
        "{}{}",
        config_text(&dir.path().join("t.db"), free_port(), ""),
        numbers_section(port)
    );
    let d = Daemon::start(&cfg).await;
    let c = reqwest::Client::new();
    for _ in 0..2 {
        let (status, b) = send(
            &c,
            &d,
            CLINIC_KEY,
            json!({"from": CLINIC_LINE, "to": "+13125550000", "body": "hi"}),
        )
        .await;
        assert_eq!(status, 422, "{b}");
        assert_eq!(b["error"]["code"], "not_textable");
        assert_eq!(b["error"]["details"]["source"], "lookup");
    }
    assert_eq!(
        calls.lock().unwrap().get("+13125550000"),
        Some(&1),
        "second send used the cache"
    );
    let (status, _) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+13125551234", "body": "hi"}),
    )
    .await;
    assert_eq!(status, 202);
    let info: serde_json::Value = c
        .get(d.url("/v1/numbers/3125550000"))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["textable"], false);
    assert_eq!(info["line_type"], "landline");
    // An operator knows better (the number was ported to a mobile).
    let r = c
        .put(d.url("/v1/numbers/+13125550000"))
        .bearer_auth(CLINIC_KEY)
        .json(&json!({"textable": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+13125550000", "body": "hi"}),
    )
    .await;
    assert_eq!(status, 202);
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_number_checks_total{result="not_textable"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"smsgate_messages_rejected_total{reason="not_textable"} 2"#),
        "{m}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_lookup_that_is_down_fails_open_unless_the_line_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let cfg = format!(
        "{}{}",
        config_text(&dir.path().join("t.db"), free_port(), ""),
        numbers_section(dead)
    )
    .replace(
        "number = \"+12125552000\"",
        "number = \"+12125552000\"\nlookup_fail_closed = true",
    );
    let d = Daemon::start(&cfg).await;
    let c = reqwest::Client::new();
    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+13125551234", "body": "hi"}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let (status, b) = send(
        &c,
        &d,
        DENTAL_KEY,
        json!({"from": DENTAL_LINE, "to": "+13125551234", "body": "hi"}),
    )
    .await;
    assert_eq!(status, 503, "{b}");
    assert_eq!(b["error"]["code"], "lookup_unavailable");
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_number_checks_total{result="error"} 2"#),
        "{m}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_carrier_saying_landline_marks_the_number_and_later_sends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim_cfg = SimConfig {
        error_prefixes: vec![("1312555".into(), 0x0B)],
        receipt_error_prefixes: vec![("1415555".into(), 5)],
        ..Default::default()
    };
    let s = Simulator::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), sim_cfg).await;
    let cfg = config_text(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        "not_textable_statuses = [11]\nnot_textable_receipt_errors = [\"005\"]",
    );
    let d = Daemon::start(&cfg).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    let c = reqwest::Client::new();
    let (_, a) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+13125551234", "body": "hi"}),
    )
    .await;
    let (_, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+14155551234", "body": "hi"}),
    )
    .await;
    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        a["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["error"]["code"], "not_textable", "{m}");
    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        b["id"].as_str().unwrap(),
        "undelivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["error"]["code"], "not_textable", "{m}");
    for to in ["+13125551234", "+14155551234"] {
        let (status, e) = send(
            &c,
            &d,
            CLINIC_KEY,
            json!({"from": CLINIC_LINE, "to": to, "body": "again"}),
        )
        .await;
        assert_eq!(status, 422, "{e}");
        assert_eq!(e["error"]["details"]["source"], "carrier");
    }
    assert_eq!(
        s.submits().len(),
        2,
        "refused up front, nothing more reached the carrier"
    );
    d.stop().await;
    s.shutdown().await;
}
