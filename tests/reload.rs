//! Config reload (POST /admin/reload and SIGHUP) without dropping carrier binds.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};

const NEW_KEY: &str = "test-key-clinic-0002";
const TOKEN: &str = "reloadedtoken0123456789abcdefghijklmn";

#[tokio::test]
async fn a_reload_applies_keys_triggers_and_replies_without_rebinding_and_refuses_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let (http, admin) = (free_port(), free_port());
    let base_cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        config_text(&dir.path().join("t.db"), sim.local_addr().port(), "")
    );
    let path = dir.path().join("smsgate.toml");
    std::fs::write(&path, &base_cfg).unwrap();
    let mut p = Proc(
        Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let post = |key: &'static str| {
        c.post(format!("{base}/v1/messages"))
            .bearer_auth(key)
            .json(&json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "hi"}))
            .send()
    };
    assert_eq!(post(CLINIC_KEY).await.unwrap().status(), 202);

    // Rotate the clinic's key, add a trigger.
    let rotated = base_cfg.replace(CLINIC_KEY, NEW_KEY)
        + &format!(
            "\n[[triggers]]\nid = \"ctt\"\ntoken = \"{TOKEN}\"\nkind = \"call_to_text\"\nline = \"{CLINIC_LINE}\"\ntemplate = \"Thanks for calling\"\n"
        );
    std::fs::write(&path, &rotated).unwrap();
    let r = c
        .post(format!("http://127.0.0.1:{admin}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(
        post(CLINIC_KEY).await.unwrap().status(),
        401,
        "the old key is gone"
    );
    assert_eq!(post(NEW_KEY).await.unwrap().status(), 202);
    let r = c
        .post(format!(
            "{base}/v1/triggers/{TOKEN}?CALLER_ID_NUMBER=3125551234"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(sim.wait_for_submits(3, Duration::from_secs(10)).await);
    assert_eq!(sim.stats().binds_ok, 1, "the carrier bind was kept");

    // A broken config is refused with its line; the running one stays.
    std::fs::write(
        &path,
        rotated.replace("[[triggers]]", "[[triggers]]\nbogus = 1"),
    )
    .unwrap();
    let r = c
        .post(format!("http://127.0.0.1:{admin}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "invalid_config");
    assert!(
        b["error"]["details"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{b}"
    );
    assert_eq!(post(NEW_KEY).await.unwrap().status(), 202);

    // SIGHUP does the same.
    std::fs::write(&path, base_cfg.replace(CLINIC_KEY, "test-key-clinic-0003")).unwrap();
    Command::new("kill")
        .args(["-HUP", &p.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if post("test-key-clinic-0003").await.unwrap().status() == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.stats().binds_ok, 1);
    let exit = p.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    sim.shutdown().await;
}
