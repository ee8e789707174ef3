//! Faults under load with the real binary: kill -9 five times in a row while apps submit.
//! Every message that got a 202 reaches the carrier at least once and ends `delivered`
//! (so no receipt acknowledged to the carrier was lost); duplicates stay within the window.

mod common;

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};

const WINDOW: usize = 64;
const KILLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_five_times_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig {
            receipt: smsgate::sim::ReceiptMode {
                delay: Duration::from_millis(50),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let (http, admin) = (free_port(), free_port());
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        config_text(
            &dir.path().join("t.db"),
            sim.local_addr().port(),
            &format!("window = {WINDOW}")
        )
    );
    let path = dir.path().join("smsgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let spawn = || {
        Proc(
            Command::new(env!("CARGO_BIN_EXE_smsgate"))
                .args(["run", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let base = format!("http://127.0.0.1:{http}");
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for w in 0..8 {
        let (acc, run, base) = (accepted.clone(), running.clone(), base.clone());
        load.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut n = 0;
            while run.load(Ordering::Relaxed) {
                let body = format!("w{w} n{n}");
                n += 1;
                let r = c
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(CLINIC_KEY)
                    .json(&json!({"from": CLINIC_LINE, "to": "+19175551234", "body": body}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        let b: serde_json::Value = r.json().await.unwrap_or_default();
                        if let Some(id) = b["id"].as_str() {
                            acc.lock().unwrap().push((id.to_owned(), body));
                        }
                    }
                    // Connection refused or cut while the daemon is down: not accepted.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    let mut requeued = 0usize;
    for round in 0..=KILLS {
        let mut p = spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "smsgate did not come back in round {round}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // What this start put back in the queue: the only source of duplicates here (the
        // carrier never drops a connection in this test).
        requeued += reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("smsgate_requeued_at_start_total "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .expect("smsgate_requeued_at_start_total in /metrics");
        tokio::time::sleep(Duration::from_millis(400)).await;
        if round == KILLS {
            running.store(false, Ordering::Relaxed);
            for l in load.drain(..) {
                l.await.unwrap();
            }
            // Last run: let everything drain, then check.
            let accepted = accepted.lock().unwrap().clone();
            assert!(
                accepted.len() > 100,
                "the load generator barely ran: {}",
                accepted.len()
            );
            let want: HashMap<&str, &str> = accepted
                .iter()
                .map(|(i, b)| (b.as_str(), i.as_str()))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let seen: HashMap<String, usize> = sim
                    .submits()
                    .into_iter()
                    .filter(|s| s.command_status == Some(0))
                    .fold(HashMap::new(), |mut m, s| {
                        *m.entry(s.text()).or_default() += 1;
                        m
                    });
                let missing = want.keys().filter(|b| !seen.contains_key(**b)).count();
                if missing == 0 {
                    let dups: usize = seen.values().map(|n| n - 1).sum();
                    assert!(
                        dups <= KILLS * WINDOW * 2,
                        "{dups} duplicates for {KILLS} kills"
                    );
                    assert!(
                        dups <= requeued,
                        "{dups} duplicates but only {requeued} messages were requeued at start"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{missing} accepted messages never reached the carrier"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let c = reqwest::Client::new();
            for (id, _) in &accepted {
                let deadline = Instant::now() + Duration::from_secs(30);
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
                    assert!(Instant::now() < deadline, "stuck: {m}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let exit = p.terminate(Duration::from_secs(30)).await;
            assert!(exit.success(), "{exit:?}");
        } else {
            p.0.kill().unwrap(); // SIGKILL mid-load
            p.0.wait().unwrap();
        }
    }
    sim.shutdown().await;
}
