//! Call-to-Text / Abandoned Call triggers end to end.

mod common;

use std::time::Duration;

use common::*;
use smsgate::sim::{SimConfig, Simulator};
use tokio::net::TcpListener;

const CTT: &str = "ctt0123456789abcdefghijklmnopqrstuvwxyzAB";
const ABANDONED: &str = "abd0123456789abcdefghijklmnopqrstuvwxyzAB";
const CTT_TEXT: &str = "This is Midtown Clinic, we apologize for the hold, how can we help?";

fn triggers() -> String {
    format!(
        r#"
[[triggers]]
id = "ctt-en"
token = "{CTT}"
kind = "call_to_text"
line = "{CLINIC_LINE}"
language = "en"
template = "{CTT_TEXT}"

[[triggers]]
id = "abandoned-en"
token = "{ABANDONED}"
kind = "abandoned_call"
line = "{CLINIC_LINE}"
template = "This is Midtown Clinic, it looks like we got disconnected. How can we help you today?"
"#
    )
}

#[tokio::test]
async fn triggers_text_the_caller_once_in_any_number_format() {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let cfg = format!(
        "{}{}",
        config_text(&dir.path().join("t.db"), s.local_addr().port(), ""),
        triggers()
    );
    let d = Daemon::start(&cfg).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    let c = reqwest::Client::new();

    // 10-digit, as phone systems send it, in the query string.
    let r = c
        .post(d.url(&format!("/v1/triggers/{CTT}?CALLER_ID_NUMBER=9175551234")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let first: serde_json::Value = r.json().await.unwrap();
    // The caller hangs up right after: the Abandoned Call trigger must not text again.
    let r = c
        .post(d.url(&format!("/v1/triggers/{ABANDONED}")))
        .form(&[("CALLER_ID_NUMBER", "9175551234")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dup: serde_json::Value = r.json().await.unwrap();
    assert_eq!(dup["status"], "duplicate");
    assert_eq!(dup["id"], first["id"]);
    // 11-digit as a form field and E.164 as JSON.
    let r = c
        .post(d.url(&format!("/v1/triggers/{CTT}")))
        .form(&[("CALLER_ID_NUMBER", "13125551234")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(d.url(&format!("/v1/triggers/{ABANDONED}")))
        .json(&serde_json::json!({"CALLER_ID_NUMBER": "+14155551234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    assert!(s.wait_for_submits(3, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let subs = s.submits();
    assert_eq!(subs.len(), 3, "one text per caller");
    let to_first: Vec<_> = subs
        .iter()
        .filter(|x| x.destination_addr == "19175551234")
        .collect();
    assert_eq!(to_first.len(), 1);
    assert_eq!(to_first[0].text(), CTT_TEXT);
    assert_eq!(to_first[0].source_addr, CLINIC_LINE.trim_start_matches('+'));
    assert!(
        subs.iter()
            .any(|x| x.destination_addr == "14155551234" && x.text().contains("disconnected"))
    );

    // Errors: wrong token looks like any unknown path; bad or missing numbers are explained.
    let wrong = c
        .post(
            d.url("/v1/triggers/not-a-real-token-0000000000000000000?CALLER_ID_NUMBER=9175551234"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let wrong_body = wrong.text().await.unwrap();
    let nowhere = c
        .post(d.url("/v1/nowhere"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(wrong_body, nowhere);
    let r = c
        .post(d.url(&format!("/v1/triggers/{CTT}?CALLER_ID_NUMBER=555")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "invalid_number");
    let r = c
        .post(d.url(&format!("/v1/triggers/{CTT}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_triggers_total{kind="call_to_text",result="sent"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"smsgate_triggers_total{kind="abandoned_call",result="duplicate"} 1"#),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}
