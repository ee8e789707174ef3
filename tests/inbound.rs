//! Inbound texts from the simulator: keywords, opt-out enforcement, after hours, reassembly.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use smsgate::sim::{MoMessage, SimConfig, SimError, Simulator};
use tokio::net::TcpListener;

const PATIENT: &str = "+19175551234";

async fn setup(extra_config: &str) -> (tempfile::TempDir, Simulator, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let text = format!(
        "{}\n{extra_config}",
        config_text(&dir.path().join("t.db"), s.local_addr().port(), "")
    );
    let d = Daemon::start(&text).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    assert!(s.wait_for_receivers(1, Duration::from_secs(10)).await);
    (dir, s, d)
}

/// Waits until the simulator got `n` submits to `dest` and returns their texts.
async fn texts_to(s: &Simulator, dest: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<String> = s
            .submits()
            .into_iter()
            .filter(|x| x.destination_addr == dest.trim_start_matches('+'))
            .map(|x| x.text())
            .collect();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stop_confirms_blocks_sends_and_start_reverses_it() {
    let (_dir, s, d) = setup("").await;
    let c = reqwest::Client::new();
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, " Stop. "))
        .await
        .unwrap();
    let got = texts_to(&s, PATIENT, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("You have successfully been unsubscribed"),
        "{got:?}"
    );

    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "Reminder"}),
    )
    .await;
    assert_eq!(status, 409, "{b}");
    assert_eq!(b["error"]["code"], "opted_out");
    let r = c
        .get(d.url(&format!("/v1/lines/{CLINIC_LINE}/opt-outs/{PATIENT}")))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    let o: serde_json::Value = r.json().await.unwrap();
    assert_eq!(o["source"], "keyword");
    // The other app's line is not affected.
    let (status, _) = send(
        &c,
        &d,
        DENTAL_KEY,
        json!({"from": DENTAL_LINE, "to": PATIENT, "body": "Hi"}),
    )
    .await;
    assert_eq!(status, 202);

    // A non-keyword text from an opted-out number gets no reply ("please don't stop" is no keyword).
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "please don't stop"))
        .await
        .unwrap();
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "START"))
        .await
        .unwrap();
    let got = texts_to(&s, PATIENT, 3).await;
    assert!(
        got.iter()
            .any(|t| t.starts_with("You have successfully been re-subscribed")),
        "{got:?}"
    );
    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "Reminder"}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let got = texts_to(&s, PATIENT, 4).await;
    assert_eq!(
        got.len(),
        4,
        "confirmation, dental hi, start reply, reminder: {got:?}"
    );

    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "help"))
        .await
        .unwrap();
    let got = texts_to(&s, PATIENT, 5).await;
    assert!(
        got.iter().any(|t| t.contains("Reply STOP to unsubscribe")),
        "{got:?}"
    );
    // One opt-out and one opt-in by keyword; HELP and the plain text change nothing.
    let m = d.metrics().await;
    for want in [
        "smsgate_opt_out_changes_total{change=\"opt_out\",source=\"keyword\"} 1",
        "smsgate_opt_out_changes_total{change=\"opt_in\",source=\"keyword\"} 1",
        "smsgate_messages_accepted_mix_total{encoding=\"gsm7\",parts=\"1\"} 2",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn the_opt_out_api_and_import_change_the_list() {
    let (_dir, s, d) = setup("").await;
    let c = reqwest::Client::new();
    let url = d.url(&format!("/v1/lines/{CLINIC_LINE}/opt-outs/9175551234"));
    let r = c.put(&url).bearer_auth(CLINIC_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "x"}),
    )
    .await;
    assert_eq!(status, 409);
    let r = c.delete(&url).bearer_auth(CLINIC_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(&url).bearer_auth(CLINIC_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.put(&url).bearer_auth(DENTAL_KEY).send().await.unwrap();
    assert_eq!(r.status(), 403, "another app's line");

    let csv = "number,opted_out\n9175552001\n+19175552002,true\nnot-a-number\n{\"number\": \"9175552003\"}\n";
    let r = c
        .post(d.url(&format!("/v1/lines/{CLINIC_LINE}/opt-outs:import")))
        .bearer_auth(CLINIC_KEY)
        .body(csv)
        .send()
        .await
        .unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["changed"], 3, "{b}");
    assert_eq!(b["errors"][0]["line"], 4, "{b}");
    let r = c
        .get(d.url(&format!("/v1/lines/{CLINIC_LINE}/opt-outs?limit=2")))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["opt_outs"].as_array().unwrap().len(), 2);
    assert_eq!(b["next_after"], "+19175552002");
    let m = d.metrics().await;
    for want in [
        "smsgate_opt_out_changes_total{change=\"opt_out\",source=\"api\"} 1",
        "smsgate_opt_out_changes_total{change=\"opt_in\",source=\"api\"} 1",
        "smsgate_opt_out_changes_total{change=\"opt_out\",source=\"import\"} 3",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn after_hours_texts_get_one_reply_per_window_and_staff_is_told() {
    // No weekly hours: closed all the time.
    let hours = r#"
[lines.hours]
timezone = "America/New_York"
weekly = {}
after_hours_reply = "We are closed. / Estamos cerrados."
staff_notify = "+13125559876"
"#;
    // The hours table must follow the last [[lines]] entry (the dental line).
    let (_dir, s, d) = setup(hours).await;
    s.inject_mo(MoMessage::text(
        PATIENT,
        DENTAL_LINE,
        "Can I move my appointment?",
    ))
    .await
    .unwrap();
    s.inject_mo(MoMessage::text(PATIENT, DENTAL_LINE, "Hello?"))
        .await
        .unwrap();
    let replies = texts_to(&s, PATIENT, 1).await;
    let staff = texts_to(&s, "+13125559876", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replies_after = texts_to(&s, PATIENT, 1).await;
    assert_eq!(
        replies,
        vec!["We are closed. / Estamos cerrados.".to_owned()]
    );
    assert_eq!(
        replies_after.len(),
        1,
        "one reply per window: {replies_after:?}"
    );
    assert_eq!(staff.len(), 2, "{staff:?}");
    assert!(
        staff[0].contains("1234") && !staff[0].contains("appointment"),
        "{staff:?}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_text_to_a_number_that_is_not_a_line_is_refused() {
    let (_dir, s, d) = setup("").await;
    match s
        .inject_mo(MoMessage::text(PATIENT, "+13125550000", "hi"))
        .await
    {
        Err(SimError::Refused { command_status }) => assert_eq!(command_status, 0x0B),
        other => panic!("expected ESME_RINVDSTADR, got {other:?}"),
    }
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_mo_total{carrier="sim",result="unknown_line"} 1"#),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_long_text_in_parts_out_of_order_arrives_once_and_the_conversation_shows_both_directions()
{
    let (_dir, s, d) = setup("").await;
    let c = reqwest::Client::new();
    let (status, _) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "Your results are ready, call us"}),
    )
    .await;
    assert_eq!(status, 202);
    texts_to(&s, PATIENT, 1).await;

    let long = "Thanks, I'll call tomorrow morning. Could you also tell me whether I need to fast \
                before the blood test next week, and whether my insurance card on file is still valid? \
                And one more thing, \"quotes\", commas.";
    let mut parts = MoMessage::concatenated(PATIENT, CLINIC_LINE, long, 7);
    assert_eq!(parts.len(), 2, "test text should need two parts");
    parts.reverse();
    let dup = parts[0].clone();
    for p in parts {
        s.inject_mo(p).await.unwrap();
    }
    // A carrier redelivering a part (our ack was lost) must not make a second text.
    s.inject_mo(dup).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let msgs = loop {
        let b = clinic_conversation(&c, &d, PATIENT).await;
        let msgs = b["messages"].as_array().unwrap().clone();
        if msgs.len() >= 2 || tokio::time::Instant::now() > deadline {
            break msgs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0]["direction"], "outbound");
    assert_eq!(msgs[1]["direction"], "inbound");
    assert_eq!(msgs[1]["body"], long);
    assert_eq!(msgs[1]["status"], "unread");

    let b: serde_json::Value = c
        .get(d.url(&format!("/v1/lines/{CLINIC_LINE}/conversations")))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["conversations"][0]["number"], PATIENT);
    assert_eq!(b["conversations"][0]["unread"], 1);
    assert_eq!(
        b["conversations"][0]["last_message"]["direction"],
        "inbound"
    );

    let csv = c
        .get(d.url(&format!(
            "/v1/lines/{CLINIC_LINE}/conversations/{PATIENT}/messages?format=csv"
        )))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows[0], "time,direction,id,status,body");
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(
        rows[1].contains(",outbound,") && rows[1].ends_with("\"Your results are ready, call us\""),
        "{csv}"
    );
    assert!(
        rows[2].contains(",inbound,") && rows[2].contains("\"\"quotes\"\""),
        "{csv}"
    );

    let r: serde_json::Value = c
        .post(d.url(&format!(
            "/v1/lines/{CLINIC_LINE}/conversations/{PATIENT}/read"
        )))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["marked_read"], 1);
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_mo_total{carrier="sim",result="duplicate"} 1"#),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn retention_prunes_old_texts_but_never_the_opt_out_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let text = config_text(&dir.path().join("t.db"), s.local_addr().port(), "").replacen(
        "[store]\n",
        "[store]\nretention = \"300ms\"\n",
        1,
    );
    let d = Daemon::start(&text).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    let c = reqwest::Client::new();
    let (_, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": "old news"}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_owned();
    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        &id,
        "delivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "delivered");
    s.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "STOP"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get(d.url(&format!("/v1/messages/{id}")))
            .bearer_auth(CLINIC_KEY)
            .send()
            .await
            .unwrap();
        let conv: serde_json::Value = clinic_conversation(&c, &d, PATIENT).await;
        if r.status() == 404 && conv["messages"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never pruned: {conv}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .get(d.url(&format!("/v1/lines/{CLINIC_LINE}/opt-outs/{PATIENT}")))
        .bearer_auth(CLINIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the opt-out outlives retention");
    d.stop().await;
    s.shutdown().await;
}
