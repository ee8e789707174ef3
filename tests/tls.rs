//! smpps: the carrier connection over TLS, verified against a configured CA.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;
use smsgate::sim::{SimConfig, Simulator};
use tokio::net::{TcpListener, TcpStream};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");

/// A TLS terminator in front of the simulator, as a carrier's smpps endpoint would be.
async fn tls_front(backend: std::net::SocketAddr) -> u16 {
    let certs = CertificateDer::pem_file_iter(format!("{SUPPORT}/smsc.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{SUPPORT}/smsc.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn messages_go_out_over_tls_to_a_carrier_whose_certificate_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let port = tls_front(sim.local_addr()).await;
    let tls = format!(
        "tls = true\ntls_ca_file = \"{SUPPORT}/test-ca.pem\"\ntls_server_name = \"localhost\""
    );
    let d = Daemon::start(&config_text(&dir.path().join("t.db"), port, &tls)).await;
    assert!(
        d.wait_ready(Duration::from_secs(10)).await,
        "bound over TLS"
    );
    let c = reqwest::Client::new();
    let (status, b) = send(
        &c,
        &d,
        CLINIC_KEY,
        json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "over tls"}),
    )
    .await;
    assert_eq!(status, 202);
    let m = wait_status(
        &c,
        &d,
        CLINIC_KEY,
        b["id"].as_str().unwrap(),
        "delivered",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(sim.submits()[0].text(), "over tls");
    d.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_carrier_certificate_that_does_not_verify_never_binds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SimConfig::default(),
    )
    .await;
    let port = tls_front(sim.local_addr()).await;
    // System roots do not know our test CA.
    let d = Daemon::start(&config_text(
        &dir.path().join("t.db"),
        port,
        "tls = true\ntls_server_name = \"localhost\"",
    ))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.metrics().await;
        if m.contains(r#"smsgate_bind_attempts_total{carrier="sim",result="tls_error"}"#) {
            assert!(m.contains(r#"smsgate_binds_up{carrier="sim"} 0"#));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TLS failure counted: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.stats().binds_ok, 0);
    d.stop().await;
    sim.shutdown().await;
}

#[test]
fn a_missing_ca_file_is_a_config_error_with_its_line() {
    let text = config_text(
        std::path::Path::new("x.db"),
        2775,
        "tls = true\ntls_ca_file = \"/nonexistent/ca.pem\"",
    );
    let errs = smsgate::config::parse(&text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(14));
    assert!(errs[0].message.contains("/nonexistent/ca.pem"), "{errs:?}");
}

/// One HTTP/1.1 request over TLS, trusting only the test CA; returns the raw response.
async fn https_request(port: u16, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = smsgate::net::tls_client_config(
        Some(std::path::Path::new(&format!("{SUPPORT}/test-ca.pem"))),
        None,
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("handshake with the test CA");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_app_listener_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("t.db"), free_port(), "").replacen(
        "[store]",
        &format!(
            "[http]\ntls_cert = \"{SUPPORT}/smsc.pem\"\ntls_key = \"{SUPPORT}/smsc.key\"\n\n[store]"
        ),
        1,
    );
    let d = Daemon::start(&text).await;
    let body = json!({"from": CLINIC_LINE, "to": "+19175551234", "body": "over https"}).to_string();
    let resp = https_request(
        d.http.port(),
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {CLINIC_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.contains("\"status\":\"queued\""), "{resp}");
    // Plain HTTP on the same port gets nowhere.
    let plain = reqwest::Client::new()
        .get(d.url("/v1/openapi.json"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    d.stop().await;
}
