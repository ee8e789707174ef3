//! Per-carrier and per-line encoding options end to end: what an app submits over HTTP becomes
//! the submit_sm bytes the simulated carrier receives (concatenation method, national shift
//! tables, Latin-1, smart encoding, part limits), inbound deliver_sm bytes become the text the
//! conversations API shows (the carrier's default alphabet), and the line-type lookup gets its
//! token.
//!
//! Most tests run one daemon with two carriers on the same simulator: `opt` carries the option
//! under test and serves the clinic line, `plain` has no options and serves the dental line, so
//! the same text sent from both lines shows what the option changed.

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::Query, http::HeaderMap, http::StatusCode, routing::get};
use common::*;
use serde_json::{Value, json};
use smsgate::sim::{MoMessage, ReceivedSubmit, SimConfig, Simulator};
use tokio::net::TcpListener;

const PATIENT: &str = "+19175551234";
const WAIT: Duration = Duration::from_secs(10);

async fn sim() -> Simulator {
    Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await
}

/// Two carriers on the simulator at `port`: `opt` (with `opt_extra`) for the clinic line (with
/// `clinic_line_extra`), `plain` for the dental line.
fn two_carriers(db: &Path, port: u16, opt_extra: &str, clinic_line_extra: &str) -> String {
    let carrier = |id: &str, extra: &str| {
        format!(
            r#"
[[carriers]]
id = "{id}"
host = "127.0.0.1"
port = {port}
system_id = "smsgate"
password = "secret"
reconnect_min = "50ms"
reconnect_max = "500ms"
response_timeout = "2s"
{extra}
"#
        )
    };
    format!(
        r#"
[store]
path = "{db}"

[[apps]]
id = "clinic"
api_keys = ["{CLINIC_KEY}"]

[[apps]]
id = "dental"
api_keys = ["{DENTAL_KEY}"]
{opt}{plain}
[[lines]]
number = "{CLINIC_LINE}"
app = "clinic"
carrier = "opt"
rate = 10000.0
burst = 1000
{clinic_line_extra}

[[lines]]
number = "{DENTAL_LINE}"
app = "dental"
carrier = "plain"
rate = 10000.0
burst = 1000
"#,
        db = db.display(),
        opt = carrier("opt", opt_extra),
        plain = carrier("plain", ""),
    )
}

async fn start(opt_extra: &str, clinic_line_extra: &str) -> (tempfile::TempDir, Simulator, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let s = sim().await;
    let text = two_carriers(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        opt_extra,
        clinic_line_extra,
    );
    let d = Daemon::start(&text).await;
    assert!(d.wait_ready(WAIT).await);
    (dir, s, d)
}

/// Submits `body` from `from` (with the line's app key) to PATIENT; asserts `202`.
async fn accept(c: &reqwest::Client, d: &Daemon, from: &str, body: &str) -> Value {
    let key = if from == CLINIC_LINE {
        CLINIC_KEY
    } else {
        DENTAL_KEY
    };
    let (status, b) = send(
        c,
        d,
        key,
        json!({"from": from, "to": PATIENT, "body": body}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    b
}

async fn wait_delivered(c: &reqwest::Client, d: &Daemon, from: &str, accepted: &Value) -> Value {
    let key = if from == CLINIC_LINE {
        CLINIC_KEY
    } else {
        DENTAL_KEY
    };
    let id = accepted["id"].as_str().unwrap();
    let m = wait_status(c, d, key, id, "delivered", WAIT).await;
    assert_eq!(m["status"], "delivered", "{m}");
    m
}

/// Waits until the simulator logged at least `n` submits from `line`; returns them all.
async fn submits_from(s: &Simulator, line: &str, n: usize) -> Vec<ReceivedSubmit> {
    let digits = line.trim_start_matches('+');
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got: Vec<_> = s
            .submits()
            .into_iter()
            .filter(|x| x.source_addr == digits && x.command_status == Some(0))
            .collect();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            assert!(
                got.len() >= n,
                "{n} submits from {line} expected, got {}: {got:#?}",
                got.len()
            );
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GSM-7 text of `len` characters that reads differently at every offset (parts out of order
/// or cut at the wrong place would not put it back together).
fn gsm_text(len: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("w{i} "));
        i += 1;
    }
    s.truncate(len);
    s
}

/// The unpacked GSM-7 septets of text made of characters that sit at their ASCII position in
/// the default alphabet (letters, digits, space and `,.'!?"-`).
fn gsm_ascii(text: &str) -> Vec<u8> {
    for b in text.bytes() {
        assert!(
            b.is_ascii_alphanumeric() || b" ,.'!?\"-".contains(&b),
            "{:?} is not at its ASCII position in GSM-7",
            char::from(b)
        );
    }
    text.as_bytes().to_vec()
}

fn utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

// ---------------------------------------------------------------------------------------------
// Concatenation methods
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn udh16_parts_carry_the_16_bit_concatenation_ie() {
    let (_dir, s, d) = start("concat = \"udh16\"", "").await;
    let c = reqwest::Client::new();
    let first = gsm_text(400);
    let second = gsm_text(390).to_uppercase();
    let a = accept(&c, &d, CLINIC_LINE, &first).await;
    let b = accept(&c, &d, CLINIC_LINE, &second).await;
    // 152 septets a part next to a 7-octet UDH: still 3 parts.
    assert_eq!(a["segments"], 3, "{a}");
    assert_eq!(a["encoding"], "gsm7", "{a}");
    let plain = accept(&c, &d, DENTAL_LINE, &first).await;
    assert_eq!(plain["segments"], 3);
    for (line, m) in [(CLINIC_LINE, &a), (CLINIC_LINE, &b), (DENTAL_LINE, &plain)] {
        wait_delivered(&c, &d, line, m).await;
    }

    let sent = submits_from(&s, CLINIC_LINE, 6).await;
    assert_eq!(sent.len(), 6, "two 3-part texts: {sent:#?}");
    let mut references = Vec::new();
    for (body, parts) in [(&first, &sent[..3]), (&second, &sent[3..])] {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.short_message[6]);
        let reference = [parts[0].short_message[3], parts[0].short_message[4]];
        let mut text = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.udhi(), "esm_class {:#04x} lacks UDHI", p.esm_class);
            assert_eq!(p.data_coding, 0);
            assert!(p.sar.is_none() && p.message_payload.is_none(), "{p:?}");
            assert_eq!(
                p.short_message[..7],
                [6, 0x08, 4, reference[0], reference[1], 3, i as u8 + 1],
                "UDHL 6, IEI 0x08, length 4, 2-octet reference, total 3, seq"
            );
            text.extend_from_slice(&p.short_message[7..]);
        }
        let sizes: Vec<usize> = parts.iter().map(|p| p.short_message.len() - 7).collect();
        assert_eq!(sizes, vec![152, 152, body.len() - 304]);
        assert_eq!(text, gsm_ascii(body));
        references.push(u16::from_be_bytes(reference));
    }
    assert_ne!(
        references[0], references[1],
        "each message gets its own reference"
    );

    // The carrier without the option gets the default 8-bit IE.
    let plain_parts = submits_from(&s, DENTAL_LINE, 3).await;
    for p in &plain_parts {
        assert!(p.udhi());
        assert_eq!(p.short_message[..3], [5, 0x00, 3], "{p:?}");
    }
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn sar_parts_carry_tlvs_and_no_udh() {
    let (_dir, s, d) = start("concat = \"sar\"", "").await;
    let c = reqwest::Client::new();
    let first = gsm_text(400);
    let second = gsm_text(200).to_uppercase();
    let a = accept(&c, &d, CLINIC_LINE, &first).await;
    assert_eq!(a["segments"], 3, "{a}");
    let b = accept(&c, &d, CLINIC_LINE, &second).await;
    assert_eq!(b["segments"], 2, "{b}");
    wait_delivered(&c, &d, CLINIC_LINE, &a).await;
    wait_delivered(&c, &d, CLINIC_LINE, &b).await;

    let sent = submits_from(&s, CLINIC_LINE, 5).await;
    assert_eq!(sent.len(), 5, "{sent:#?}");
    let mut references = Vec::new();
    for (body, total, parts) in [(&first, 3u8, &sent[..3]), (&second, 2, &sent[3..])] {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.sar.map(|s| s.2));
        let reference = parts[0].sar.expect("SAR TLVs").0;
        let mut text = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(
                p.esm_class & 0x40,
                0,
                "no UDHI: the SMSC builds the UDH from the TLVs"
            );
            assert_eq!(p.data_coding, 0);
            assert!(p.message_payload.is_none());
            assert_eq!(p.sar, Some((reference, total, i as u8 + 1)), "{p:?}");
            // Sized as for an 8-bit UDH the SMSC adds: 153 septets.
            assert!(p.short_message.len() <= 153, "{p:?}");
            text.extend_from_slice(&p.short_message);
        }
        assert_eq!(parts[0].short_message.len(), 153);
        assert_eq!(text, gsm_ascii(body));
        references.push(reference);
    }
    assert_ne!(references[0], references[1]);
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn payload_sends_one_submit_with_message_payload() {
    let (_dir, s, d) = start("concat = \"payload\"", "").await;
    let c = reqwest::Client::new();
    let gsm = gsm_text(400);
    let cyrillic = "Привет, это ваша клиника. ".repeat(6);
    let short = "See you at 9";
    let a = accept(&c, &d, CLINIC_LINE, &gsm).await;
    assert_eq!(a["encoding"], "gsm7", "{a}");
    let b = accept(&c, &d, CLINIC_LINE, &cyrillic).await;
    assert_eq!(b["encoding"], "ucs2", "{b}");
    let one = accept(&c, &d, CLINIC_LINE, short).await;
    assert_eq!(one["segments"], 1, "{one}");

    let sent = submits_from(&s, CLINIC_LINE, 3).await;
    assert_eq!(sent.len(), 3, "one PDU per message: {sent:#?}");
    for (p, data_coding, bytes) in [
        (&sent[0], 0u8, gsm_ascii(&gsm)),
        (&sent[1], 8, utf16be(&cyrillic)),
        (&sent[2], 0, gsm_ascii(short)),
    ] {
        assert_eq!(p.data_coding, data_coding, "{p:?}");
        assert!(p.short_message.is_empty(), "sm_length 0: {p:?}");
        assert_eq!(p.esm_class & 0x40, 0, "no UDH");
        assert!(p.sar.is_none());
        assert_eq!(p.message_payload.as_deref(), Some(&bytes[..]));
    }
    // A one-segment text settles on its one receipt (long ones: see
    // `a_long_payload_message_settles_on_its_one_pdu`).
    wait_delivered(&c, &d, CLINIC_LINE, &one).await;
    let m = get_message(&c, &d, CLINIC_KEY, a["id"].as_str().unwrap()).await;
    assert_eq!(m["parts"].as_array().map(Vec::len), Some(1), "{m}");
    assert_eq!(submits_from(&s, CLINIC_LINE, 3).await.len(), 3);
    d.stop().await;
    s.shutdown().await;
}

/// With `concat = "payload"` the message's `segments` is the carrier's likely split (3 here:
/// what the API answers, the rate limiter charges and `max_parts` checks), but only one PDU
/// is sent and one part row is written: the store settles it on that one PDU (`pdus`).
#[tokio::test]
async fn a_long_payload_message_settles_on_its_one_pdu() {
    let (_dir, s, d) = start("concat = \"payload\"", "").await;
    let c = reqwest::Client::new();
    let a = accept(&c, &d, CLINIC_LINE, &gsm_text(400)).await;
    assert_eq!(a["segments"], 3, "{a}");
    let m = wait_delivered(&c, &d, CLINIC_LINE, &a).await;
    assert_eq!(m["parts"][0]["status"], "delivered", "{m}");
    assert_eq!(submits_from(&s, CLINIC_LINE, 1).await.len(), 1);
    d.stop().await;
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Alphabets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn turkish_shift_tables_keep_turkish_text_in_gsm7() {
    let (_dir, s, d) = start("national_languages = [\"turkish\"]", "").await;
    let c = reqwest::Client::new();
    // ı and ş only in the Turkish tables (ü is in the default alphabet): the single shift
    // table (IE 0x24) carries them as escapes.
    let single = "Randevunuz yarin saat 9'da, te\u{15F}ekk\u{FC}rler. Bu\u{131}".to_owned();
    // Many of them: the locking shift table (IE 0x25) fits in one part where escapes need two.
    let locking = vec!["\u{131}\u{15F}\u{131}k"; 25].join(" ");
    // Long, with one ş: an 8-bit concatenation IE and the single shift IE in every part.
    let long = format!("{} \u{15F}", gsm_text(298));

    let mut clinic = Vec::new();
    let mut dental = Vec::new();
    for (text, clinic_parts, dental_parts) in [(&single, 1, 1), (&locking, 1, 2), (&long, 3, 5)] {
        let a = accept(&c, &d, CLINIC_LINE, text).await;
        assert_eq!(a["encoding"], "gsm7", "{text}: {a}");
        assert_eq!(a["segments"], clinic_parts, "{text}: {a}");
        clinic.push(a);
        let b = accept(&c, &d, DENTAL_LINE, text).await;
        assert_eq!(b["encoding"], "ucs2", "without the option: {b}");
        assert_eq!(b["segments"], dental_parts, "{text}: {b}");
        dental.push(b);
    }
    for m in &clinic {
        wait_delivered(&c, &d, CLINIC_LINE, m).await;
    }
    for m in &dental {
        wait_delivered(&c, &d, DENTAL_LINE, m).await;
    }

    let sent = submits_from(&s, CLINIC_LINE, 5).await;
    assert_eq!(sent.len(), 5, "{sent:#?}");
    for p in &sent {
        assert_eq!(p.data_coding, 0, "{p:?}");
        assert!(p.udhi(), "{p:?}");
    }
    // Single shift: UDHL 3, IE 0x24 length 1 language 1 (Turkish); ı = ESC 0x69, ş = ESC 0x73,
    // ü = 0x7E.
    let mut want = vec![3, 0x24, 1, 1];
    for ch in single.chars() {
        match ch {
            '\u{131}' => want.extend([0x1B, 0x69]),
            '\u{15F}' => want.extend([0x1B, 0x73]),
            '\u{FC}' => want.push(0x7E),
            other => want.extend(gsm_ascii(&other.to_string())),
        }
    }
    assert_eq!(sent[0].short_message, want);
    // Locking shift: UDHL 3, IE 0x25 length 1 language 1; ı = 0x07, ş = 0x1D, no escapes.
    let mut want = vec![3, 0x25, 1, 1];
    for ch in locking.chars() {
        want.push(match ch {
            '\u{131}' => 0x07,
            '\u{15F}' => 0x1D,
            other => other as u8,
        });
    }
    assert_eq!(sent[1].short_message, want);
    // Three parts: concatenation IE then single shift IE (UDHL 8), 149 septets a part.
    let mut parts = sent[2..].to_vec();
    parts.sort_by_key(|p| p.short_message[5]);
    let reference = parts[0].short_message[3];
    let mut body = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(
            p.short_message[..9],
            [8, 0x00, 3, reference, 3, i as u8 + 1, 0x24, 1, 1],
            "{p:?}"
        );
        body.extend_from_slice(&p.short_message[9..]);
    }
    assert_eq!(parts[0].short_message.len() - 9, 149);
    let mut want = gsm_ascii(&long[..long.len() - 2]);
    want.extend([0x1B, 0x73]);
    assert_eq!(body, want);

    // The carrier without national tables got UCS-2 and no shift IEs.
    let plain = submits_from(&s, DENTAL_LINE, 8).await;
    assert_eq!(plain.len(), 8);
    for p in &plain {
        assert_eq!(p.data_coding, 8, "{p:?}");
    }
    assert!(!plain[0].udhi());
    assert_eq!(plain[0].short_message, utf16be(&single));
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn latin1_carrier_gets_data_coding_3() {
    let (_dir, s, d) = start("latin1 = true", "").await;
    let c = reqwest::Client::new();
    // á and ã are Latin-1 but not GSM-7 (é and à are GSM-7).
    let short = "Ol\u{E1}! At\u{E9} amanh\u{E3} \u{E0}s 9h.";
    let long = format!(
        "{short} {}",
        "Consulta confirmada, n\u{E3}o falte. ".repeat(8)
    );
    let long_chars = long.chars().count();
    assert!(long_chars > 268 && long_chars <= 402, "{long_chars}");

    let a = accept(&c, &d, CLINIC_LINE, short).await;
    assert_eq!(a["encoding"], "latin1", "{a}");
    let b = accept(&c, &d, CLINIC_LINE, &long).await;
    assert_eq!(b["encoding"], "latin1", "{b}");
    assert_eq!(b["segments"], 3, "134 octets a part: {b}");
    let x = accept(&c, &d, DENTAL_LINE, short).await;
    assert_eq!(x["encoding"], "ucs2", "without the option: {x}");
    for m in [&a, &b] {
        wait_delivered(&c, &d, CLINIC_LINE, m).await;
    }
    wait_delivered(&c, &d, DENTAL_LINE, &x).await;

    let latin1 = |t: &str| -> Vec<u8> { t.chars().map(|ch| u8::try_from(ch).unwrap()).collect() };
    let sent = submits_from(&s, CLINIC_LINE, 4).await;
    assert_eq!(sent.len(), 4);
    for p in &sent {
        assert_eq!(p.data_coding, 3, "{p:?}");
    }
    assert!(!sent[0].udhi());
    assert_eq!(sent[0].short_message, latin1(short));
    let mut parts = sent[1..].to_vec();
    parts.sort_by_key(|p| p.short_message[5]);
    let mut body = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert!(p.udhi());
        assert_eq!(
            p.short_message[..6],
            [5, 0, 3, parts[0].short_message[3], 3, i as u8 + 1]
        );
        body.extend_from_slice(&p.short_message[6..]);
    }
    assert_eq!(parts[0].short_message.len() - 6, 134);
    assert_eq!(body, latin1(&long));

    let plain = submits_from(&s, DENTAL_LINE, 1).await;
    assert_eq!(plain[0].data_coding, 8);
    assert_eq!(plain[0].short_message, utf16be(short));
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn smart_encoding_replaces_look_alikes_on_its_line_only() {
    let (_dir, s, d) = start("", "smart_encoding = true").await;
    let c = reqwest::Client::new();
    let text = "We\u{2019}re open \u{2014} see you \u{201C}soon\u{201D}\u{2026}";
    let replaced = "We're open - see you \"soon\"...";

    let est: Value = c
        .post(d.url("/v1/messages:estimate"))
        .bearer_auth(CLINIC_KEY)
        .json(&json!({"from": CLINIC_LINE, "body": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(est["encoding"], "gsm7", "{est}");
    assert_eq!(est["smart_encoded"], true, "{est}");

    let a = accept(&c, &d, CLINIC_LINE, text).await;
    assert_eq!(a["encoding"], "gsm7", "{a}");
    assert_eq!(a["smart_encoded"], true, "{a}");
    let b = accept(&c, &d, DENTAL_LINE, text).await;
    assert_eq!(b["encoding"], "ucs2", "{b}");
    assert_ne!(b["smart_encoded"], true, "{b}");
    wait_delivered(&c, &d, CLINIC_LINE, &a).await;
    wait_delivered(&c, &d, DENTAL_LINE, &b).await;

    let sent = submits_from(&s, CLINIC_LINE, 1).await;
    assert_eq!(sent[0].data_coding, 0);
    assert_eq!(sent[0].short_message, gsm_ascii(replaced));
    let plain = submits_from(&s, DENTAL_LINE, 1).await;
    assert_eq!(plain[0].data_coding, 8);
    assert_eq!(plain[0].short_message, utf16be(text));

    // The conversation shows what was actually sent.
    let conv: Value = clinic_conversation(&c, &d, PATIENT).await;
    assert_eq!(conv["messages"][0]["body"], replaced, "{conv}");
    d.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn max_parts_refuses_longer_texts_before_they_reach_the_carrier() {
    let (_dir, s, d) = start("max_parts = 2", "").await;
    let c = reqwest::Client::new();
    let three_parts = gsm_text(400);
    let (status, e) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": three_parts}),
    )
    .await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "body_too_long", "{e}");
    assert_eq!(e["error"]["details"]["segments"], 3, "{e}");
    assert_eq!(e["error"]["details"]["max_segments"], 2, "{e}");
    let r = c
        .post(d.url("/v1/messages:estimate"))
        .bearer_auth(CLINIC_KEY)
        .json(&json!({"from": CLINIC_LINE, "body": three_parts}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Two parts are fine, and the other carrier keeps the default of 10.
    let two_parts = gsm_text(300);
    let a = accept(&c, &d, CLINIC_LINE, &two_parts).await;
    assert_eq!(a["segments"], 2);
    let b = accept(&c, &d, DENTAL_LINE, &three_parts).await;
    assert_eq!(b["segments"], 3);
    wait_delivered(&c, &d, CLINIC_LINE, &a).await;
    wait_delivered(&c, &d, DENTAL_LINE, &b).await;
    let sent = submits_from(&s, CLINIC_LINE, 2).await;
    assert_eq!(sent.len(), 2, "only the 2-part text went out: {sent:#?}");
    assert!(sent.iter().all(|p| p.short_message[4] == 2), "{sent:#?}");
    let m = d.metrics().await;
    assert!(
        m.contains(r#"smsgate_messages_rejected_total{reason="body_too_long"} 1"#),
        "{m}"
    );
    d.stop().await;
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Inbound: what data_coding 0 means per carrier
// ---------------------------------------------------------------------------------------------

/// Injects one deliver_sm with data_coding 0 and `bytes` on a carrier with `alphabet` (none:
/// the default) and returns the text the conversation shows.
async fn mo_default_alphabet(alphabet: Option<&str>, bytes: Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let s = sim().await;
    let extra = alphabet.map_or(String::new(), |a| format!("mo_default_alphabet = \"{a}\""));
    let d = Daemon::start(&config_text(
        &dir.path().join("t.db"),
        s.local_addr().port(),
        &extra,
    ))
    .await;
    assert!(d.wait_ready(WAIT).await);
    assert!(s.wait_for_receivers(1, WAIT).await);
    s.inject_mo(MoMessage {
        source: PATIENT.into(),
        destination: CLINIC_LINE.into(),
        data_coding: 0,
        short_message: bytes,
        udhi: false,
        sar: None,
    })
    .await
    .unwrap();
    // Acknowledged only once stored: the conversation has it now.
    let c = reqwest::Client::new();
    let conv: Value = clinic_conversation(&c, &d, PATIENT).await;
    let msgs = conv["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{conv}");
    assert_eq!(msgs[0]["direction"], "inbound", "{conv}");
    let body = msgs[0]["body"].as_str().unwrap().to_owned();
    d.stop().await;
    s.shutdown().await;
    body
}

/// GSM-7 septets packed 8 into 7 octets (no UDH, so no fill bits).
fn pack(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &s in septets {
        acc |= u32::from(s & 0x7F) << bits;
        bits += 7;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
    out
}

#[tokio::test]
async fn mo_data_coding_0_is_latin1_on_a_latin1_carrier() {
    let bytes = b"Gr\xFC\xDFe, caf\xE9 \xA3 5".to_vec();
    assert_eq!(
        mo_default_alphabet(Some("latin1"), bytes).await,
        "Gr\u{FC}\u{DF}e, caf\u{E9} \u{A3} 5"
    );
}

#[tokio::test]
async fn mo_data_coding_0_is_ascii_on_an_ascii_carrier() {
    // In GSM-7 these would read "a§b¡c ¤5 ÄokÑ".
    let bytes = b"a_b@c $5 [ok]".to_vec();
    assert_eq!(
        mo_default_alphabet(Some("ascii"), bytes).await,
        "a_b@c $5 [ok]"
    );
}

#[tokio::test]
async fn mo_data_coding_0_is_packed_gsm7_on_a_packing_carrier() {
    let bytes = pack(&gsm_ascii("Running late, be there at 9"));
    assert_eq!(
        mo_default_alphabet(Some("gsm7_packed"), bytes).await,
        "Running late, be there at 9"
    );
}

#[tokio::test]
async fn mo_data_coding_0_is_unpacked_gsm7_by_default() {
    // @ £ $ Ä are GSM-7 0x00, 0x01, 0x02, 0x5B.
    let mut bytes = vec![0x00, 0x01, 0x02, 0x5B];
    bytes.extend(gsm_ascii(" ok"));
    assert_eq!(mo_default_alphabet(None, bytes).await, "@\u{A3}$\u{C4} ok");
}

// ---------------------------------------------------------------------------------------------
// Line-type lookup token
// ---------------------------------------------------------------------------------------------

const LOOKUP_TOKEN: &str = "lookup-token-0123456789";

/// A lookup provider that wants `Authorization: Bearer LOOKUP_TOKEN` (else 401) and says numbers
/// ending in 0000 are landlines. Records the Authorization header of every request.
async fn lookup_stub() -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/lookup",
        get(
            move |headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>| {
                let log = log.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    log.lock().unwrap().push(auth.clone());
                    if auth.as_deref() != Some(&format!("Bearer {LOOKUP_TOKEN}")) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            Json(json!({"error": "bad token"})),
                        );
                    }
                    let n = q.get("number").cloned().unwrap_or_default();
                    let kind = if n.ends_with("0000") {
                        "landline"
                    } else {
                        "mobile"
                    };
                    (StatusCode::OK, Json(json!({"line_type": kind})))
                }
            },
        ),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, seen)
}

/// The usual config (no carrier listening: sends just queue) with a lookup at `port`, the given
/// `lookup_token` line (or none) and the dental line failing closed.
fn lookup_config(db: &Path, port: u16, token_line: &str) -> String {
    format!(
        "{}\n[numbers]\nlookup_url = \"http://127.0.0.1:{port}/lookup?number={{number}}\"\n\
         lookup_timeout = \"2s\"\n{token_line}\n",
        config_text(db, free_port(), "")
    )
    .replace(
        &format!("number = \"{DENTAL_LINE}\""),
        &format!("number = \"{DENTAL_LINE}\"\nlookup_fail_closed = true"),
    )
}

async fn try_send(c: &reqwest::Client, d: &Daemon, from: &str, to: &str) -> (u16, Value) {
    let key = if from == CLINIC_LINE {
        CLINIC_KEY
    } else {
        DENTAL_KEY
    };
    send(c, d, key, json!({"from": from, "to": to, "body": "hi"})).await
}

#[tokio::test]
async fn lookup_token_is_sent_as_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = lookup_stub().await;
    let d = Daemon::start(&lookup_config(
        &dir.path().join("t.db"),
        port,
        &format!("lookup_token = \"{LOOKUP_TOKEN}\""),
    ))
    .await;
    let c = reqwest::Client::new();
    let (status, b) = try_send(&c, &d, DENTAL_LINE, PATIENT).await;
    assert_eq!(
        status, 202,
        "the lookup answered, even for a fail-closed line: {b}"
    );
    let (status, b) = try_send(&c, &d, CLINIC_LINE, "+13125550000").await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["error"]["code"], "not_textable", "{b}");
    assert_eq!(b["error"]["details"]["source"], "lookup", "{b}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for auth in &seen {
        assert_eq!(auth.as_deref(), Some(&*format!("Bearer {LOOKUP_TOKEN}")));
    }
    d.stop().await;
}

#[tokio::test]
async fn a_refused_lookup_token_fails_open_unless_the_line_fails_closed() {
    let (port, seen) = lookup_stub().await;
    for token_line in ["lookup_token = \"not-the-token\"", ""] {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(&lookup_config(&dir.path().join("t.db"), port, token_line)).await;
        let c = reqwest::Client::new();
        // The provider answers 401: nothing is known, the clinic line sends anyway (even to
        // the number the provider would call a landline) ...
        for to in [PATIENT, "+13125550000"] {
            let (status, b) = try_send(&c, &d, CLINIC_LINE, to).await;
            assert_eq!(status, 202, "{token_line:?} to {to}: {b}");
        }
        // ... and the fail-closed line refuses.
        let (status, b) = try_send(&c, &d, DENTAL_LINE, PATIENT).await;
        assert_eq!(status, 503, "{token_line:?}: {b}");
        assert_eq!(b["error"]["code"], "lookup_unavailable", "{b}");
        let m = d.metrics().await;
        assert!(
            m.contains(r#"smsgate_number_checks_total{result="error"} 3"#),
            "{token_line:?}: {m}"
        );
        d.stop().await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            vec![Some("Bearer not-the-token".to_owned()); 3],
            vec![None; 3]
        ]
        .concat(),
        "the configured token, then no Authorization header at all"
    );
}

/// The messages of a config's errors, one per line; panics if the config is valid.
fn config_errors(text: &str) -> String {
    smsgate::config::parse(text)
        .expect_err("refused")
        .iter()
        .map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn replies_that_do_not_fit_the_lines_carrier_are_config_errors() {
    let help = gsm_text(200);
    let text = config_text(Path::new("t.db"), 2775, "max_parts = 1").replacen(
        "app = \"clinic\"\ncarrier = \"sim\"",
        &format!("app = \"clinic\"\ncarrier = \"sim\"\nhelp_text = \"{help}\""),
        1,
    );
    let errors = config_errors(&text);
    assert!(
        errors.contains("line help_text cannot be sent on carrier \"sim\""),
        "{errors}"
    );
    let long_stop = format!(
        "[opt_out]\nstop_reply = \"{}\"\n{}",
        gsm_text(200),
        config_text(Path::new("t.db"), 2775, "max_parts = 1")
    );
    let errors = config_errors(&long_stop);
    assert!(
        errors.contains("opt_out stop reply cannot be sent"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_queued_text_its_carrier_can_no_longer_take_fails_instead_of_staying_sending() {
    // Accepted while the carrier allowed 3 parts and was down; after a restart the carrier
    // allows 1 part: the text cannot go out and must fail, not hang in `sending`.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let d = Daemon::start(&config_text(&db, free_port(), "max_parts = 3")).await;
    let c = reqwest::Client::new();
    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": PATIENT, "body": gsm_text(400)}),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    d.stop().await;
    let s = sim().await;
    let d = Daemon::start(&config_text(&db, s.local_addr().port(), "max_parts = 1")).await;
    let m = wait_status(&c, &d, CLINIC_KEY, &id, "failed", WAIT).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "cannot_segment", "{m}");
    assert_eq!(s.stats().submits_total, 0, "nothing reached the carrier");
    d.stop().await;
    s.shutdown().await;
}
