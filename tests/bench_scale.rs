//! Scale: many configured lines and a large queue, for BENCHMARKS.md. Ignored by default; run
//! with `cargo test --release --test bench_scale -- --ignored --nocapture` (several minutes).
//! `SCALE_LINES` and `SCALE_MESSAGES` change the sizes (default 100,000 and 1,000,000).
//!
//! Each run: the real `smsgate` binary starts with the configured lines and a carrier that is
//! not there yet, the queue is filled over the HTTP API, the daemon is stopped and started
//! again (start-up time with the full queue), then smsc-sim comes up on the carrier's port and
//! the queue drains (throughput until every message was submitted and its receipt recorded).
//! The daemon's memory (VmRSS, VmHWM) is read from /proc along the way.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};

const KEY: &str = "scale-test-key-000001";
const AREAS: [u32; 10] = [212, 646, 917, 718, 347, 332, 929, 516, 631, 914];

/// Line `i`: 10 area codes × exchange 234 × 10,000 subscribers.
fn line_number(i: usize) -> String {
    format!("+1{}234{:04}", AREAS[(i / 10_000) % 10], i % 10_000)
}

fn config(db: &Path, http: u16, admin: u16, carrier: u16, lines: usize) -> String {
    let mut text = format!(
        r#"[http]
listen = "127.0.0.1:{http}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
path = "{db}"

[[apps]]
id = "scale"
api_keys = ["{KEY}"]

[[carriers]]
id = "sim"
host = "127.0.0.1"
port = {carrier}
system_id = "smsgate"
password = "secret"
binds = 2
window = 256
reconnect_min = "50ms"
reconnect_max = "200ms"
"#,
        db = db.display()
    );
    for i in 0..lines {
        text.push_str(&format!(
            "\n[[lines]]\nnumber = \"{}\"\napp = \"scale\"\ncarrier = \"sim\"\nrate = 100000.0\nburst = 1000\n",
            line_number(i)
        ));
    }
    text
}

fn spawn(path: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["run", "--config"])
            .arg(path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// (VmRSS, VmHWM) in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

async fn wait_http(admin: u16, timeout: Duration) -> Duration {
    let start = Instant::now();
    let c = reqwest::Client::new();
    loop {
        if let Ok(r) = c
            .get(format!("http://127.0.0.1:{admin}/healthz"))
            .send()
            .await
            && r.status() == 200
        {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "smsgate did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Run {
    lines: usize,
    messages: usize,
    fill_per_s: f64,
    restart: Duration,
    drain_per_s: f64,
    rss_full_mib: f64,
    hwm_mib: f64,
    db_mib: f64,
}

async fn run(lines: usize, messages: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin, carrier) = (free_port(), free_port(), free_port());
    let db = dir.path().join("scale.db");
    let path = dir.path().join("smsgate.toml");
    std::fs::write(&path, config(&db, http, admin, carrier, lines)).unwrap();
    let mut p = spawn(&path);
    let first_start = wait_http(admin, Duration::from_secs(300)).await;
    eprintln!(
        "{lines} lines: first start {first_start:?}, memory {:?}",
        memory(p.0.id())
    );

    // Fill: 64 keep-alive clients, messages spread over every line.
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..64 {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{http}/v1/messages");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    return;
                }
                let r = c
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&json!({
                        "from": line_number(i % lines),
                        "to": format!("+1917555{:04}", 2000 + i % 8000),
                        "body": format!("Appointment reminder {i}"),
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{:?}", r.text().await);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let fill_per_s = messages as f64 / start.elapsed().as_secs_f64();
    eprintln!("{lines} lines: filled {messages} at {fill_per_s:.0}/s");

    // Restart with the full queue.
    let exit = p.terminate(Duration::from_secs(120)).await;
    assert!(exit.success());
    let mut p = spawn(&path);
    let restart = wait_http(admin, Duration::from_secs(600)).await;
    let (rss_full_mib, _) = memory(p.0.id());
    eprintln!(
        "{lines} lines: restart with {messages} queued: {restart:?}, rss {rss_full_mib:.0} MiB"
    );

    // The carrier comes up: drain.
    let sim = Simulator::start(
        tokio::net::TcpListener::bind(("127.0.0.1", carrier))
            .await
            .unwrap(),
        SimConfig {
            submit_log_capacity: 0,
            ..SimConfig::default()
        },
    )
    .await;
    let start = Instant::now();
    let mut hwm_mib: f64 = 0.0;
    let mut last_print = Instant::now();
    loop {
        let s = sim.stats();
        hwm_mib = hwm_mib.max(memory(p.0.id()).1);
        if s.receipts_acked as usize >= messages {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:?}: submitted {} receipts acked {}",
                start.elapsed(),
                s.submits_ok,
                s.receipts_acked
            );
            last_print = Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "drain stalled: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_per_s = messages as f64 / start.elapsed().as_secs_f64();
    assert_eq!(sim.stats().submits_ok as usize, messages);
    let db_mib = std::fs::metadata(&db).map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64);
    let exit = p.terminate(Duration::from_secs(120)).await;
    assert!(exit.success());
    sim.shutdown().await;
    Run {
        lines,
        messages,
        fill_per_s,
        restart,
        drain_per_s,
        rss_full_mib,
        hwm_mib,
        db_mib,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode"]
async fn many_lines_and_a_large_queue() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (lines, messages) = (
        env("SCALE_LINES", 100_000),
        env("SCALE_MESSAGES", 1_000_000),
    );
    let mut runs = Vec::new();
    for l in [1, lines] {
        runs.push(run(l, messages).await);
    }
    println!(
        "| lines | queued | fill (HTTP, msgs/s) | restart to listening | drain (submit + receipt, msgs/s) | RSS after restart | peak RSS (VmHWM) | store size |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {:.0} | {:.2} s | {:.0} | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            r.lines,
            r.messages,
            r.fill_per_s,
            r.restart.as_secs_f64(),
            r.drain_per_s,
            r.rss_full_mib,
            r.hwm_mib,
            r.db_mib
        );
    }
    println!(
        "throughput with {lines} lines: {:.1}% of the 1-line case",
        100.0 * runs[1].drain_per_s / runs[0].drain_per_s
    );
}

#[tokio::test]
async fn the_scale_harness_works_on_a_small_run() {
    let r = run(50, 200).await;
    assert_eq!((r.lines, r.messages), (50, 200));
    assert!(r.drain_per_s > 0.0 && r.hwm_mib > 0.0);
}
