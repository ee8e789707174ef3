//! End-to-end tests of the simulator over loopback, driven by the test client.

use std::time::Duration;

use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::DataSm,
    tlvs::{MessageSubmissionRequestTlvValue, TlvValue},
    types::{AnyOctetString, COctetString},
    values::{MessagePayload, RegisteredDelivery},
};
use tokio::net::TcpListener;

use super::{
    BindKind, IdFormat, MoMessage, ReceiptState, SimConfig, SimError, Simulator,
    client::{self, SmppClient, submit_sm},
};

const WAIT: Duration = Duration::from_secs(5);

async fn start(cfg: SimConfig) -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(
        listener,
        SimConfig {
            first_message_id: Some(0x1a2b3c),
            ..cfg
        },
    )
    .await
}

async fn transceiver(sim: &Simulator) -> SmppClient {
    SmppClient::bound(sim.local_addr(), BindKind::Transceiver, "smsgate", "secret")
        .await
        .unwrap()
}

fn short_message_text(command: &Command) -> String {
    match command.pdu() {
        Some(Pdu::DeliverSm(d)) => String::from_utf8_lossy(d.short_message().as_ref()).into_owned(),
        other => panic!("expected deliver_sm, got {other:?}"),
    }
}

fn message_id(command: &Command) -> String {
    match command.pdu() {
        Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_string(),
        Some(Pdu::DataSmResp(r)) => r.message_id().as_str().to_string(),
        other => panic!("expected a submit response, got {other:?}"),
    }
}

fn tlv_values(command: &Command) -> Vec<TlvValue> {
    match command.pdu() {
        Some(Pdu::DeliverSm(d)) => d.tlvs().iter().filter_map(|t| t.value().cloned()).collect(),
        other => panic!("expected deliver_sm, got {other:?}"),
    }
}

#[tokio::test]
async fn bind_with_the_right_password_is_accepted_and_wrong_credentials_are_refused() {
    let sim = start(SimConfig::default()).await;
    let addr = sim.local_addr();

    let mut good = SmppClient::connect(addr).await.unwrap();
    assert_eq!(
        good.bind(BindKind::Transmitter, "smsgate", "secret")
            .await
            .unwrap(),
        CommandStatus::EsmeRok
    );
    // A second bind on a bound session is refused.
    assert_eq!(
        good.bind(BindKind::Transmitter, "smsgate", "secret")
            .await
            .unwrap(),
        CommandStatus::EsmeRalybnd
    );

    let mut bad_password = SmppClient::connect(addr).await.unwrap();
    assert_eq!(
        bad_password
            .bind(BindKind::Transceiver, "smsgate", "wrong")
            .await
            .unwrap(),
        CommandStatus::EsmeRinvpaswd
    );
    let mut bad_system_id = SmppClient::connect(addr).await.unwrap();
    assert_eq!(
        bad_system_id
            .bind(BindKind::Receiver, "other", "secret")
            .await
            .unwrap(),
        CommandStatus::EsmeRinvsysid
    );
    // An unbound session cannot submit.
    bad_password
        .submit(submit_sm("+12125551000", "+12125550123", "hi", false).unwrap())
        .await
        .unwrap();
    let resp = bad_password.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRinvbndsts);

    let stats = sim.stats();
    assert_eq!((stats.binds_ok, stats.binds_refused), (1, 3));
    drop(good);
    drop(bad_password);
    drop(bad_system_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn bind_resp_carries_the_simulator_system_id() {
    let sim = start(SimConfig::default()).await;
    let mut client = SmppClient::connect(sim.local_addr()).await.unwrap();
    let seq = client
        .send(
            rusmpp::pdus::BindTransceiver::builder()
                .system_id(COctetString::from_string("smsgate".into()).unwrap())
                .password(COctetString::from_string("secret".into()).unwrap())
                .build(),
        )
        .await
        .unwrap();
    let resp = client.expect(CommandId::BindTransceiverResp).await.unwrap();
    assert_eq!(resp.sequence_number(), seq);
    let Some(Pdu::BindTransceiverResp(body)) = resp.pdu() else {
        panic!("bind_resp without a body")
    };
    assert_eq!(body.system_id.as_str(), "smsgate");
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn submit_gets_a_response_and_a_receipt_in_the_standard_text_form_with_tlvs() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    let seq = client
        .submit(
            submit_sm(
                "+12125551000",
                "+12125550123",
                "Hello from smsgate, how are you?",
                true,
            )
            .unwrap(),
        )
        .await
        .unwrap();

    let resp = client.next().await.unwrap();
    assert_eq!(resp.id(), CommandId::SubmitSmResp);
    assert_eq!(resp.sequence_number(), seq);
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    assert_eq!(message_id(&resp), "1a2b3c");

    let receipt = client.next().await.unwrap();
    assert_eq!(receipt.id(), CommandId::DeliverSm);
    let Some(Pdu::DeliverSm(deliver)) = receipt.pdu() else {
        unreachable!()
    };
    assert_eq!(u8::from(deliver.esm_class), 0x04);
    // Source and destination are swapped: the receipt comes from the handset.
    assert_eq!(deliver.source_addr.as_str(), "12125550123");
    assert_eq!(deliver.destination_addr.as_str(), "12125551000");
    let text = short_message_text(&receipt);
    let re_ok = text.starts_with("id:1a2b3c sub:001 dlvrd:001 submit date:")
        && text.contains(" stat:DELIVRD err:000 text:Hello from smsgate, ")
        && text.ends_with("text:Hello from smsgate, ");
    assert!(re_ok, "receipt text: {text}");
    let date = text.split("submit date:").nth(1).unwrap();
    assert!(date[..10].chars().all(|c| c.is_ascii_digit()), "{text}");
    let tlvs = tlv_values(&receipt);
    assert!(tlvs.contains(&TlvValue::ReceiptedMessageId(
        COctetString::from_string("1a2b3c".into()).unwrap()
    )));
    assert!(tlvs.contains(&TlvValue::MessageState(
        rusmpp::values::MessageState::Delivered
    )));
    assert!(
        !tlvs
            .iter()
            .any(|t| matches!(t, TlvValue::NetworkErrorCode(_)))
    );

    client
        .answer_deliver(&receipt, CommandStatus::EsmeRok)
        .await
        .unwrap();
    client.unbind().await.unwrap();
    assert!(client.closed_within(WAIT).await);

    let stats = sim.stats();
    assert_eq!(stats.submits_ok, 1);
    assert_eq!(stats.receipts_sent, 1);
    assert_eq!(stats.receipts_acked, 1);
    let submits = sim.submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].destination_addr, "12125550123");
    assert_eq!(submits[0].registered_delivery, 1);
    assert_eq!(submits[0].message_id.as_deref(), Some("1a2b3c"));
    assert_eq!(submits[0].command_status, Some(0));
    assert_eq!(submits[0].text(), "Hello from smsgate, how are you?");
    assert_eq!(sim.submits_to("+12125550123"), 1);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn undeliverable_receipt_carries_err_and_network_error_code() {
    let mut cfg = SimConfig::default();
    cfg.receipt.state = Some(ReceiptState::Undeliverable);
    cfg.receipt.error_code = 34;
    let sim = start(cfg).await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
    let text = short_message_text(&receipt);
    assert!(
        text.contains("dlvrd:000") && text.contains("stat:UNDELIV err:034"),
        "{text}"
    );
    let tlvs = tlv_values(&receipt);
    assert!(tlvs.contains(&TlvValue::MessageState(
        rusmpp::values::MessageState::Undeliverable
    )));
    assert!(
        tlvs.iter()
            .any(|t| matches!(t, TlvValue::NetworkErrorCode(n) if n.error_code == 34))
    );
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn enquire_link_is_answered_with_the_same_sequence_number() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    let seq = client.send(Pdu::EnquireLink).await.unwrap();
    let resp = client.next().await.unwrap();
    assert_eq!(
        (resp.id(), resp.sequence_number()),
        (CommandId::EnquireLinkResp, seq)
    );
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_and_oversized_length_close_only_their_own_connection() {
    let sim = start(SimConfig::default()).await;
    let addr = sim.local_addr();
    let mut survivor = transceiver(&sim).await;

    let mut garbage = transceiver(&sim).await;
    garbage
        .send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(garbage.closed_within(WAIT).await);

    let mut oversized = transceiver(&sim).await;
    let mut header = Vec::new();
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&4u32.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&77u32.to_be_bytes());
    oversized.send_raw(&header).await.unwrap();
    // The generic_nack names the offending sequence number, then the connection closes.
    let nack = oversized.next().await.unwrap();
    assert_eq!(
        (nack.id(), nack.sequence_number()),
        (CommandId::GenericNack, 77)
    );
    assert!(oversized.closed_within(WAIT).await);

    let mut undersized = SmppClient::connect(addr).await.unwrap();
    undersized
        .send_raw(&[0, 0, 0, 8, 0, 0, 0, 0])
        .await
        .unwrap();
    assert!(undersized.closed_within(WAIT).await);

    // The bound session still submits and gets its receipt.
    survivor
        .submit(submit_sm("+12125551000", "+12125550123", "still here", true).unwrap())
        .await
        .unwrap();
    let resp = survivor.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    survivor.expect(CommandId::DeliverSm).await.unwrap();

    // And new connections are still accepted.
    let mut late = transceiver(&sim).await;
    late.send(Pdu::EnquireLink).await.unwrap();
    late.expect(CommandId::EnquireLinkResp).await.unwrap();
    assert!(sim.stats().malformed_pdus >= 3);
    drop(survivor);
    drop(garbage);
    drop(oversized);
    drop(undersized);
    drop(late);
    sim.shutdown().await;
}

#[tokio::test]
async fn undecodable_pdu_gets_generic_nack_and_the_session_carries_on() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    // A submit_sm whose body has no NUL-terminated strings: framed, but not decodable.
    let mut pdu = Vec::new();
    pdu.extend_from_slice(&24u32.to_be_bytes());
    pdu.extend_from_slice(&4u32.to_be_bytes());
    pdu.extend_from_slice(&0u32.to_be_bytes());
    pdu.extend_from_slice(&9u32.to_be_bytes());
    pdu.extend_from_slice(&[0xFF; 8]);
    // And an unknown command id.
    pdu.extend_from_slice(&16u32.to_be_bytes());
    pdu.extend_from_slice(&0x0000_0777u32.to_be_bytes());
    pdu.extend_from_slice(&0u32.to_be_bytes());
    pdu.extend_from_slice(&10u32.to_be_bytes());
    client.send_raw(&pdu).await.unwrap();
    let first = client.next().await.unwrap();
    assert_eq!(
        (first.id(), first.sequence_number()),
        (CommandId::GenericNack, 9)
    );
    let second = client.next().await.unwrap();
    assert_eq!(
        (second.id(), second.status()),
        (CommandId::GenericNack, CommandStatus::EsmeRinvcmdid)
    );
    client.send(Pdu::EnquireLink).await.unwrap();
    client.expect(CommandId::EnquireLinkResp).await.unwrap();
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttle_fraction_one_answers_every_submit_throttled_until_turned_off() {
    let sim = start(SimConfig {
        throttle_fraction: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    for _ in 0..20 {
        client
            .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
            .await
            .unwrap();
    }
    for _ in 0..20 {
        let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
        assert_eq!(resp.status(), CommandStatus::EsmeRthrottled);
    }
    assert_eq!(sim.stats().throttled, 20);

    sim.set_config(|cfg| cfg.throttle_fraction = 0.0);
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", false).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    let stats = sim.stats();
    assert_eq!(
        (stats.submits_ok, stats.submits_error, stats.receipts_sent),
        (1, 20, 0)
    );
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn msgqful_fraction_one_answers_queue_full() {
    let sim = start(SimConfig {
        msgqful_fraction: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", false).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRmsgqful);
    assert_eq!(sim.stats().queue_full, 1);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn error_prefix_answers_its_status_and_receipt_error_prefix_gives_undeliv() {
    let sim = start(SimConfig {
        error_prefixes: vec![("+1555000".into(), 0x0B)],
        receipt_error_prefixes: vec![("1555111".into(), 0x0D)],
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+15550001234", "hi", true).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRinvdstadr);
    assert_eq!(message_id(&resp), "");

    client
        .submit(submit_sm("+12125551000", "+15551114321", "to a landline", true).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
    let text = short_message_text(&receipt);
    assert!(text.contains("stat:UNDELIV err:013"), "{text}");

    let submits = sim.submits();
    assert_eq!(submits[0].command_status, Some(0x0B));
    assert_eq!(submits[0].message_id, None);
    assert_eq!(sim.stats().receipts_sent, 1);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn receipt_before_response_sends_the_receipt_first() {
    let sim = start(SimConfig {
        receipt_before_response: true,
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let first = client.next().await.unwrap();
    let second = client.next().await.unwrap();
    assert_eq!(first.id(), CommandId::DeliverSm);
    assert_eq!(second.id(), CommandId::SubmitSmResp);
    assert!(short_message_text(&first).starts_with(&format!("id:{} ", message_id(&second))));
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn delayed_response_is_overtaken_by_an_enquire_link_and_its_receipt_still_follows_it() {
    let sim = start(SimConfig {
        response_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125550100", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    client.send(Pdu::EnquireLink).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().id(),
        CommandId::EnquireLinkResp
    );
    assert_eq!(client.next().await.unwrap().id(), CommandId::SubmitSmResp);
    // The receipt (delay 0) never overtakes its own response.
    assert_eq!(client.next().await.unwrap().id(), CommandId::DeliverSm);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn delayed_receipt_comes_after_later_traffic() {
    let mut cfg = SimConfig::default();
    cfg.receipt.delay = Duration::from_millis(100);
    let sim = start(cfg).await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125550100", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    assert_eq!(client.next().await.unwrap().id(), CommandId::SubmitSmResp);
    client.send(Pdu::EnquireLink).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().id(),
        CommandId::EnquireLinkResp
    );
    assert_eq!(client.next().await.unwrap().id(), CommandId::DeliverSm);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn jittered_responses_all_arrive_once() {
    let sim = start(SimConfig {
        response_delay: Duration::from_millis(1),
        response_delay_max: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let text = format!("m{i}");
        sent.push(
            client
                .submit(submit_sm("+12125550100", "+12125550123", &text, false).unwrap())
                .await
                .unwrap(),
        );
    }
    let mut answered = Vec::new();
    for _ in 0..50 {
        answered.push(
            client
                .expect(CommandId::SubmitSmResp)
                .await
                .unwrap()
                .sequence_number(),
        );
    }
    answered.sort_unstable();
    assert_eq!(answered, sent);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_every_closes_the_connection_without_answering_the_nth_submit() {
    let sim = start(SimConfig {
        drop_every: Some(3),
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    for i in 0..5 {
        client
            .submit(submit_sm("+12125551000", "+12125550123", &format!("m{i}"), false).unwrap())
            .await
            .unwrap();
    }
    let mut answered = Vec::new();
    while let Ok(command) = client.next().await {
        answered.push(command.sequence_number());
    }
    // Bind was sequence 1; submits are 2..=6. The third submit (seq 4) killed the session.
    assert_eq!(answered, vec![2, 3]);
    assert!(sim.wait_for_submits(3, WAIT).await);
    let submits = sim.submits();
    assert_eq!(submits.len(), 3);
    assert_eq!(submits[2].command_status, None);
    assert_eq!(sim.stats().connections_dropped, 1);

    // Reconnecting works and the count carries on: submits 4 and 5 answered, 6 dropped.
    let mut again = transceiver(&sim).await;
    for _ in 0..3 {
        again
            .submit(submit_sm("+12125551000", "+12125550123", "again", false).unwrap())
            .await
            .unwrap();
    }
    let mut answered = 0;
    while again.next().await.is_ok() {
        answered += 1;
    }
    assert_eq!(answered, 2);
    drop(client);
    drop(again);
    sim.shutdown().await;
}

#[tokio::test]
async fn inject_mo_round_trips_with_deliver_sm_resp() {
    let sim = start(SimConfig::default()).await;
    assert!(matches!(
        sim.inject_mo(MoMessage::text("+12125550123", "12125551000", "STOP"))
            .await,
        Err(SimError::NoReceiver)
    ));
    let mut client = SmppClient::bound(sim.local_addr(), BindKind::Receiver, "smsgate", "secret")
        .await
        .unwrap();
    assert!(sim.wait_for_receivers(1, WAIT).await);

    let injected = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.inject_mo(MoMessage::text("+12125550123", "12125551000", "STOP"))
                .await
        })
    };
    let deliver = client.expect(CommandId::DeliverSm).await.unwrap();
    let Some(Pdu::DeliverSm(body)) = deliver.pdu() else {
        unreachable!()
    };
    assert_eq!(u8::from(body.esm_class), 0);
    assert_eq!(body.source_addr.as_str(), "12125550123");
    assert_eq!(u8::from(body.source_addr_ton), 1);
    assert_eq!(body.short_message().as_ref(), b"STOP");
    client
        .answer_deliver(&deliver, CommandStatus::EsmeRok)
        .await
        .unwrap();
    injected.await.unwrap().unwrap();

    // A refusal comes back as an error carrying the status.
    let injected = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.inject_mo(MoMessage::text("+1", "2", "again")).await })
    };
    let deliver = client.expect(CommandId::DeliverSm).await.unwrap();
    client
        .answer_deliver(&deliver, CommandStatus::EsmeRsyserr)
        .await
        .unwrap();
    assert!(matches!(
        injected.await.unwrap(),
        Err(SimError::Refused { command_status: 8 })
    ));
    let stats = sim.stats();
    assert_eq!((stats.mo_sent, stats.mo_acked), (2, 1));
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn concatenated_mo_parts_arrive_in_order_with_udh() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    let body = "This reply is long enough to need two parts. ".repeat(5);
    let parts = MoMessage::concatenated("+12125550123", "12125551000", &body, 42);
    assert_eq!(parts.len(), 2);
    let sender = {
        let sim = sim.clone();
        tokio::spawn(async move {
            for part in parts {
                sim.inject_mo(part).await?;
            }
            Ok::<_, SimError>(())
        })
    };
    let mut text = String::new();
    for seq in 1..=2u8 {
        let deliver = client.expect(CommandId::DeliverSm).await.unwrap();
        let Some(Pdu::DeliverSm(d)) = deliver.pdu() else {
            unreachable!()
        };
        assert_eq!(u8::from(d.esm_class), 0x40);
        let sm = d.short_message().as_ref();
        assert_eq!(&sm[..6], &[5, 0, 3, 42, 2, seq]);
        text.push_str(&super::text::decode_short_message(0, true, sm));
        client
            .answer_deliver(&deliver, CommandStatus::EsmeRok)
            .await
            .unwrap();
    }
    sender.await.unwrap().unwrap();
    assert_eq!(text, body);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn ids_are_decimal_when_configured_and_receipts_can_use_the_other_format() {
    let sim = start(SimConfig {
        message_id_format: IdFormat::Decimal,
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(message_id(&resp), "1715004");
    let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
    assert!(short_message_text(&receipt).starts_with("id:1715004 "));
    client
        .answer_deliver(&receipt, CommandStatus::EsmeRok)
        .await
        .unwrap();

    // The carrier quirk: hex in the response, decimal in the receipt.
    sim.set_config(|cfg| {
        cfg.message_id_format = IdFormat::Hex;
        cfg.receipt_id_other_format = true;
    });
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let resp = client.expect(CommandId::SubmitSmResp).await.unwrap();
    assert_eq!(message_id(&resp), "1a2b3d");
    let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
    assert!(short_message_text(&receipt).starts_with("id:1715005 "));
    assert!(tlv_values(&receipt).contains(&TlvValue::ReceiptedMessageId(
        COctetString::from_string("1715005".into()).unwrap()
    )));
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn receipt_for_a_transmitter_waits_for_a_receiver_to_bind() {
    let sim = start(SimConfig::default()).await;
    let mut tx = SmppClient::bound(sim.local_addr(), BindKind::Transmitter, "smsgate", "secret")
        .await
        .unwrap();
    tx.submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    tx.expect(CommandId::SubmitSmResp).await.unwrap();
    assert!(sim.wait_for_submits(1, WAIT).await);
    assert_eq!(sim.stats().receipts_sent, 0);

    let mut rx = SmppClient::bound(sim.local_addr(), BindKind::Receiver, "smsgate", "secret")
        .await
        .unwrap();
    let receipt = rx.expect(CommandId::DeliverSm).await.unwrap();
    assert!(short_message_text(&receipt).contains("stat:DELIVRD"));
    drop(tx);
    drop(rx);
    sim.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_receipt_is_redelivered_after_the_connection_drops() {
    let sim = start(SimConfig::default()).await;
    let mut first = transceiver(&sim).await;
    first
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let receipt = first.expect(CommandId::DeliverSm).await.unwrap();
    sim.drop_connections();
    assert!(first.closed_within(WAIT).await);

    let mut second = transceiver(&sim).await;
    let again = second.expect(CommandId::DeliverSm).await.unwrap();
    assert_eq!(short_message_text(&again), short_message_text(&receipt));
    second
        .answer_deliver(&again, CommandStatus::EsmeRok)
        .await
        .unwrap();
    assert_eq!(sim.stats().receipts_sent, 2);
    drop(first);
    drop(second);
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_receipt_is_retried() {
    let sim = start(SimConfig {
        receipt_retry_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125551000", "+12125550123", "hi", true).unwrap())
        .await
        .unwrap();
    let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
    client
        .answer_deliver(&receipt, CommandStatus::EsmeRsyserr)
        .await
        .unwrap();
    let retry = client.expect(CommandId::DeliverSm).await.unwrap();
    assert_eq!(short_message_text(&retry), short_message_text(&receipt));
    client
        .answer_deliver(&retry, CommandStatus::EsmeRok)
        .await
        .unwrap();
    let stats = sim.stats();
    assert_eq!((stats.receipts_refused, stats.receipts_sent), (1, 2));
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_submits_and_duplicate_receipts_are_counted_and_sent() {
    let sim = start(SimConfig {
        duplicate_receipts: true,
        ..SimConfig::default()
    })
    .await;
    let mut client = transceiver(&sim).await;
    for _ in 0..2 {
        client
            .submit(submit_sm("+12125551000", "+12125550123", "same", true).unwrap())
            .await
            .unwrap();
    }
    client
        .submit(submit_sm("+12125551000", "+12125550123", "different", false).unwrap())
        .await
        .unwrap();
    assert!(sim.wait_for_submits(3, WAIT).await);
    assert_eq!(sim.stats().duplicates, 1);
    let mut receipts = 0;
    for _ in 0..4 {
        let receipt = client.expect(CommandId::DeliverSm).await.unwrap();
        client
            .answer_deliver(&receipt, CommandStatus::EsmeRok)
            .await
            .unwrap();
        receipts += 1;
    }
    assert_eq!(receipts, 4);
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn binds_are_refused_during_the_refusal_window() {
    let sim = start(SimConfig {
        refuse_binds_for: Some(Duration::from_secs(3600)),
        ..SimConfig::default()
    })
    .await;
    let mut early = SmppClient::connect(sim.local_addr()).await.unwrap();
    assert_eq!(
        early
            .bind(BindKind::Transceiver, "smsgate", "secret")
            .await
            .unwrap(),
        CommandStatus::EsmeRbindfail
    );
    // A window that has already passed lets binds through.
    sim.set_config(|cfg| cfg.refuse_binds_for = Some(Duration::ZERO));
    assert_eq!(
        early
            .bind(BindKind::Transceiver, "smsgate", "secret")
            .await
            .unwrap(),
        CommandStatus::EsmeRok
    );
    drop(early);
    sim.shutdown().await;
}

#[tokio::test]
async fn random_bytes_on_many_connections_never_take_the_simulator_down() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let sim = start(SimConfig::default()).await;
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..20 {
        let mut client = transceiver(&sim).await;
        let mut junk = Vec::new();
        for _ in 0..rng.random_range(1..6) {
            // A plausible header (so bodies reach the decoders), then random bytes.
            let len = rng.random_range(16..300u32);
            junk.extend_from_slice(&len.to_be_bytes());
            let ids = [4u32, 5, 9, 0x103, 0x15, 0x80000005, 0x21];
            junk.extend_from_slice(&ids[rng.random_range(0..ids.len())].to_be_bytes());
            junk.extend_from_slice(&0u32.to_be_bytes());
            junk.extend_from_slice(&rng.random::<u32>().to_be_bytes());
            for _ in 16..len {
                junk.push(if rng.random_bool(0.2) {
                    0
                } else {
                    rng.random()
                });
            }
        }
        client.send_raw(&junk).await.unwrap();
        client.send(Pdu::EnquireLink).await.unwrap();
        // Either the connection carries on (enquire_link answered) or it was closed.
        let _ = client.expect(CommandId::EnquireLinkResp).await;
    }
    let mut client = transceiver(&sim).await;
    client
        .submit(submit_sm("+12125550100", "+12125550123", "after the noise", true).unwrap())
        .await
        .unwrap();
    assert_eq!(
        client
            .expect(CommandId::SubmitSmResp)
            .await
            .unwrap()
            .status(),
        CommandStatus::EsmeRok
    );
    client.expect(CommandId::DeliverSm).await.unwrap();
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn data_sm_is_answered_and_logged_with_its_payload() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    let data_sm = DataSm::builder()
        .source_addr(COctetString::from_string("12125551000".into()).unwrap())
        .destination_addr(COctetString::from_string("12125550123".into()).unwrap())
        .registered_delivery(RegisteredDelivery::from(0))
        .tlvs(vec![MessageSubmissionRequestTlvValue::MessagePayload(
            MessagePayload::new(AnyOctetString::from_vec(b"payload text".to_vec())),
        )])
        .build();
    client.send(data_sm).await.unwrap();
    let resp = client.expect(CommandId::DataSmResp).await.unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRok);
    assert_eq!(message_id(&resp), "1a2b3c");
    let logged = &sim.submits()[0];
    assert!(logged.via_data_sm);
    assert_eq!(
        logged.message_payload.as_deref(),
        Some(&b"payload text"[..])
    );
    assert_eq!(logged.text(), "payload text");
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn submit_with_udh_and_sar_is_logged_with_both() {
    let sim = start(SimConfig::default()).await;
    let mut client = transceiver(&sim).await;
    let mut body = super::text::concat_udh(5, 2, 1).to_vec();
    body.extend_from_slice(b"part one");
    let mut submit =
        client::submit_sm_bytes("+12125551000", "+12125550123", 0, 0x40, body, false).unwrap();
    submit.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(5));
    submit.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2));
    submit.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(1));
    client.submit(submit).await.unwrap();
    client.expect(CommandId::SubmitSmResp).await.unwrap();
    let logged = &sim.submits()[0];
    assert!(logged.udhi());
    assert_eq!(logged.sar, Some((5, 2, 1)));
    assert_eq!(logged.text(), "part one");
    drop(client);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_unbinds_bound_sessions_and_stops_accepting() {
    let sim = start(SimConfig::default()).await;
    let addr = sim.local_addr();
    let mut client = transceiver(&sim).await;
    let shutdown = tokio::spawn(sim.shutdown());
    let unbind = client.expect(CommandId::Unbind).await.unwrap();
    client
        .send_command(Command::new(
            CommandStatus::EsmeRok,
            unbind.sequence_number(),
            Pdu::UnbindResp,
        ))
        .await
        .unwrap();
    assert!(client.closed_within(WAIT).await);
    shutdown.await.unwrap();
    assert!(SmppClient::connect(addr).await.is_err());
}

#[tokio::test]
async fn wait_for_submits_times_out_when_nothing_arrives() {
    let sim = start(SimConfig::default()).await;
    assert!(!sim.wait_for_submits(1, Duration::from_millis(50)).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn cli_runs_until_its_shutdown_signal_and_returns_the_counts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = super::SimSettings {
        mo_rate: Some(50.0),
        mo_from: Some("+12125550123".into()),
        mo_to: Some("12125551000".into()),
        stats_every: Some("50ms".into()),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(super::cli::run(settings, listener, async {
        let _ = stop_rx.await;
    }));
    let mut client = SmppClient::bound(addr, BindKind::Transceiver, "smsgate", "secret")
        .await
        .unwrap();
    for _ in 0..2 {
        let mo = client.expect(CommandId::DeliverSm).await.unwrap();
        assert!(short_message_text(&mo).starts_with("smsc-sim MO "));
        client
            .answer_deliver(&mo, CommandStatus::EsmeRok)
            .await
            .unwrap();
    }
    // Once the enquire_link is answered, the acks sent before it have been counted.
    client.send(Pdu::EnquireLink).await.unwrap();
    client.expect(CommandId::EnquireLinkResp).await.unwrap();
    stop_tx.send(()).unwrap();
    let stats = run.await.unwrap().unwrap();
    assert!(stats.mo_acked >= 2, "{stats}");
}

/// Throughput: `cargo test --release --lib sim::tests::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode"]
async fn throughput_of_pipelined_submits_with_and_without_receipts() {
    for receipts in [false, true] {
        let sim = start(SimConfig {
            submit_log_capacity: 0,
            ..SimConfig::default()
        })
        .await;
        let opts = client::LoadOptions {
            submits: 1_000_000,
            receipts,
            ..Default::default()
        };
        let report = client::run_load(sim.local_addr(), &opts).await.unwrap();
        println!(
            "receipts={receipts}: {} submits in {:?} = {:.0} submit_sm/s ({} receipts)",
            report.responses,
            report.elapsed,
            report.submits_per_second(),
            report.receipts
        );
        assert_eq!(report.accepted, opts.submits);
        sim.shutdown().await;
    }
}
