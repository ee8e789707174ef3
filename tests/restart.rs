//! Crash safety with the real binary: what got a 202 survives `kill -9` and is sent exactly
//! once after restart; SIGTERM drains and exits cleanly.

mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};

fn spawn_daemon(config: &Path, dir: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smsgate"),
    )
}

async fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("smsgate did not start listening on {port}");
}

#[tokio::test]
async fn accepted_messages_survive_kill_9_and_are_sent_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (carrier, http, admin) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        config_text(&dir.path().join("data/smsgate.db"), carrier, "")
    );
    let cfg_path = dir.path().join("smsgate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    // First run: no carrier reachable. Accept 40 messages, then kill -9 (no drain).
    let mut first = spawn_daemon(&cfg_path, dir.path());
    wait_http(http).await;
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let mut accepted = Vec::new();
    for i in 0..40 {
        let r = c
            .post(format!("{base}/v1/messages"))
            .bearer_auth(CLINIC_KEY)
            .json(&json!({"from": CLINIC_LINE, "to": "+19175551234", "body": format!("msg {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let b: serde_json::Value = r.json().await.unwrap();
        accepted.push(b["id"].as_str().unwrap().to_owned());
    }
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();

    // The carrier comes up; the second run must send every accepted message once.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", carrier))
        .await
        .unwrap();
    let sim = Simulator::start(listener, SimConfig::default()).await;
    let mut second = spawn_daemon(&cfg_path, dir.path());
    assert!(
        sim.wait_for_submits(40, Duration::from_secs(30)).await,
        "only {} of 40 reached the carrier",
        sim.submits().len()
    );
    wait_http(http).await;
    // Let any duplicate show itself before counting.
    for id in &accepted {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m: serde_json::Value = c
                .get(format!("{base}/v1/messages/{id}"))
                .bearer_auth(CLINIC_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if m["status"] == "delivered" || Instant::now() > deadline {
                assert_eq!(m["status"], "delivered", "{m}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in sim.submits() {
        *seen.entry(s.text()).or_default() += 1;
    }
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|&n| n == 1), "duplicates: {seen:?}");

    // SIGTERM drains and exits 0.
    let exit = second.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    sim.shutdown().await;
}

#[test]
fn check_config_prints_every_error_with_its_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        config_text(
            Path::new("x.db"),
            2775,
            &format!(
                "interface_version = \"4.0\"\naddress_range = \"{}\"",
                "9".repeat(41)
            ),
        )
        .replace("app = \"dental\"", "app = \"nobody\"")
        .replace("password = \"secret\"", "password = \"far-too-long\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = path.display().to_string();
    assert!(err.contains(&format!("{shown}:18: password")), "{err}");
    assert!(
        err.contains(&format!(
            "{shown}:34: line refers to unknown app \"nobody\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:22: interface_version \"4.0\" must be \"3.4\" or \"5.0\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{shown}:23: address_range must be at most 40")),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, config_text(Path::new("x.db"), 2775, "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The shipped config must always validate.
    let shipped = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/smsgate.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        shipped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );
}
