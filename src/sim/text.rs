//! Text <-> short_message bytes as the simulator's handsets would produce them: GSM 03.38
//! default alphabet, unpacked (one septet per octet, as SMPP carries data_coding 0), else
//! UCS-2 big-endian. No I/O.

/// GSM 03.38 default alphabet, indexed by septet. 0x1B is the escape to the extension table.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

const ESCAPE: u8 = 0x1B;

/// Extension table: characters that cost two septets (escape + code).
const GSM7_EXTENSION: [(char, u8); 10] = [
    ('\u{c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// Septets of a single message / of each part of a concatenated one (6-octet UDH).
pub const GSM7_SINGLE: usize = 160;
pub const GSM7_PART: usize = 153;
/// UTF-16 code units of a single message / of each concatenated part.
pub const UCS2_SINGLE: usize = 70;
pub const UCS2_PART: usize = 67;

/// `data_coding` values used here.
pub const DC_GSM7: u8 = 0x00;
pub const DC_UCS2: u8 = 0x08;

/// Unpacked GSM-7 septets for `text`, or `None` if a character is not in the alphabet.
pub fn gsm7_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        if ch != '\u{1b}'
            && let Some(septet) = GSM7_BASIC.iter().position(|&c| c == ch)
        {
            out.push(septet as u8);
        } else if let Some(&(_, code)) = GSM7_EXTENSION.iter().find(|(c, _)| *c == ch) {
            out.extend_from_slice(&[ESCAPE, code]);
        } else {
            return None;
        }
    }
    Some(out)
}

/// Decodes unpacked GSM-7 septets; unknown codes become `?`.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter();
    while let Some(&b) = iter.next() {
        if b == ESCAPE {
            let code = iter.next().copied().unwrap_or(0);
            let ch = GSM7_EXTENSION
                .iter()
                .find(|(_, c)| *c == code)
                .map_or('?', |(ch, _)| *ch);
            out.push(ch);
        } else {
            out.push(GSM7_BASIC.get(usize::from(b)).copied().unwrap_or('?'));
        }
    }
    out
}

/// Up to `max` characters of a body (no UDH), for a receipt's `text:` field. Decoded by
/// data_coding like [`decode_short_message`]; anything outside printable ASCII becomes `?`
/// so the receipt stays plain data_coding 0. One allocation: this runs once per receipt.
pub(crate) fn ascii_preview(data_coding: u8, body: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(max);
    {
        // Returns whether there is room for more.
        let mut push = |c: char| {
            out.push(if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            });
            out.len() < max
        };
        match data_coding {
            DC_GSM7 => {
                let mut iter = body.iter();
                while let Some(&b) = iter.next() {
                    let c = if b == ESCAPE {
                        let code = iter.next().copied().unwrap_or(0);
                        GSM7_EXTENSION
                            .iter()
                            .find(|(_, c)| *c == code)
                            .map_or('?', |(ch, _)| *ch)
                    } else {
                        GSM7_BASIC.get(usize::from(b)).copied().unwrap_or('?')
                    };
                    if !push(c) {
                        break;
                    }
                }
            }
            DC_UCS2 => {
                let units = body
                    .chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
                for c in char::decode_utf16(units) {
                    if !push(c.unwrap_or('?')) {
                        break;
                    }
                }
            }
            _ => {
                for &b in body {
                    if !push(char::from(b)) {
                        break;
                    }
                }
            }
        }
    }
    out
}

/// UTF-16 big-endian, as data_coding 8 carries it.
pub fn ucs2_encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

pub fn ucs2_decode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Best-effort text of a message body: skips the UDH when `udhi`, then decodes by
/// `data_coding` (GSM-7 unpacked, Latin-1, UCS-2; anything else as Latin-1).
pub fn decode_short_message(data_coding: u8, udhi: bool, bytes: &[u8]) -> String {
    let body = if udhi { strip_udh(bytes) } else { bytes };
    match data_coding {
        DC_GSM7 => gsm7_decode(body),
        DC_UCS2 => ucs2_decode(body),
        _ => body.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The bytes after the user data header (first octet is the header's length).
pub fn strip_udh(bytes: &[u8]) -> &[u8] {
    match bytes.first() {
        Some(&len) => bytes.get(1 + usize::from(len)..).unwrap_or(&[]),
        None => bytes,
    }
}

/// The 6-octet concatenation UDH (IEI 0x00, 8-bit reference).
pub fn concat_udh(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, seq]
}

/// Encodes `text` (GSM-7 when it can, else UCS-2) and splits it into the bodies of the
/// parts a handset would send: one body if it fits a single message, else bodies of at most
/// 153 septets / 67 UTF-16 units that never cut an escape sequence or a surrogate pair.
/// Returns the data_coding and the part bodies (without UDH).
pub fn encode_and_split(text: &str) -> (u8, Vec<Vec<u8>>) {
    if let Some(septets) = gsm7_encode(text) {
        if septets.len() <= GSM7_SINGLE {
            return (DC_GSM7, vec![septets]);
        }
        let mut parts = Vec::new();
        let mut start = 0;
        while start < septets.len() {
            let mut end = (start + GSM7_PART).min(septets.len());
            // Never leave an escape as the last septet of a part.
            if end < septets.len() && is_dangling_escape(&septets[start..end]) {
                end -= 1;
            }
            parts.push(septets[start..end].to_vec());
            start = end;
        }
        return (DC_GSM7, parts);
    }
    let units: Vec<u16> = text.encode_utf16().collect();
    let to_bytes = |units: &[u16]| units.iter().flat_map(|u| u.to_be_bytes()).collect();
    if units.len() <= UCS2_SINGLE {
        return (DC_UCS2, vec![to_bytes(&units)]);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let mut end = (start + UCS2_PART).min(units.len());
        // A high surrogate must stay with its low surrogate.
        if end < units.len() && (0xD800..0xDC00).contains(&units[end - 1]) {
            end -= 1;
        }
        parts.push(to_bytes(&units[start..end]));
        start = end;
    }
    (DC_UCS2, parts)
}

/// True if the slice ends with an escape that starts a pair (not the second half of one).
fn is_dangling_escape(septets: &[u8]) -> bool {
    let trailing = septets.iter().rev().take_while(|&&b| b == ESCAPE).count();
    trailing % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_round_trips_basic_and_extension_characters() {
        let text = "Hello {World} €5 @home";
        let septets = gsm7_encode(text).unwrap();
        assert_eq!(septets.len(), text.chars().count() + 3);
        assert_eq!(gsm7_decode(&septets), text);
    }

    #[test]
    fn text_outside_gsm7_is_encoded_as_ucs2() {
        assert!(gsm7_encode("hi 😀").is_none());
        let (dc, parts) = encode_and_split("hi 😀");
        assert_eq!(dc, DC_UCS2);
        assert_eq!(ucs2_decode(&parts[0]), "hi 😀");
    }

    #[test]
    fn long_gsm7_text_splits_into_153_septet_parts_without_cutting_an_escape() {
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(100));
        let (dc, parts) = encode_and_split(&text);
        assert_eq!(dc, DC_GSM7);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 152);
        let joined: Vec<u8> = parts.concat();
        assert_eq!(gsm7_decode(&joined), text);
    }

    #[test]
    fn long_ucs2_text_splits_without_cutting_a_surrogate_pair() {
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let (dc, parts) = encode_and_split(&text);
        assert_eq!(dc, DC_UCS2);
        assert_eq!(parts[0].len(), 66 * 2);
        let joined: Vec<u8> = parts.concat();
        assert_eq!(ucs2_decode(&joined), text);
    }

    #[test]
    fn receipt_preview_keeps_20_printable_ascii_characters() {
        let gsm = gsm7_encode("Hello, World! This is long").unwrap();
        assert_eq!(ascii_preview(DC_GSM7, &gsm, 20), "Hello, World! This i");
        assert_eq!(
            ascii_preview(DC_GSM7, &gsm7_encode("héllo\n€").unwrap(), 20),
            "h?llo??"
        );
        assert_eq!(ascii_preview(DC_UCS2, &ucs2_encode("ok 👍"), 20), "ok ?");
        assert_eq!(ascii_preview(DC_GSM7, &[], 20), "");
    }

    #[test]
    fn short_message_decoding_skips_the_udh() {
        let mut body = concat_udh(7, 2, 1).to_vec();
        body.extend(gsm7_encode("part one").unwrap());
        assert_eq!(decode_short_message(DC_GSM7, true, &body), "part one");
        assert_eq!(strip_udh(&[9]), &[] as &[u8]);
    }
}
