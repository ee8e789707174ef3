//! Delivery receipts: parse them from a deliver_sm (TLVs first, the de-facto text form
//! `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…` as fallback), and
//! normalise carrier message ids so a receipt finds the part it is about.

use rusmpp::{pdus::DeliverSm, tlvs::TlvValue};

use crate::{config::IdFormat, store::ReceiptState};

/// What a receipt says, before correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// The carrier's message id as written in the receipt (not yet normalised).
    pub id: String,
    /// The `stat:` word, or one derived from the `message_state` TLV.
    pub stat: String,
    pub state: ReceiptState,
    pub err: Option<String>,
}

/// Whether a deliver_sm is a receipt (esm_class message type "MC delivery receipt" or
/// "intermediate delivery notification") rather than an inbound text.
pub fn is_receipt(pdu: &DeliverSm) -> bool {
    let esm = u8::from(pdu.esm_class);
    esm & 0x3C == 0x04 || esm & 0x3C == 0x20
}

/// Reads a receipt from a deliver_sm. TLVs win where present; the text fills the gaps.
pub fn parse_receipt(pdu: &DeliverSm) -> Option<ParsedReceipt> {
    let mut id = None;
    let mut tlv_state = None;
    let mut tlv_err = None;
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(v)) => id = Some(v.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => tlv_state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(n)) => tlv_err = Some(format!("{:03}", n.error_code)),
            _ => {}
        }
    }
    let text = parse_text(pdu.short_message().as_ref());
    let id = id
        .filter(|s| !s.is_empty())
        .or_else(|| text.as_ref().map(|t| t.id.clone()))?;
    let (stat, state) = match (tlv_state, &text) {
        (Some(s), _) => {
            let (stat, state) = state_from_tlv(s);
            (stat.to_owned(), state)
        }
        (None, Some(t)) => (t.stat.clone(), state_from_stat(&t.stat)),
        (None, None) => return None,
    };
    let err = tlv_err
        .or_else(|| text.and_then(|t| t.err))
        .filter(|e| !e.trim_start_matches('0').is_empty() || state != ReceiptState::Delivered);
    Some(ParsedReceipt {
        id,
        stat,
        state,
        err,
    })
}

/// The fields of the text form that matter for correlation and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextReceipt {
    pub id: String,
    pub stat: String,
    pub err: Option<String>,
}

/// Parses the de-facto receipt text (SMPP 3.4 appendix B). Keys are case-insensitive and may
/// come in any order; `text:` runs to the end and is never parsed as keys.
pub fn parse_text(raw: &[u8]) -> Option<TextReceipt> {
    let s = String::from_utf8_lossy(raw);
    let lower = s.to_ascii_lowercase();
    // Everything after "text:" is the message's first characters: never look for keys there.
    let end = lower.find("text:").unwrap_or(lower.len());
    let head = &lower[..end];
    let orig = &s[..end];
    let value = |key: &str| -> Option<String> {
        let mut from = 0;
        while let Some(pos) = head[from..].find(key) {
            let at = from + pos;
            // Must start a token: "id:" must not match inside "msgid:".
            if at == 0 || head.as_bytes()[at - 1] == b' ' {
                let v_start = at + key.len();
                let v_end = head[v_start..]
                    .find(' ')
                    .map_or(head.len(), |p| v_start + p);
                return Some(orig[v_start..v_end].trim().to_owned());
            }
            from = at + key.len();
        }
        None
    };
    let id = value("id:").filter(|v| !v.is_empty())?;
    let stat = value("stat:").unwrap_or_default().to_ascii_uppercase();
    let err = value("err:").filter(|v| !v.is_empty());
    Some(TextReceipt { id, stat, err })
}

fn state_from_stat(stat: &str) -> ReceiptState {
    match stat {
        "DELIVRD" | "DELIVERED" => ReceiptState::Delivered,
        "UNDELIV" | "UNDELIVERABLE" => ReceiptState::Undelivered,
        "EXPIRED" => ReceiptState::Expired,
        "REJECTD" | "REJECTED" => ReceiptState::Rejected,
        "DELETED" => ReceiptState::Deleted,
        "ACCEPTD" | "ACCEPTED" | "ENROUTE" | "SCHEDULED" => ReceiptState::Enroute,
        _ => ReceiptState::Unknown,
    }
}

fn state_from_tlv(v: u8) -> (&'static str, ReceiptState) {
    match v {
        0 => ("SCHEDULED", ReceiptState::Enroute),
        1 => ("ENROUTE", ReceiptState::Enroute),
        2 => ("DELIVRD", ReceiptState::Delivered),
        3 => ("EXPIRED", ReceiptState::Expired),
        4 => ("DELETED", ReceiptState::Deleted),
        5 => ("UNDELIV", ReceiptState::Undelivered),
        6 => ("ACCEPTD", ReceiptState::Enroute),
        8 => ("REJECTD", ReceiptState::Rejected),
        _ => ("UNKNOWN", ReceiptState::Unknown),
    }
}

/// Where an id was seen: carriers that disagree with themselves do so between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    SubmitResponse,
    Receipt,
}

/// The canonical form of a carrier message id: lower case without leading zeros, and for
/// carriers that write it in hex in one place and decimal in the other, the decimal value.
pub fn normalise_id(raw: &str, format: IdFormat, source: IdSource) -> String {
    let trimmed = raw.trim();
    let radix = match (format, source) {
        (IdFormat::HexResponseDecimalReceipt, IdSource::SubmitResponse)
        | (IdFormat::DecimalResponseHexReceipt, IdSource::Receipt) => Some(16),
        (IdFormat::HexResponseDecimalReceipt, IdSource::Receipt)
        | (IdFormat::DecimalResponseHexReceipt, IdSource::SubmitResponse) => Some(10),
        (IdFormat::AsIs, _) => None,
    };
    if let Some(radix) = radix
        && let Ok(v) = u128::from_str_radix(trimmed, radix)
    {
        return v.to_string();
    }
    let lower = trimmed.to_ascii_lowercase();
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() && !lower.is_empty() {
        "0".to_owned()
    } else {
        stripped.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_text_form_parses() {
        let t = parse_text(
            b"id:1a2b3C sub:001 dlvrd:001 submit date:2611221200 done date:2611221201 stat:DELIVRD err:000 text:Hello id:zz",
        )
        .unwrap();
        assert_eq!(t.id, "1a2b3C");
        assert_eq!(t.stat, "DELIVRD");
        assert_eq!(t.err.as_deref(), Some("000"));
    }

    #[test]
    fn keys_in_other_order_and_case_still_parse() {
        let t = parse_text(b"Stat:UNDELIV ID:77 err:001").unwrap();
        assert_eq!((t.id.as_str(), t.stat.as_str()), ("77", "UNDELIV"));
        assert_eq!(state_from_stat(&t.stat), ReceiptState::Undelivered);
    }

    #[test]
    fn text_without_an_id_is_not_a_receipt() {
        assert!(parse_text(b"hello there").is_none());
        assert!(parse_text(b"").is_none());
        assert!(parse_text(&[0xff, 0xfe, 0x00]).is_none());
    }

    #[test]
    fn ids_normalise_across_case_zeros_and_radix() {
        use IdFormat::*;
        use IdSource::*;
        assert_eq!(normalise_id("00AbC", AsIs, Receipt), "abc");
        assert_eq!(normalise_id("000", AsIs, Receipt), "0");
        assert_eq!(
            normalise_id("1f", HexResponseDecimalReceipt, SubmitResponse),
            normalise_id("31", HexResponseDecimalReceipt, Receipt)
        );
        assert_eq!(
            normalise_id("0031", DecimalResponseHexReceipt, SubmitResponse),
            normalise_id("1F", DecimalResponseHexReceipt, Receipt)
        );
        assert_ne!(
            normalise_id("1f", AsIs, SubmitResponse),
            normalise_id("31", AsIs, Receipt)
        );
    }
}
