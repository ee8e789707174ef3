//! Receipts are carrier-written text (and TLVs): parsing and id normalisation must never
//! panic, and must keep the promises correlation relies on.
//!
//! Input: `sel`, then bytes used three ways:
//! - as receipt text for `dlr::parse_text`, and inside a deliver_sm for `dlr::parse_receipt`;
//! - as a carrier id for `dlr::normalise_id` with every `IdFormat` and `IdSource`;
//! - as a deliver_sm body (after a made-up header) decoded by `SmppCodec`, then
//!   `parse_receipt` on what decodes.
//!
//! `sel` also picks a number for the hex/decimal property: the id of a carrier that writes it
//! in hex in one place and decimal in the other normalises to the same string from both.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rusmpp::{Pdu, pdus::DeliverSm, types::OctetString, values::EsmClass};
use smsgate::{
    config::IdFormat,
    dlr::{IdSource, ParsedReceipt, is_receipt, normalise_id, parse_receipt, parse_text},
    smpp::codec::{Frame, SmppCodec},
};
use tokio_util::codec::Decoder;

const FORMATS: [IdFormat; 3] = [
    IdFormat::AsIs,
    IdFormat::HexResponseDecimalReceipt,
    IdFormat::DecimalResponseHexReceipt,
];
const SOURCES: [IdSource; 2] = [IdSource::SubmitResponse, IdSource::Receipt];

fn check_text(raw: &[u8]) {
    if let Some(t) = parse_text(raw) {
        assert!(!t.id.is_empty(), "an empty id was accepted");
        assert!(!t.id.contains(' '), "id {:?} runs past a space", t.id);
        assert_eq!(t.id.trim(), t.id, "id {:?} is not trimmed", t.id);
        assert!(!t.stat.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(
            t.err
                .as_ref()
                .is_none_or(|e| !e.is_empty() && !e.contains(' '))
        );
        // Keys are case-insensitive: upper-casing the ASCII of the text finds the same id.
        let upper = parse_text(&raw.to_ascii_uppercase()).expect("the same keys, upper case");
        assert_eq!(upper.id.to_ascii_lowercase(), t.id.to_ascii_lowercase());
    }
}

fn check_ids(raw: &str) {
    for format in FORMATS {
        for source in SOURCES {
            let id = normalise_id(raw, format, source);
            assert!(
                !id.bytes().any(|b| b.is_ascii_uppercase()),
                "{raw:?} normalised to {id:?}, not lower case"
            );
            if id.len() > 1 {
                assert!(!id.starts_with('0'), "{raw:?} normalised to {id:?}");
            }
            if !raw.trim().is_empty() {
                assert!(!id.is_empty(), "{raw:?} normalised to nothing");
            }
        }
    }
}

/// A number the carrier writes in hex one place and decimal in the other (with leading zeros
/// and either case of hex digits) correlates.
fn check_radix(v: u128, zeros: usize, upper: bool) {
    let pad = "0".repeat(zeros % 8);
    let hex = if upper {
        format!("{pad}{v:X}")
    } else {
        format!("{pad}{v:x}")
    };
    let dec = format!("{pad}{v}");
    use IdFormat::*;
    use IdSource::*;
    assert_eq!(
        normalise_id(&hex, HexResponseDecimalReceipt, SubmitResponse),
        normalise_id(&dec, HexResponseDecimalReceipt, Receipt),
    );
    assert_eq!(
        normalise_id(&dec, DecimalResponseHexReceipt, SubmitResponse),
        normalise_id(&hex, DecimalResponseHexReceipt, Receipt),
    );
    assert_eq!(
        normalise_id(&hex, AsIs, SubmitResponse),
        normalise_id(&hex.to_ascii_uppercase(), AsIs, Receipt)
    );
}

fn check_receipt(pdu: &DeliverSm) -> Option<ParsedReceipt> {
    let _ = is_receipt(pdu);
    let r = parse_receipt(pdu)?;
    assert!(!r.id.is_empty(), "a receipt without an id: {r:?}");
    for format in FORMATS {
        for source in SOURCES {
            let _ = normalise_id(&r.id, format, source);
        }
    }
    Some(r)
}

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    check_text(rest);
    check_ids(&String::from_utf8_lossy(rest));
    let mut v = [0u8; 16];
    let n = rest.len().min(16);
    v[..n].copy_from_slice(&rest[..n]);
    check_radix(
        u128::from_le_bytes(v) >> (sel & 0x7f),
        usize::from(sel >> 4),
        sel & 1 != 0,
    );

    // The text inside a receipt deliver_sm, with no TLVs: the result is the text's.
    if rest.len() <= 255 {
        let pdu = DeliverSm::builder()
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_bytes(Bytes::copy_from_slice(rest)).unwrap())
            .build();
        let text = parse_text(rest);
        let receipt = check_receipt(&pdu);
        assert_eq!(
            receipt.as_ref().map(|r| &r.id),
            text.as_ref().map(|t| &t.id)
        );
    }

    // The bytes as a whole deliver_sm body (TLVs included) from the carrier.
    let mut frame = BytesMut::with_capacity(16 + rest.len());
    frame.put_u32(16 + rest.len() as u32);
    frame.put_u32(0x0000_0005);
    frame.put_u32(0);
    frame.put_u32(u32::from(*sel));
    frame.put_slice(rest);
    if let Ok(Some(Frame::Command(c))) = SmppCodec::new(1 << 16).decode(&mut frame)
        && let Some(Pdu::DeliverSm(d)) = c.pdu()
    {
        check_receipt(d);
    }
});
