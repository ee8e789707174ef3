//! Inbound (MO) decoding: `deliver_sm` `data_coding` + `short_message` back to text.
//!
//! The bytes come from carriers and handsets and may be anything: every path is total (no panic,
//! no out-of-bounds index), undecodable units become U+FFFD and set [`DecodedMo::lossy`].

use super::DecodeError;
use super::gsm7::{self, Charset};
use super::udh::{Udh, parse_udh};

/// What `data_coding` 0 ("SMSC default alphabet") means for a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DefaultAlphabet {
    /// GSM-7, one septet per octet (what most SMPP carriers send).
    #[default]
    Gsm7Unpacked,
    /// GSM-7 packed 8 septets into 7 octets, as on the air interface.
    Gsm7Packed,
    /// ISO-8859-1.
    Latin1,
    /// IA5 / ASCII.
    Ascii,
}

/// A decoded inbound short message (one part of a possibly concatenated message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedMo {
    /// The text; empty for 8-bit binary data.
    pub text: String,
    /// The payload (after the UDH) of 8-bit data (`data_coding` 2, 4, and GSM 8-bit classes),
    /// or of a coding we cannot read; the text is then empty.
    pub binary: Option<Vec<u8>>,
    pub udh: Option<Udh>,
    /// Some units could not be decoded and were replaced with U+FFFD.
    pub lossy: bool,
}

/// How the payload of a `data_coding` is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Gsm7 { packed: bool },
    Ascii,
    Latin1,
    Cyrillic,
    Ucs2,
    Binary,
}

fn scheme(data_coding: u8, default: DefaultAlphabet) -> Scheme {
    // Values outside SMPP's own table are GSM 03.38 data coding schemes; GSM-7 then uses the
    // carrier's packing (unpacked unless it packs the default alphabet).
    let gsm7 = Scheme::Gsm7 {
        packed: default == DefaultAlphabet::Gsm7Packed,
    };
    match data_coding {
        0x00 => match default {
            DefaultAlphabet::Gsm7Unpacked | DefaultAlphabet::Gsm7Packed => gsm7,
            DefaultAlphabet::Latin1 => Scheme::Latin1,
            DefaultAlphabet::Ascii => Scheme::Ascii,
        },
        0x01 => Scheme::Ascii,
        0x03 => Scheme::Latin1,
        0x06 => Scheme::Cyrillic,
        0x08 => Scheme::Ucs2,
        // 2 and 4 are 8-bit data; 5, 7, 9..15 are Japanese, Hebrew, Korean codings we keep raw.
        0x02 | 0x04 | 0x05 | 0x07 | 0x09..=0x0F => Scheme::Binary,
        // General data coding groups 00xx / 01xx: bit 5 = compressed, bits 3..2 = alphabet.
        0x10..=0x7F if data_coding & 0x20 != 0 => Scheme::Binary,
        0x10..=0x7F => match (data_coding >> 2) & 0x03 {
            0 => gsm7,
            2 => Scheme::Ucs2,
            _ => Scheme::Binary,
        },
        // Message waiting indication groups: discard/store with GSM-7, store with UCS-2.
        0xC0..=0xDF => gsm7,
        0xE0..=0xEF => Scheme::Ucs2,
        // Data coding / message class group: bit 2 = 8-bit data.
        0xF0..=0xFF if data_coding & 0x04 != 0 => Scheme::Binary,
        0xF0..=0xFF => gsm7,
        // 0x80..0xBF are reserved.
        _ => Scheme::Binary,
    }
}

/// Decodes one inbound short message.
///
/// With `udhi` set (esm_class 0x40) the message starts with a UDH, whose errors are returned as
/// [`DecodeError`]; national shift IEs in it select the GSM-7 tables. Text errors never fail:
/// they become U+FFFD and set [`DecodedMo::lossy`].
pub fn decode_mo(
    data_coding: u8,
    udhi: bool,
    short_message: &[u8],
    default_alphabet: DefaultAlphabet,
) -> Result<DecodedMo, DecodeError> {
    let (udh, body) = if udhi {
        let (udh, len) = parse_udh(short_message)?;
        (Some(udh), short_message.get(len..).unwrap_or_default())
    } else {
        (None, short_message)
    };
    let udh_len = short_message.len() - body.len();
    let mut decoded = DecodedMo {
        udh,
        ..DecodedMo::default()
    };
    match scheme(data_coding, default_alphabet) {
        Scheme::Gsm7 { packed } => {
            let charset = udh.map_or(Charset::DEFAULT, |u| {
                Charset::from_ids(u.national_single, u.national_locking)
            });
            decoded.text.reserve(body.len() + body.len() / 7);
            if packed {
                let septets = gsm7::unpack(body, gsm7::fill_bits(udh_len));
                charset.decode_into(septets, &mut decoded.text);
            } else {
                decoded.lossy = body.iter().any(|&b| b > 0x7F);
                charset.decode_into(body.iter().copied(), &mut decoded.text);
            }
        }
        Scheme::Ascii => {
            decoded.text = body
                .iter()
                .map(|&b| {
                    if b < 0x80 {
                        char::from(b)
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect();
            decoded.lossy = body.iter().any(|&b| b >= 0x80);
        }
        Scheme::Latin1 => decoded.text = body.iter().map(|&b| char::from(b)).collect(),
        Scheme::Cyrillic => decoded.text = body.iter().map(|&b| iso_8859_5(b)).collect(),
        Scheme::Ucs2 => decoded.lossy = decode_utf16be(body, &mut decoded.text),
        Scheme::Binary => decoded.binary = Some(body.to_vec()),
    }
    Ok(decoded)
}

/// Appends UTF-16BE text to `out`; lone surrogates and an odd trailing octet become U+FFFD.
/// Returns whether anything was replaced.
fn decode_utf16be(bytes: &[u8], out: &mut String) -> bool {
    let chunks = bytes.chunks_exact(2);
    let odd = !chunks.remainder().is_empty();
    let units = chunks.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut lossy = odd;
    out.reserve(bytes.len() / 2);
    for c in char::decode_utf16(units) {
        out.push(c.unwrap_or_else(|_| {
            lossy = true;
            char::REPLACEMENT_CHARACTER
        }));
    }
    if odd {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    lossy
}

/// ISO-8859-5 (SMPP `data_coding` 6): Latin-1 below 0xA1, Cyrillic above with three exceptions.
fn iso_8859_5(b: u8) -> char {
    match b {
        0x00..=0xA0 | 0xAD => char::from(b),
        0xF0 => '\u{2116}', // NUMERO SIGN
        0xFD => '\u{00A7}', // SECTION SIGN
        _ => char::from_u32(u32::from(b) - 0xA0 + 0x0400).unwrap_or(char::REPLACEMENT_CHARACTER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_8859_5_maps_cyrillic_letters() {
        let text: String = [0xA1u8, 0xB0, 0xD0, 0xEF, 0xF1, 0xFF, 0xF0, 0xFD, 0xAD, 0x41]
            .iter()
            .map(|&b| iso_8859_5(b))
            .collect();
        assert_eq!(text, "ЁАаяёџ№§\u{AD}A");
    }

    #[test]
    fn data_coding_classes_pick_the_right_scheme() {
        let d = DefaultAlphabet::Gsm7Unpacked;
        assert_eq!(scheme(0xF0, d), Scheme::Gsm7 { packed: false });
        assert_eq!(
            scheme(0xF1, DefaultAlphabet::Gsm7Packed),
            Scheme::Gsm7 { packed: true }
        );
        assert_eq!(scheme(0xF4, d), Scheme::Binary);
        assert_eq!(scheme(0x18, d), Scheme::Ucs2);
        assert_eq!(scheme(0x11, d), Scheme::Gsm7 { packed: false });
        assert_eq!(scheme(0x15, d), Scheme::Binary);
        assert_eq!(scheme(0x38, d), Scheme::Binary);
        assert_eq!(scheme(0xE0, d), Scheme::Ucs2);
        assert_eq!(scheme(0x00, DefaultAlphabet::Latin1), Scheme::Latin1);
        assert_eq!(scheme(0x00, DefaultAlphabet::Ascii), Scheme::Ascii);
        assert_eq!(scheme(0x90, d), Scheme::Binary);
    }
}
