//! SMPP framing and receipt parsing, per PDU on one thread: what the carrier session pays for
//! each submit it writes and each receipt it reads, before any I/O.
//!
//! - `smpp_encode` / `smpp_decode`: our codec (`smpp::codec::encode_into`, `SmppCodec` over
//!   rusmpp's PDU codec) on a 160-character GSM-7 `submit_sm` and on a `deliver_sm` delivery
//!   receipt as smsc-sim sends it (text form plus `receipted_message_id` and `message_state`
//!   TLVs). Decoding copies the frame into the read buffer first (~200 bytes), as a socket
//!   read would.
//! - `dlr`: the receipt text parser (`id:… sub:… dlvrd:… stat:… err:…`), the whole receipt
//!   read from a decoded deliver_sm (TLVs first, text as fallback), and carrier id
//!   normalisation.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rusmpp::{
    Command, CommandStatus, Pdu,
    pdus::DeliverSm,
    tlvs::MessageDeliveryRequestTlvValue,
    types::{COctetString, OctetString},
    values::{DataCoding, EsmClass, MessageState, Npi, RegisteredDelivery, Ton},
};
use smsgate::{
    config::IdFormat,
    dlr::{self, IdSource},
    sim::client::submit_sm,
    smpp::codec::{Frame, SmppCodec, encode_into},
};
use tokio_util::codec::Decoder;

/// The same 160 GSM-7 characters as the segmentation bench: one full part.
fn gsm7_160() -> String {
    let base = "Your appointment with Dr. Smith is confirmed for Tue 14 May at 10:30. \
                Reply C to confirm, R to reschedule or call (212) 555-0123. Thanks! @clinic";
    base.chars().cycle().take(160).collect()
}

/// The text form smsc-sim writes (and most carriers do).
const RECEIPT_TEXT: &str = "id:1a2b3c4d5e6f sub:001 dlvrd:001 submit date:2611221200 \
                            done date:2611221201 stat:DELIVRD err:000 text:Your appointment";

fn submit_command() -> Command {
    let pdu = submit_sm("+12125551000", "+19175550123", &gsm7_160(), true).expect("valid submit");
    Command::new(CommandStatus::EsmeRok, 0x0102_0304, pdu)
}

fn cstr<const MAX: usize>(s: &str) -> COctetString<1, MAX> {
    COctetString::from_string(s.to_owned()).expect("short ASCII")
}

fn receipt_pdu() -> DeliverSm {
    DeliverSm::builder()
        .source_addr_ton(Ton::International)
        .source_addr_npi(Npi::Isdn)
        .source_addr(cstr("19175550123"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(cstr("12125551000"))
        .esm_class(EsmClass::from(0x04))
        .registered_delivery(RegisteredDelivery::from(0))
        .data_coding(DataCoding::McSpecific)
        .short_message(
            OctetString::from_bytes(Bytes::from_static(RECEIPT_TEXT.as_bytes())).unwrap(),
        )
        .tlvs(vec![
            MessageDeliveryRequestTlvValue::ReceiptedMessageId(cstr("1a2b3c4d5e6f")),
            MessageDeliveryRequestTlvValue::MessageState(MessageState::from(2)),
        ])
        .build()
}

fn frame_of(command: &Command) -> BytesMut {
    let mut b = BytesMut::new();
    encode_into(command, &mut b);
    b
}

fn decode_once(codec: &mut SmppCodec, buf: &mut BytesMut, frame: &[u8]) -> Frame {
    buf.clear();
    buf.extend_from_slice(frame);
    codec.decode(buf).expect("frames").expect("one whole frame")
}

fn bench(c: &mut Criterion) {
    let submit = submit_command();
    let receipt = Command::new(CommandStatus::EsmeRok, 7, receipt_pdu());
    let submit_frame = frame_of(&submit);
    let receipt_frame = frame_of(&receipt);

    let mut g = c.benchmark_group("smpp_encode");
    g.throughput(Throughput::Elements(1));
    let mut out = BytesMut::with_capacity(512);
    g.bench_function("submit_sm_160", |b| {
        b.iter(|| {
            out.clear();
            encode_into(black_box(&submit), &mut out);
            out.len()
        })
    });
    g.bench_function("deliver_sm_receipt", |b| {
        b.iter(|| {
            out.clear();
            encode_into(black_box(&receipt), &mut out);
            out.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("smpp_decode");
    g.throughput(Throughput::Elements(1));
    let mut codec = SmppCodec::new(4096);
    let mut buf = BytesMut::with_capacity(512);
    g.bench_function("submit_sm_160", |b| {
        b.iter(|| decode_once(&mut codec, &mut buf, black_box(&submit_frame)))
    });
    g.bench_function("deliver_sm_receipt", |b| {
        b.iter(|| decode_once(&mut codec, &mut buf, black_box(&receipt_frame)))
    });
    g.finish();

    let decoded = match decode_once(&mut codec, &mut buf, &receipt_frame) {
        Frame::Command(c) => match c.pdu() {
            Some(Pdu::DeliverSm(d)) => d.clone(),
            other => panic!("not a deliver_sm: {other:?}"),
        },
        other => panic!("undecodable receipt: {other:?}"),
    };
    assert!(dlr::is_receipt(&decoded));
    let mut g = c.benchmark_group("dlr");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_text", |b| {
        b.iter(|| dlr::parse_text(black_box(RECEIPT_TEXT.as_bytes())))
    });
    g.bench_function("parse_receipt_tlv_and_text", |b| {
        b.iter(|| dlr::parse_receipt(black_box(&decoded)))
    });
    g.bench_function("normalise_id_as_is", |b| {
        b.iter(|| {
            dlr::normalise_id(
                black_box("001A2B3C4D5E6F"),
                IdFormat::AsIs,
                IdSource::Receipt,
            )
        })
    });
    g.bench_function("normalise_id_hex_to_decimal", |b| {
        b.iter(|| {
            dlr::normalise_id(
                black_box("1a2b3c4d5e6f"),
                IdFormat::HexResponseDecimalReceipt,
                IdSource::SubmitResponse,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
