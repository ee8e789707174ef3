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
    let mut p = spawn_ready(&path, admin).await;
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
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

/// Starts the real binary on `path` and waits until its admin listener says ready.
async fn spawn_ready(path: &std::path::Path, admin: u16) -> Proc {
    let p = Proc(
        Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["run", "--config"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let c = reqwest::Client::new();
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
    p
}

/// Polls `cond` every 10 ms for up to `timeout`.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn changed_carrier_settings_rebind_one_bind_at_a_time_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let old = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    // The new carrier endpoint refuses the new password until its account is set up.
    let new = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            password: "notyet".into(),
            // Its own message ids: both simulators start in the same second.
            first_message_id: Some(1 << 40),
            ..SimConfig::default()
        },
    )
    .await;
    let (http, admin) = (free_port(), free_port());
    let listen =
        format!("[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let db = dir.path().join("t.db");
    let path = dir.path().join("smsgate.toml");
    std::fs::write(
        &path,
        format!(
            "{listen}{}",
            config_text(&db, old.local_addr().port(), "binds = 2")
        ),
    )
    .unwrap();
    let mut p = spawn_ready(&path, admin).await;
    assert!(old.wait_for_receivers(2, Duration::from_secs(10)).await);
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let mut ids = Vec::new();
    let send_batch = async |n: usize, ids: &mut Vec<String>| {
        for _ in 0..n {
            let r = c
                .post(format!("{base}/v1/messages"))
                .bearer_auth(CLINIC_KEY)
                .json(&json!({"from": CLINIC_LINE, "to": format!("+1917555{:04}", 2000 + ids.len()), "body": "reminder"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let b: serde_json::Value = r.json().await.unwrap();
            ids.push(b["id"].as_str().unwrap().to_owned());
        }
    };
    send_batch(10, &mut ids).await;
    assert!(old.wait_for_submits(10, Duration::from_secs(10)).await);

    // Move the carrier: new port, new password, SMPP 5.0, an address range.
    std::fs::write(
        &path,
        format!(
            "{listen}{}",
            config_text(
                &db,
                new.local_addr().port(),
                "binds = 2\ninterface_version = \"5.0\"\naddress_range = \"^1212\"",
            )
            .replace("password = \"secret\"", "password = \"secret2\"")
        ),
    )
    .unwrap();
    let r = c
        .post(format!("http://127.0.0.1:{admin}/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(!body.contains("restart"), "{body}");

    // One bind moves and is refused; the other stays on the old endpoint and keeps sending.
    assert!(
        eventually(Duration::from_secs(10), || new.stats().binds_refused >= 2).await,
        "the first bind never tried the new endpoint"
    );
    assert_eq!(
        old.stats().sessions_open,
        1,
        "the second bind waits its turn"
    );
    send_batch(10, &mut ids).await;
    assert!(old.wait_for_submits(20, Duration::from_secs(10)).await);
    assert_eq!(new.stats().binds_ok, 0);
    // (Receipts of the old endpoint come back on the bind still there.)
    assert!(
        eventually(Duration::from_secs(10), || old.stats().receipts_acked == 20).await,
        "{:?}",
        old.stats()
    );

    // The account is ready: both binds move, the old endpoint is left.
    new.set_config(|c| c.password = "secret2".into());
    assert!(
        eventually(Duration::from_secs(10), || new.stats().binds_ok == 2
            && old.stats().sessions_open == 0)
        .await,
        "new {:?} old {:?}",
        new.stats(),
        old.stats()
    );
    let binds = new.binds();
    let ok: Vec<_> = binds
        .iter()
        .filter(|b| b.interface_version == 0x50 && b.address_range == "^1212")
        .collect();
    assert_eq!(ok.len(), binds.len(), "{binds:?}");
    send_batch(10, &mut ids).await;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(15);
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
            if m["status"] == "delivered" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{m}\nold {:?}\nnew {:?}",
                old.stats(),
                new.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(old.stats().submits_ok + new.stats().submits_ok, 30);
    assert_eq!(old.stats().submits_ok, 20);
    let exit = p.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    old.shutdown().await;
    new.shutdown().await;
}

struct NoInbound;
impl smsgate::smpp::session::InboundHandler for NoInbound {
    fn deliver_sm(
        &self,
        _: std::sync::Arc<str>,
        _: rusmpp::pdus::DeliverSm,
    ) -> futures::future::BoxFuture<'static, u32> {
        Box::pin(async { 0 })
    }
}

#[tokio::test]
async fn only_connection_changes_rebind_and_other_carrier_settings_apply_in_place() {
    use std::sync::Arc;
    let port = free_port();
    let carrier = |extra: &str| {
        smsgate::config::parse(&config_text(std::path::Path::new("t.db"), port, extra))
            .expect("valid")
            .carriers[0]
            .clone()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (completions, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (handle, tasks) = smsgate::smpp::carrier::start(
        carrier(""),
        Arc::new(NoInbound),
        completions,
        Arc::new(smsgate::telemetry::Metrics::new()),
        stopped,
    );
    assert_eq!(handle.settings().max_rate, None);
    // Contract and status meanings: applied, no re-bind.
    assert!(!handle.reconfigure(carrier(
        "max_rate = 5.0\nstatus_overrides = { \"0x45\" = \"permanent\" }"
    )));
    assert_eq!(handle.settings().max_rate, Some(5.0));
    assert_eq!(handle.settings().status_overrides.len(), 1);
    // Anything the session is opened with: re-bind.
    for change in [
        "window = 8",
        "interface_version = \"5.0\"",
        "address_range = \"1212\"",
        "enquire_link = \"5s\"",
    ] {
        assert!(handle.reconfigure(carrier(change)), "{change}");
        assert!(
            !handle.reconfigure(carrier(change)),
            "{change} again: nothing new"
        );
    }
    // A CA file renewed in place (same path, new content) re-binds too.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/test-ca.pem"
    ))
    .unwrap();
    std::fs::write(&ca, &pem).unwrap();
    let tls = format!(
        "tls = true\ntls_ca_file = \"{}\"\ntls_server_name = \"localhost\"",
        ca.display()
    );
    assert!(handle.reconfigure(carrier(&tls)), "TLS on");
    assert!(!handle.reconfigure(carrier(&tls)), "same file");
    std::fs::write(&ca, format!("{pem}\n")).unwrap();
    assert!(handle.reconfigure(carrier(&tls)), "renewed file");
    stop.send(true).unwrap();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("slots stop")
            .unwrap();
    }
}
