//! Privacy of logs: a full scenario at info level never prints a whole phone number or a
//! message body (patients' data).

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use smsgate::sim::{MoMessage, SimConfig, Simulator};

const PATIENT: &str = "+19175551234";
const BODY: &str = "Your lab results for the biopsy are ready";
const REPLY: &str = "Is it cancer, doctor";

#[tokio::test]
async fn info_logs_never_show_a_whole_number_or_a_body() {
    scenario(&[]).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_just_as_private() {
    let out = scenario(&["--log-format", "json"]).await;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// Runs a full scenario against the real binary; returns everything it logged.
async fn scenario(extra_args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let (http, admin) = (free_port(), free_port());
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        config_text(&dir.path().join("t.db"), sim.local_addr().port(), "")
    );
    let path = dir.path().join("smsgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.path().join("out.log");
    let child = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(extra_args)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("err.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    let base = format!("http://127.0.0.1:{http}");
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "daemon never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Outbound, a refused number, inbound text, STOP, and an unknown line.
    let r = c
        .post(format!("{base}/v1/messages"))
        .bearer_auth(CLINIC_KEY)
        .json(&json!({"from": CLINIC_LINE, "to": PATIENT, "body": BODY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(format!("{base}/v1/messages"))
        .bearer_auth(CLINIC_KEY)
        .json(&json!({"from": CLINIC_LINE, "to": "+1911555123", "body": BODY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(sim.wait_for_submits(1, Duration::from_secs(10)).await);
    sim.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, REPLY))
        .await
        .unwrap();
    sim.inject_mo(MoMessage::text(PATIENT, CLINIC_LINE, "STOP"))
        .await
        .unwrap();
    let _ = sim
        .inject_mo(MoMessage::text(PATIENT, "+13125550000", REPLY))
        .await;
    assert!(sim.wait_for_submits(2, Duration::from_secs(10)).await);
    // Drain so everything is flushed to the log.
    child.terminate(Duration::from_secs(30)).await;
    let out = std::fs::read_to_string(&log).unwrap();
    let err = std::fs::read_to_string(dir.path().join("err.log")).unwrap();
    assert!(err.trim().is_empty(), "nothing on stderr: {err}");
    assert!(out.contains("bound"), "the log has content: {out}");
    assert!(
        out.contains("…0000"),
        "the unknown line is logged, redacted: {out}"
    );
    for secret in [
        "9175551234",
        "3125550000",
        "1911555123",
        BODY,
        REPLY,
        "biopsy",
        "cancer",
    ] {
        assert!(
            !out.contains(secret),
            "{secret:?} leaked into the info log:\n{out}"
        );
    }
    sim.shutdown().await;
    out
}
