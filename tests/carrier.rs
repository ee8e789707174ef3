//! The carrier layer against smsc-sim: rate limits, throttling, dropped connections, receipts
//! before responses, id formats, windows.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use smsgate::sim::{IdFormat, SimConfig, Simulator};
use tokio::net::TcpListener;

async fn sim(cfg: SimConfig) -> Simulator {
    Simulator::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), cfg).await
}

async fn daemon(
    s: &Simulator,
    dir: &tempfile::TempDir,
    carrier_extra: &str,
    line_rate: Option<&str>,
) -> Daemon {
    let mut text = config_text(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        carrier_extra,
    );
    if let Some(rate) = line_rate {
        // The clinic line gets its own (slow) rate; the dental line stays fast.
        text = text.replacen("rate = 10000.0\nburst = 1000", rate, 1);
    }
    let d = Daemon::start(&text).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    d
}

async fn send_n(
    c: &reqwest::Client,
    d: &Daemon,
    key: &str,
    from: &str,
    n: usize,
    tag: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, b) = send(
            c,
            d,
            key,
            json!({"from": from, "to": "+19175551234", "body": format!("{tag} {i}")}),
        )
        .await;
        assert_eq!(status, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn wait_all(c: &reqwest::Client, d: &Daemon, key: &str, ids: &[String], want: &str) {
    for id in ids {
        let m = wait_status(c, d, key, id, want, Duration::from_secs(30)).await;
        assert_eq!(m["status"], want, "{m}");
    }
}

#[tokio::test]
async fn a_slow_line_is_paced_by_segments_while_another_line_is_not_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    let d = daemon(&s, &dir, "", Some("rate = 5.0\nburst = 1")).await;
    let c = reqwest::Client::new();
    let start = Instant::now();
    // A 3-part text then 4 single-part ones: 7 segments at 5/s, the last no earlier than 6/5 s
    // after the first (the 3-part text spends 3 tokens).
    let (_, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "x".repeat(400)}),
    )
    .await;
    assert_eq!(b["segments"], 3);
    let mut slow = vec![b["id"].as_str().unwrap().to_owned()];
    slow.extend(send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 4, "slow").await);
    let fast = send_n(&c, &d, DENTAL_KEY, DENTAL_LINE, 20, "fast").await;
    wait_all(&c, &d, DENTAL_KEY, &fast, "delivered").await;
    let fast_done = start.elapsed();
    wait_all(&c, &d, CLINIC_KEY, &slow, "delivered").await;
    let slow_done = start.elapsed();
    assert!(
        slow_done >= Duration::from_millis(1150),
        "7 segments at 5/s took only {slow_done:?}"
    );
    assert!(
        fast_done < slow_done,
        "the fast line finished after the slow one ({fast_done:?} vs {slow_done:?})"
    );
    let sent: Vec<_> = s
        .submits()
        .into_iter()
        .filter(|x| x.source_addr == "12125551000")
        .collect();
    assert_eq!(sent.len(), 7, "a 3-part text is 3 submits");
    let udh: Vec<_> = sent.iter().filter(|x| x.udhi()).collect();
    assert_eq!(udh.len(), 3);
    let refs: std::collections::HashSet<_> = udh.iter().map(|x| x.short_message[3]).collect();
    assert_eq!(refs.len(), 1, "the parts share one reference");
    let seqs: Vec<u8> = udh.iter().map(|x| x.short_message[5]).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_limiter_waits_total{carrier=\"sim\"}"),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn throttling_answers_delay_messages_but_every_one_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // The carrier answers every submit with ESME_RTHROTTLED for a while (a burst over its
    // contract), then recovers.
    let s = sim(SimConfig {
        throttle_fraction: 1.0,
        ..Default::default()
    })
    .await;
    let d = daemon(&s, &dir, "", None).await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 10, "t").await;
    assert!(s.wait_for_submits(10, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.set_config(|cfg| cfg.throttle_fraction = 0.0);
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    // Nothing failed: every message went through once the carrier recovered.
    assert!(s.stats().throttled >= 10);
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_throttled_total{carrier=\"sim\"}"),
        "{m}"
    );
    assert!(
        !m.contains("result=\"permanent\""),
        "throttling is never a failure: {m}"
    );
    assert!(
        m.contains("smsgate_submit_errors_total{carrier=\"sim\",status=\"ESME_RTHROTTLED\"}"),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_connection_dropped_with_submits_in_flight_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Slow answers keep many submits in flight when the carrier drops the connection.
    let s = sim(SimConfig {
        response_delay: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let d = daemon(&s, &dir, "", None).await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 50, "drop").await;
    assert!(s.wait_for_submits(20, Duration::from_secs(10)).await);
    s.drop_connections();
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    // Every message reached the carrier with an answer at least once.
    for i in 0..50 {
        let body = format!("drop {i}");
        assert!(
            s.submits()
                .iter()
                .any(|x| x.text() == body && x.command_status == Some(0)),
            "{body}"
        );
    }
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_resubmits_total{carrier=\"sim\"}"),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_window_of_eight_keeps_eight_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig {
        response_delay: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let d = daemon(&s, &dir, "window = 8", None).await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 20, "w").await;
    assert!(s.wait_for_submits(8, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_window_in_flight{carrier=\"sim\"} 8"),
        "{m}"
    );
    assert_eq!(
        s.submits().len(),
        8,
        "no ninth submit while eight await answers"
    );
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn receipts_before_responses_and_in_the_other_radix_still_correlate() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig {
        receipt_before_response: true,
        message_id_format: IdFormat::Hex,
        receipt_id_other_format: true,
        ..Default::default()
    })
    .await;
    let d = daemon(
        &s,
        &dir,
        "dlr_id_format = \"hex_response_decimal_receipt\"",
        None,
    )
    .await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 10, "r").await;
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_refused_password_is_retried_with_backoff_and_never_ready() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig {
        password: "other".into(),
        ..Default::default()
    })
    .await;
    let d = Daemon::start(&config_text(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        "",
    ))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.stats().binds_refused < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "binds were not retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = reqwest::get(format!("http://{}/readyz", d.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_bind_attempts_total{carrier=\"sim\",result=\"refused\"}"),
        "{m}"
    );
    // Backoff: far fewer attempts than a hot loop would make.
    assert!(s.stats().binds_refused < 40, "{}", s.stats().binds_refused);
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_line_fails_over_to_its_backup_carrier_when_its_own_stays_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    let text = config_text(
        &dir.path().join("t.db"),
        free_port(),
        "failover_after = \"200ms\"",
    )
    .replacen(
        "rate = 10000.0\nburst = 1000",
        "rate = 10000.0\nburst = 1000\nfallback_carriers = [\"backup\"]",
        1,
    ) + &format!(
        "\n[[carriers]]\nid = \"backup\"\nport = {}\nsystem_id = \"smsgate\"\npassword = \"secret\"\n",
        s.local_addr().port()
    );
    let d = Daemon::start(&text).await;
    assert!(
        d.wait_ready(Duration::from_secs(10)).await,
        "the backup binds"
    );
    let c = reqwest::Client::new();
    let clinic = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 3, "failover").await;
    wait_all(&c, &d, CLINIC_KEY, &clinic, "delivered").await;
    let m = get_message(&c, &d, CLINIC_KEY, &clinic[0]).await;
    assert_eq!(m["parts"][0]["carrier"], "backup", "{m}");
    // The dental line has no fallback: it waits for its own carrier.
    let dental = send_n(&c, &d, DENTAL_KEY, DENTAL_LINE, 1, "stay").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = get_message(&c, &d, DENTAL_KEY, &dental[0]).await;
    assert_eq!(m["status"], "queued", "{m}");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_carrier_that_drops_mid_window_then_refuses_binds_for_a_while_still_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig {
        response_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let d = daemon(&s, &dir, "", None).await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 40, "outage").await;
    assert!(s.wait_for_submits(10, Duration::from_secs(10)).await);
    s.set_config(|cfg| cfg.password = "changed".into());
    s.drop_connections();
    let refused_before = s.stats().binds_refused;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.stats().binds_refused < refused_before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "no rebind attempts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.set_config(|cfg| cfg.password = "secret".into());
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    let m = d.metrics().await;
    assert!(
        m.contains("smsgate_queue_depth 0"),
        "nothing stuck in sending: {m}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_carrier_status_override_turns_a_temporary_error_into_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    // ESME_RSUBMITFAIL (0x45) is retried by default; this carrier means it as final.
    let s = sim(SimConfig {
        error_prefixes: vec![("1917555".into(), 0x45)],
        ..Default::default()
    })
    .await;
    let d = daemon(
        &s,
        &dir,
        "status_overrides = { \"0x45\" = \"permanent\" }",
        None,
    )
    .await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 1, "o").await;
    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        &ids[0],
        "failed",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "ESME_RSUBMITFAIL");
    assert_eq!(s.submits().len(), 1, "not retried");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn transmitter_receiver_pairs_send_on_transmitters_and_take_receipts_and_mo_on_receivers() {
    use smsgate::sim::{BindKind, MoMessage};
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    let d = daemon(
        &s,
        &dir,
        "bind_type = \"transmitter_receiver\"\nbinds = 2\naddress_range = \"12125551000\"",
        None,
    )
    .await;
    assert!(s.wait_for_receivers(2, Duration::from_secs(10)).await);
    let kinds = |k: BindKind| s.binds().iter().filter(|b| b.kind == k).count();
    assert_eq!(kinds(BindKind::Transmitter), 2, "{:?}", s.binds());
    assert_eq!(kinds(BindKind::Receiver), 2, "{:?}", s.binds());
    assert_eq!(kinds(BindKind::Transceiver), 0);
    assert!(
        s.binds()
            .iter()
            .all(|b| b.interface_version == 0x34 && b.address_range == "12125551000")
    );
    let c = reqwest::Client::new();
    // The simulator refuses submits on a receiver and sends receipts only to receivers: every
    // text delivered means submits went out on transmitters and receipts came back on receivers.
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 20, "pair").await;
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    assert_eq!(s.stats().submits_error, 0);
    assert_eq!(s.stats().submits_ok, 20);
    s.inject_mo(MoMessage::text("+19175559876", CLINIC_LINE, "Running late"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.stats().mo_acked < 1 {
        assert!(Instant::now() < deadline, "MO never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = d.metrics().await;
    assert!(m.contains("smsgate_binds_up{carrier=\"sim\"} 4"), "{m}");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn smpp_5_0_is_announced_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    let d = daemon(&s, &dir, "interface_version = \"5.0\"", None).await;
    let c = reqwest::Client::new();
    let ids = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 3, "v5").await;
    wait_all(&c, &d, CLINIC_KEY, &ids, "delivered").await;
    let binds = s.binds();
    assert!(!binds.is_empty());
    assert!(
        binds.iter().all(|b| b.interface_version == 0x50
            && b.kind == smsgate::sim::BindKind::Transceiver
            && b.address_range.is_empty()),
        "{binds:?}"
    );
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn queue_depth_is_reported_by_line_class() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    // The clinic line (long_code) and the dental line (short_code) both send one text per
    // 100 s, so what is sent after the first stays queued while the test looks.
    let text = config_text(&dir.path().join("t.db"), s.local_addr().port(), "")
        .replacen("rate = 10000.0\nburst = 1000", "rate = 0.01\nburst = 1", 1)
        .replacen(
            "rate = 10000.0\nburst = 1000",
            "rate_class = \"short_code\"\nrate = 0.01\nburst = 1",
            1,
        );
    let d = Daemon::start(&text).await;
    assert!(d.wait_ready(Duration::from_secs(10)).await);
    let c = reqwest::Client::new();
    send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 5, "lc").await;
    send_n(&c, &d, DENTAL_KEY, DENTAL_LINE, 3, "sc").await;
    assert!(s.wait_for_submits(2, Duration::from_secs(10)).await);
    // The first of each line goes out; the rest wait for tokens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = [
        "smsgate_queue_depth_by_class{class=\"long_code\"} 4",
        "smsgate_queue_depth_by_class{class=\"short_code\"} 2",
        "smsgate_queue_depth_by_class{class=\"toll_free\"} 0",
        "smsgate_queue_depth 6",
    ];
    loop {
        let m = d.metrics().await;
        if want.iter().all(|w| m.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "{want:?} not all in\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_deep_backlog_on_a_slow_line_does_not_hold_up_texts_of_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim(SimConfig::default()).await;
    // window 8: the dispatcher holds at most 32 claimed messages, far fewer than the backlog.
    let d = daemon(&s, &dir, "window = 8", Some("rate = 1.0\nburst = 1")).await;
    let c = reqwest::Client::new();
    let slow = send_n(&c, &d, CLINIC_KEY, CLINIC_LINE, 200, "bulk").await;
    let start = Instant::now();
    let fast = send_n(&c, &d, DENTAL_KEY, DENTAL_LINE, 5, "urgent").await;
    wait_all(&c, &d, DENTAL_KEY, &fast, "delivered").await;
    let took = start.elapsed();
    let clinic_sent = s
        .submits()
        .iter()
        .filter(|x| x.source_addr == "12125551000")
        .count();
    assert!(
        clinic_sent < 50,
        "the slow line sent {clinic_sent} in {took:?}: it is not paced"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let m = get_message(&c, &d, CLINIC_KEY, &slow[199]).await;
    assert_eq!(m["status"], "queued", "{m}");
    d.stop().await;
    s.shutdown().await;
}
