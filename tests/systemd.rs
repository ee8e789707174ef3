//! systemd: sd_notify READY/WATCHDOG/STOPPING from the real binary, and the shipped unit
//! passes `systemd-analyze verify` and scores well on `systemd-analyze security`.

mod common;

use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use smsgate::sim::{SimConfig, Simulator};

// The simulator runs on the runtime's other worker while this test blocks on the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["run", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let recv = |sock: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut got = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while !got.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
            got.push(recv(&sock));
        }
        let ready = got
            .iter()
            .position(|m| m.contains("READY=1"))
            .expect("READY=1 sent");
        assert!(got[ready].contains("1 of 1 carriers bound"), "{got:?}");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = recv(&sock);
            if m.contains("STOPPING=1") {
                break;
            }
            assert!(Instant::now() < deadline, "no STOPPING=1: {got:?}");
        }
    }));
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn analyze_available() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("systemd-analyze is missing on CI");
    }
    ok
}

#[test]
fn the_shipped_unit_verifies_and_is_hardened() {
    if !analyze_available() {
        eprintln!("systemd-analyze not installed: skipping the unit checks");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/smsgate.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/smsgate", env!("CARGO_BIN_EXE_smsgate"));
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let path = dir.path().join("smsgate.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("smsgate.service:"),
        "verify complained: {text}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {text}"));
    assert!(score <= 2.0, "exposure {score} is above 2.0:\n{text}");
}
