//! End to end on loopback: HTTP submit -> store -> SMPP -> smsc-sim -> receipt -> API.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use smsgate::sim::{ReceiptState, SimConfig, Simulator};
use tokio::net::TcpListener;

async fn sim(cfg: SimConfig) -> Simulator {
    Simulator::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), cfg).await
}

async fn setup(cfg: SimConfig) -> (tempfile::TempDir, Simulator, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(cfg).await;
    let d = Daemon::start(&config_text(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        "",
    ))
    .await;
    assert!(
        d.wait_ready(Duration::from_secs(10)).await,
        "daemon binds to the simulator"
    );
    (dir, s, d)
}

#[tokio::test]
async fn a_submitted_message_reaches_the_carrier_and_its_receipt_marks_it_delivered() {
    let (_dir, s, d) = setup(SimConfig::default()).await;
    let c = reqwest::Client::new();
    let (status, body) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "(917) 555-1234", "body": "Your appointment is tomorrow at 9", "client_ref": "appt-1"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["encoding"], "gsm7");
    let id = body["id"].as_str().unwrap().to_owned();

    assert!(s.wait_for_submits(1, Duration::from_secs(10)).await);
    let sub = &s.submits()[0];
    assert_eq!(sub.destination_addr, "19175551234");
    assert_eq!(sub.source_addr, "12125551000");
    assert_eq!(sub.text(), "Your appointment is tomorrow at 9");
    assert_eq!(sub.registered_delivery & 1, 1, "a receipt is requested");

    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        &id,
        "delivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["to"], "+19175551234");
    assert_eq!(m["client_ref"], "appt-1");
    let part = &m["parts"][0];
    assert_eq!(
        part["carrier_message_id"].as_str().unwrap(),
        sub.message_id
            .as_deref()
            .unwrap()
            .to_ascii_lowercase()
            .trim_start_matches('0')
    );
    assert_eq!(part["receipt"]["stat"], "DELIVRD");

    let metrics = d.metrics().await;
    assert!(
        metrics.contains("smsgate_messages_accepted_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"smsgate_receipts_total{carrier="sim",state="delivered"} 1"#));
    assert!(metrics.contains(r#"smsgate_binds_up{carrier="sim"} 1"#));
    assert!(
        !metrics.contains("9175551234"),
        "metrics never hold a phone number"
    );
    // `smsgate status` reads the same listener.
    let view = smsgate::status::fetch(&d.admin.to_string()).await.unwrap();
    assert!(view.starts_with("smsgate: ready"), "{view}");
    assert!(
        view.lines()
            .any(|l| l.starts_with("sim") && l.split_whitespace().nth(1) == Some("1")),
        "{view}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn an_undeliverable_receipt_and_a_refused_destination_are_reported() {
    let cfg = SimConfig {
        error_prefixes: vec![("1917555".into(), 0x0B)],
        receipt: smsgate::sim::ReceiptMode {
            state: Some(ReceiptState::Undeliverable),
            error_code: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_dir, s, d) = setup(cfg).await;
    let c = reqwest::Client::new();
    let (_, refused) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "hi"}),
    )
    .await;
    let (_, undeliv) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+13125551234", "body": "hi"}),
    )
    .await;

    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        refused["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "ESME_RINVDSTADR");

    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        undeliv["id"].as_str().unwrap(),
        "undelivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "undelivered", "{m}");
    assert_eq!(m["error"]["code"], "UNDELIV");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn the_api_refuses_bad_requests_with_json_codes() {
    let dir = tempfile::tempdir().unwrap();
    // No carrier listening: the API must still validate and accept.
    let d = Daemon::start(&config_text(&dir.path().join("t.db"), free_port(), "")).await;
    let c = reqwest::Client::new();
    let ok = json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "hi"});

    let r = c
        .post(d.url("/v1/messages"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "unauthorized");

    let cases = [
        (
            json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "hi"}),
            "wrong-key-0000000000",
            401,
            "unauthorized",
        ),
        (
            json!({"from": DENTAL_LINE, "to": "+19175551234", "body": "hi"}),
            CLINIC_KEY,
            403,
            "forbidden_line",
        ),
        (
            json!({"from": "+13125551000", "to": "+19175551234", "body": "hi"}),
            CLINIC_KEY,
            422,
            "unknown_line",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "555-0123", "body": "hi"}),
            CLINIC_KEY,
            422,
            "invalid_number",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "+1911555012", "body": "hi"}),
            CLINIC_KEY,
            422,
            "invalid_number",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "+19175551234", "body": ""}),
            CLINIC_KEY,
            422,
            "empty_body",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "x".repeat(3000)}),
            CLINIC_KEY,
            422,
            "body_too_long",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "+19175551234"}),
            CLINIC_KEY,
            400,
            "invalid_request",
        ),
        (
            json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "hi", "extra": 1}),
            CLINIC_KEY,
            400,
            "invalid_request",
        ),
    ];
    for (body, key, want_status, want_code) in cases {
        let (status, b) = send(&c, &d, key, body.clone()).await;
        assert_eq!(status, want_status, "{body} -> {b}");
        assert_eq!(b["error"]["code"], want_code, "{body} -> {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    let r = c
        .post(d.url("/v1/messages"))
        .bearer_auth(CLINIC_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(d.url("/v1/messages"))
        .bearer_auth(CLINIC_KEY)
        .body(vec![b'a'; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "request_too_large");

    // A message is visible only to its own app.
    let (status, b) = send(&c, &d, CLINIC_KEY, ok.clone()).await;
    assert_eq!(status, 202);
    let id = b["id"].as_str().unwrap();
    let r = c
        .get(d.url(&format!("/v1/messages/{id}")))
        .bearer_auth(DENTAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let m = get_message(&c, &d, CLINIC_KEY, id).await;
    assert_eq!(m["status"], "queued");
    let r = c
        .get(d.url("/v1/messages/msg_nope"))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(d.url("/v1/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let metrics = d.metrics().await;
    assert!(
        metrics.contains(r#"smsgate_messages_rejected_total{reason="forbidden_line"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"smsgate_binds_up{carrier="sim"} 0"#));
    let ready = reqwest::get(format!("http://{}/readyz", d.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready without a bound carrier");
    d.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config_text(&dir.path().join("t.db"), free_port(), "")).await;
    let c = reqwest::Client::new();
    let body = json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "once"});
    let post = |body: serde_json::Value, key: &'static str| {
        c.post(d.url("/v1/messages"))
            .bearer_auth(CLINIC_KEY)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first: serde_json::Value = post(body.clone(), "k1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = post(body.clone(), "k1").await.unwrap();
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let other = post(
        json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "different"}),
        "k1",
    )
    .await
    .unwrap();
    assert_eq!(other.status(), 422);
    let fresh: serde_json::Value = post(body, "k2").await.unwrap().json().await.unwrap();
    assert_ne!(first["id"], fresh["id"]);
    d.stop().await;
}

#[tokio::test]
async fn a_full_store_answers_503_and_keeps_everything_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("t.db"), free_port(), "").replacen(
        "[store]\n",
        "[store]\nmax_size_mb = 1\n",
        1,
    );
    let d = Daemon::start(&text).await;
    let c = reqwest::Client::new();
    let mut accepted = Vec::new();
    let refused = loop {
        let (status, b) = send(&c, &d, CLINIC_KEY, json!({"from": CLINIC_LINE, "to": "+19175551234", "body": format!("{} {}", accepted.len(), "x".repeat(1400))})).await;
        match status {
            202 => accepted.push(b["id"].as_str().unwrap().to_owned()),
            _ => break (status, b),
        }
        assert!(accepted.len() < 5000, "the size limit never bit");
    };
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(refused.1["error"]["code"], "unavailable");
    assert!(!accepted.is_empty());
    for id in &accepted {
        let m = get_message(&c, &d, CLINIC_KEY, id).await;
        assert_eq!(m["status"], "queued", "{m}");
    }
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_messages_rejected_total{reason="unavailable"} 1"#),
        "{m}"
    );
    d.stop().await;
}

/// Bytes of the store's WAL file.
fn wal_len(db: &std::path::Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len())
}

#[tokio::test]
async fn checkpoints_truncate_the_wal_only_once_it_passes_its_limit() {
    use smsgate::{
        store::{Store, sqlite::SqliteStore},
        telemetry::Metrics,
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store = SqliteStore::open(&db, 64, std::sync::Arc::new(Metrics::new())).unwrap();
    // Another connection fills the WAL with ~2 MiB.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE junk (b BLOB)").unwrap();
    for _ in 0..64 {
        c.execute("INSERT INTO junk VALUES (zeroblob(32768))", [])
            .unwrap();
    }
    let filled = wal_len(&db);
    assert!(filled > 1 << 20, "{filled}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Under the limit: PASSIVE checkpoints leave the file as it is.
    let t = store
        .spawn_checkpoints_with(&db, Duration::from_millis(10), u64::MAX, stopped.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(wal_len(&db), filled);
    stop.send(true).unwrap();
    t.await.unwrap();
    // Past it: truncated.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let t = store
        .spawn_checkpoints_with(&db, Duration::from_millis(10), 1 << 20, stopped)
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while wal_len(&db) != 0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", wal_len(&db));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    t.await.unwrap();
    drop(c);
    store.close().await;
}

#[tokio::test]
async fn per_line_metrics_count_messages_and_segments_and_can_be_turned_off() {
    for on in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let s = Simulator::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            SimConfig::default(),
        )
        .await;
        let mut text = config_text(&dir.path().join("t.db"), s.local_addr().port(), "");
        if !on {
            text = format!("[admin]\nline_metrics = false\n{text}");
        }
        let d = Daemon::start(&text).await;
        assert!(d.wait_ready(Duration::from_secs(10)).await);
        let c = reqwest::Client::new();
        for body in ["short".to_owned(), "x".repeat(400)] {
            let (status, b) = send(
                &c,
                &d,
                CLINIC_KEY,
                json!({"from": CLINIC_LINE, "to": "+19175551234", "body": body}),
            )
            .await;
            assert_eq!(status, 202, "{b}");
        }
        let m = d.metrics().await;
        let series = [
            "smsgate_line_messages_total{line=\"+12125551000\"} 2",
            "smsgate_line_segments_total{line=\"+12125551000\"} 4",
        ];
        for want in series {
            assert_eq!(m.contains(want), on, "{want} (line_metrics {on}) in\n{m}");
        }
        assert!(!m.contains("smsgate_line_messages_total{line=\"+12125552000\"}"));
        d.stop().await;
        s.shutdown().await;
    }
}

#[test]
fn per_line_metrics_are_off_by_default_past_a_thousand_lines() {
    let base = config_text(std::path::Path::new("t.db"), 2775, "");
    let parse = |text: &str| {
        smsgate::config::parse(text)
            .expect("valid")
            .admin
            .line_metrics
    };
    assert!(parse(&base), "2 lines: on");
    let many: String = (0..1000)
        .map(|i| {
            format!(
                "\n[[lines]]\nnumber = \"+1646234{i:04}\"\napp = \"clinic\"\ncarrier = \"sim\"\n"
            )
        })
        .collect();
    let big = format!("{base}{many}");
    assert!(!parse(&big), "1,002 lines: off");
    assert!(parse(&format!("[admin]\nline_metrics = true\n{big}")));
}
