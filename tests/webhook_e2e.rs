//! Webhooks from the whole daemon: status changes and inbound texts reach the app's endpoint,
//! signed, in order, and survive a kill -9.

mod common;

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use common::*;
use serde_json::{Value, json};
use smsgate::sim::{MoMessage, SimConfig, Simulator};
use tokio::net::TcpListener;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PATIENT: &str = "+19175551234";

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn sink(listener: TcpListener) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let key = smsgate::webhook::parse_secret(SECRET).unwrap();
                let id = headers["webhook-id"].to_str().unwrap();
                let ts: i64 = headers["webhook-timestamp"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let sig = headers["webhook-signature"].to_str().unwrap();
                assert!(
                    smsgate::webhook::verify(&[key], id, ts, &body, sig),
                    "bad signature"
                );
                s.lock()
                    .unwrap()
                    .push((headers, serde_json::from_slice(&body).unwrap()));
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}

fn with_webhook(cfg: String, port: u16) -> String {
    cfg.replacen(
        &format!("api_keys = [\"{CLINIC_KEY}\"]"),
        &format!(
            "api_keys = [\"{CLINIC_KEY}\"]\nwebhook_url = \"http://127.0.0.1:{port}/hooks\"\nwebhook_secrets = [\"{SECRET}\"]"
        ),
        1,
    ) + "\n[webhooks]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n"
}

/// A simulator, the sink and a running daemon. `config` gets the test config for that
/// simulator and the sink's port, and returns the daemon's config. Also returns the sink's URL.
async fn with_sink(
    config: impl FnOnce(String, u16) -> String,
) -> (tempfile::TempDir, Seen, String, Simulator, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hook.local_addr().unwrap().port();
    let seen = sink(hook).await;
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let cfg = config(
        config_text(&dir.path().join("t.db"), s.local_addr().port(), ""),
        port,
    );
    let d = Daemon::start(&cfg).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    let url = format!("http://127.0.0.1:{port}/hooks");
    (dir, seen, url, s, d)
}

async fn events_until(seen: &Seen, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let evs: Vec<Value> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect();
        if pred(&evs) || Instant::now() > deadline {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn status_changes_inbound_texts_and_opt_outs_arrive_signed_and_in_order() {
    let (_dir, seen, _, s, d) = with_sink(with_webhook).await;
    let c = reqwest::Client::new();
    let (_, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "Appointment at 9", "client_ref": "a1"}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_owned();
    let evs = events_until(&seen, |e| {
        e.iter().any(|v| v["data"]["status"] == "delivered")
    })
    .await;
    let statuses: Vec<&str> = evs
        .iter()
        .filter(|v| v["type"] == "message.status" && v["data"]["id"] == id.as_str())
        .map(|v| v["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["sending", "sent", "delivered"], "{evs:?}");
    let delivered = evs
        .iter()
        .find(|v| v["data"]["status"] == "delivered")
        .unwrap();
    assert_eq!(delivered["data"]["client_ref"], "a1");
    assert!(delivered["id"].as_str().unwrap().starts_with("evt_"));
    assert!(delivered["data"]["parts"][0]["carrier_message_id"].is_string());

    s.inject_mo(MoMessage::text(
        PATIENT,
        CLINIC_LINE,
        "Can I come at 10 instead?",
    ))
    .await
    .unwrap();
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "STOP"))
        .await
        .unwrap();
    let evs = events_until(&seen, |e| e.iter().any(|v| v["type"] == "opt_out.changed")).await;
    let received: Vec<&Value> = evs
        .iter()
        .filter(|v| v["type"] == "message.received")
        .collect();
    assert_eq!(received.len(), 2, "{evs:?}");
    assert_eq!(received[0]["data"]["body"], "Can I come at 10 instead?");
    assert_eq!(received[0]["data"]["from"], PATIENT);
    assert_eq!(received[0]["data"]["line"], CLINIC_LINE);
    assert_eq!(received[0]["data"]["keyword"], Value::Null);
    assert_eq!(received[0]["data"]["after_hours"], false);
    assert_eq!(received[1]["data"]["keyword"], "stop");
    assert_eq!(received[1]["data"]["opted_out"], true);
    let opt = evs.iter().find(|v| v["type"] == "opt_out.changed").unwrap();
    assert_eq!(opt["data"]["source"], "keyword");
    assert_eq!(opt["data"]["number"], PATIENT);
    // Every event id is unique (at-least-once delivery with stable ids).
    let mut ids: Vec<&str> = evs.iter().map(|v| v["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), evs.len());
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn an_inbound_text_acknowledged_before_a_kill_9_still_reaches_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let (hook_port, http, admin) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        with_webhook(
            config_text(&dir.path().join("t.db"), s.local_addr().port(), ""),
            hook_port
        )
    );
    let path = dir.path().join("smsgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The app's endpoint is down: the text is stored and acknowledged, its webhook waits.
    let mut first = Proc(spawn());
    assert!(s.wait_for_receivers(1, Duration::from_secs(20)).await);
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "Running late, sorry"))
        .await
        .unwrap();
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // The endpoint comes up and the daemon restarts: the event is delivered.
    let seen = sink(TcpListener::bind(("127.0.0.1", hook_port)).await.unwrap()).await;
    let _second = Proc(spawn());
    let evs = events_until(&seen, |e| e.iter().any(|v| v["type"] == "message.received")).await;
    let got: Vec<&Value> = evs
        .iter()
        .filter(|v| v["type"] == "message.received")
        .collect();
    assert_eq!(got.len(), 1, "{evs:?}");
    assert_eq!(got[0]["data"]["body"], "Running late, sorry");
    s.shutdown().await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_through_the_api() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let gone = Arc::new(AtomicBool::new(true));
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (g, seen) = (gone.clone(), got.clone());
    let app = Router::new().route(
        "/hooks",
        post(move |body: Bytes| {
            let (g, seen) = (g.clone(), seen.clone());
            async move {
                if g.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::GONE;
                }
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hook.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(hook, app).await });
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let d = Daemon::start(&with_webhook(
        config_text(&dir.path().join("t.db"), s.local_addr().port(), ""),
        port,
    ))
    .await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "hello"))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let b: Value = c
            .get(d.url("/v1/webhooks/dead"))
            .bearer_auth(CLINIC_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !b["dead"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entry = &dead["dead"][0];
    assert_eq!(entry["type"], "message.received", "{dead}");
    assert!(
        entry["last_error"].as_str().unwrap().contains("410"),
        "{dead}"
    );
    // Another app sees none of it.
    let other: Value = c
        .get(d.url("/v1/webhooks/dead"))
        .bearer_auth(DENTAL_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(other["dead"].as_array().unwrap().is_empty());

    gone.store(false, Ordering::SeqCst);
    let id = entry["id"].as_str().unwrap();
    let r = c
        .post(d.url(&format!("/v1/webhooks/dead/{id}:replay")))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "replayed event never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.lock().unwrap()[0]["id"], id);
    let r = c
        .post(d.url("/v1/webhooks/dead/evt_01M80DPK6583DSRWWGMPA94G0T:replay"))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_message_status_url_gets_that_message_s_events_even_without_an_app_endpoint() {
    // The dental app signs events but has no endpoint of its own.
    let (_dir, seen, url, s, d) = with_sink(|cfg, _| {
        cfg.replacen(
            &format!("api_keys = [\"{DENTAL_KEY}\"]"),
            &format!("api_keys = [\"{DENTAL_KEY}\"]\nwebhook_secrets = [\"{SECRET}\"]"),
            1,
        )
    })
    .await;
    let c = reqwest::Client::new();
    let (status, b) = send(
        &c,
        &d,
        DENTAL_KEY,
        json!({"from": DENTAL_LINE, "to": PATIENT, "body": "x", "status_url": url}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let evs = events_until(&seen, |e| {
        e.iter().any(|v| v["data"]["status"] == "delivered")
    })
    .await;
    assert!(
        evs.iter()
            .all(|v| v["type"] == "message.status" && v["data"]["id"] == b["id"]),
        "{evs:?}"
    );
    assert!(
        evs.iter().any(|v| v["data"]["status"] == "delivered"),
        "{evs:?}"
    );
    // The clinic app has no webhook secrets: a status_url is refused up front.
    let (status, e) = send(&c, &d, CLINIC_KEY, json!({"from": CLINIC_LINE, "to": PATIENT, "body": "x", "status_url": "http://127.0.0.1:1/x"})).await;
    assert_eq!(status, 400, "{e}");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn status_events_should_send_only_the_states_an_app_asked_for() {
    let (_dir, seen, url, s, d) = with_sink(|cfg, port| {
        with_webhook(cfg, port).replacen(
            "webhook_secrets = [",
            "status_events = [\"delivered\", \"undelivered\", \"failed\", \"expired\"]\nwebhook_secrets = [",
            1,
        )
    })
    .await;
    let c = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut body = json!({"from": CLINIC_LINE, "to": PATIENT, "body": format!("Reminder {i}")});
        // The filter holds for a message's own status_url too.
        if i == 2 {
            body["status_url"] = json!(url);
        }
        let (status, b) = send(&c, &d, CLINIC_KEY, body).await;
        assert_eq!(status, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    // An inbound text after them: other event types are not filtered.
    let evs = events_until(&seen, |e| {
        e.iter()
            .filter(|v| v["data"]["status"] == "delivered")
            .count()
            == 3
    })
    .await;
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "Thanks"))
        .await
        .unwrap();
    let evs_after =
        events_until(&seen, |e| e.iter().any(|v| v["type"] == "message.received")).await;
    let statuses: Vec<(&str, &str)> = evs_after
        .iter()
        .filter(|v| v["type"] == "message.status")
        .map(|v| {
            (
                v["data"]["id"].as_str().unwrap(),
                v["data"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    // One event per message, its final state; the messages still went through every state.
    let expected: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "delivered")).collect();
    assert_eq!(statuses, expected, "{evs:?}");
    for id in &ids {
        let m = get_message(&c, &d, CLINIC_KEY, id).await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["parts"][0]["status"], "delivered", "{m}");
    }
    assert_eq!(
        evs_after
            .iter()
            .filter(|v| v["type"] == "message.received")
            .count(),
        1,
        "{evs_after:?}"
    );
    d.stop().await;
    s.shutdown().await;
}
