//! Mobile-originated messages the simulator injects (`deliver_sm`, esm_class 0).

use rusmpp::{
    pdus::DeliverSm,
    tlvs::MessageDeliveryRequestTlvValue,
    types::{AnyOctetString, COctetString, OctetString},
    values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton},
};

use super::{SimError, text};

/// One MO `deliver_sm`, i.e. one part as a handset sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoMessage {
    /// The handset. A leading `+` is dropped and the address marked international.
    pub source: String,
    /// The line (short code or long number) it was sent to.
    pub destination: String,
    pub data_coding: u8,
    /// Body as it goes on the wire, UDH included when `udhi`. Over 255 bytes it is carried
    /// in the message_payload TLV instead.
    pub short_message: Vec<u8>,
    /// The body starts with a user data header (esm_class 0x40).
    pub udhi: bool,
    /// SAR TLVs: (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum).
    pub sar: Option<(u16, u8, u8)>,
}

impl MoMessage {
    /// A single message with `body` in GSM-7 (unpacked) when every character is in the
    /// alphabet, else UCS-2. Long text is not split: see [`MoMessage::concatenated`].
    pub fn text(from: &str, to: &str, body: &str) -> Self {
        let (data_coding, short_message) = match text::gsm7_encode(body) {
            Some(septets) => (text::DC_GSM7, septets),
            None => (text::DC_UCS2, text::ucs2_encode(body)),
        };
        MoMessage {
            source: from.to_string(),
            destination: to.to_string(),
            data_coding,
            short_message,
            udhi: false,
            sar: None,
        }
    }

    /// `body` as a handset sends it: one message if it fits, else UDH-concatenated parts
    /// (8-bit `reference`), each of which must be injected in turn.
    pub fn concatenated(from: &str, to: &str, body: &str, reference: u8) -> Vec<Self> {
        let (data_coding, bodies) = text::encode_and_split(body);
        let total = bodies.len();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let (udhi, short_message) = if total == 1 {
                    (false, part)
                } else {
                    let mut with_udh =
                        text::concat_udh(reference, total as u8, (i + 1) as u8).to_vec();
                    with_udh.extend(part);
                    (true, with_udh)
                };
                MoMessage {
                    source: from.to_string(),
                    destination: to.to_string(),
                    data_coding,
                    short_message,
                    udhi,
                    sar: None,
                }
            })
            .collect()
    }

    /// Like [`MoMessage::concatenated`] but the parts carry SAR TLVs instead of a UDH.
    pub fn sar_parts(from: &str, to: &str, body: &str, reference: u16) -> Vec<Self> {
        let (data_coding, bodies) = text::encode_and_split(body);
        let total = bodies.len();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, short_message)| MoMessage {
                source: from.to_string(),
                destination: to.to_string(),
                data_coding,
                short_message,
                udhi: false,
                sar: (total > 1).then_some((reference, total as u8, (i + 1) as u8)),
            })
            .collect()
    }

    pub(crate) fn to_deliver_sm(&self) -> Result<DeliverSm, SimError> {
        let (source_ton, source) = address(&self.source)?;
        let (dest_ton, destination) = address(&self.destination)?;
        let mut tlvs = Vec::new();
        let short_message = if self.short_message.len() <= 255 {
            OctetString::from_vec(self.short_message.clone())
                .map_err(|e| SimError::InvalidMo(e.to_string()))?
        } else {
            tlvs.push(MessageDeliveryRequestTlvValue::MessagePayload(
                MessagePayload::new(AnyOctetString::from_vec(self.short_message.clone())),
            ));
            OctetString::empty()
        };
        if let Some((reference, total, seq)) = self.sar {
            tlvs.push(MessageDeliveryRequestTlvValue::SarMsgRefNum(reference));
            tlvs.push(MessageDeliveryRequestTlvValue::SarTotalSegments(total));
            tlvs.push(MessageDeliveryRequestTlvValue::SarSegmentSeqnum(seq));
        }
        Ok(DeliverSm::builder()
            .source_addr_ton(source_ton)
            .source_addr_npi(Npi::Isdn)
            .source_addr(source)
            .dest_addr_ton(dest_ton)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(destination)
            .esm_class(EsmClass::from(if self.udhi { 0x40 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(0))
            .data_coding(DataCoding::from(self.data_coding))
            .short_message(short_message)
            .tlvs(tlvs)
            .build())
    }
}

fn address(number: &str) -> Result<(Ton, COctetString<1, 21>), SimError> {
    let (ton, digits) = match number.strip_prefix('+') {
        Some(rest) => (Ton::International, rest),
        None => (Ton::Unknown, number),
    };
    let addr = COctetString::from_string(digits.to_string())
        .map_err(|e| SimError::InvalidMo(format!("address {digits:?}: {e}")))?;
    Ok((ton, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_gsm7_and_emoji_text_is_ucs2() {
        let gsm = MoMessage::text("+12125550123", "12125551000", "STOP");
        assert_eq!(gsm.data_coding, 0);
        assert_eq!(gsm.short_message, b"STOP");
        let ucs2 = MoMessage::text("+12125550123", "12125551000", "ok 👍");
        assert_eq!(ucs2.data_coding, 8);
        assert_eq!(ucs2.short_message.len(), 10);
    }

    #[test]
    fn long_text_becomes_udh_parts_that_reassemble() {
        let body = "x".repeat(400);
        let parts = MoMessage::concatenated("+12125550123", "12125551000", &body, 9);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.udhi && p.short_message.len() <= 159));
        assert_eq!(&parts[2].short_message[..6], &[5, 0, 3, 9, 3, 3]);
        let text: String = parts
            .iter()
            .map(|p| text::decode_short_message(p.data_coding, true, &p.short_message))
            .collect();
        assert_eq!(text, body);
    }

    #[test]
    fn sar_parts_carry_tlvs_and_no_udh() {
        let parts = MoMessage::sar_parts("+1", "2", &"y".repeat(200), 300);
        assert_eq!(parts[1].sar, Some((300, 2, 2)));
        let deliver = parts[1].to_deliver_sm().unwrap();
        assert_eq!(deliver.tlvs().len(), 3);
        assert_eq!(u8::from(deliver.esm_class), 0);
    }

    #[test]
    fn over_long_address_is_rejected_not_truncated() {
        let mo = MoMessage::text(&"1".repeat(30), "2", "hi");
        assert!(matches!(mo.to_deliver_sm(), Err(SimError::InvalidMo(_))));
    }
}
