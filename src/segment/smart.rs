//! Look-alike replacement ("smart encoding"): characters that word processors and phones insert
//! (curly quotes, dashes, odd spaces...) and that would force a whole message into UCS-2 for no
//! visible gain. The planner applies it only when it avoids UCS-2 or saves parts.

/// Appends the GSM-7 look-alike of `c` to `out`; false when `c` has none.
///
/// Every replacement is in the GSM-7 default alphabet (tested), so replacing never makes a
/// text less encodable.
fn push_lookalike(c: char, out: &mut String) -> bool {
    let s = match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{2035}'
        | '\u{02B9}' | '\u{02BC}' | '\u{02C8}' | '\u{00B4}' | '\u{FF07}' => "'",
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{2036}'
        | '\u{02BA}' | '\u{00AB}' | '\u{00BB}' | '\u{FF02}' => "\"",
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' | '\u{2043}' | '\u{FE58}' | '\u{2022}' | '\u{00B7}' => "-",
        '\u{2026}' => "...",
        '\u{2024}' => ".",
        '\u{2044}' | '\u{2215}' => "/",
        '\u{02C6}' => "^",
        '\u{02DC}' => "~",
        '\t' | '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => " ",
        '\u{2028}' | '\u{2029}' => "\n",
        // Invisible characters that only force UCS-2.
        '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => "",
        // Full-width ASCII forms map to ASCII by a fixed offset (not U+FF40: '`' is not GSM-7).
        '\u{FF01}'..='\u{FF3F}' | '\u{FF41}'..='\u{FF5E}' => {
            if let Some(ascii) = char::from_u32(c as u32 - 0xFEE0) {
                out.push(ascii);
                return true;
            }
            return false;
        }
        _ => return false,
    };
    out.push_str(s);
    true
}

/// The text with look-alikes replaced, or `None` when it has none.
pub(crate) fn replace(text: &str) -> Option<String> {
    let mut chars = text.char_indices();
    let first = loop {
        let (i, c) = chars.next()?;
        let mut probe = String::new();
        if push_lookalike(c, &mut probe) {
            break i;
        }
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !push_lookalike(c, &mut out) {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::gsm7::Charset;
    use super::*;

    #[test]
    fn every_replacement_is_in_the_gsm7_default_alphabet() {
        for cp in 0..=0xFFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let mut out = String::new();
            if push_lookalike(c, &mut out) {
                assert!(
                    Charset::DEFAULT.encode(c).is_none(),
                    "{c:?} is already GSM-7"
                );
                for r in out.chars() {
                    assert!(Charset::DEFAULT.encode(r).is_some(), "{c:?} -> {r:?}");
                }
            }
        }
    }

    #[test]
    fn text_without_lookalikes_is_left_alone() {
        assert_eq!(replace("plain 'text' - ok"), None);
        assert_eq!(replace(""), None);
    }

    #[test]
    fn curly_quotes_dashes_and_ellipsis_are_replaced() {
        assert_eq!(
            replace("\u{201C}Hi\u{201D} \u{2014} it\u{2019}s\u{2026}\u{00A0}ok").as_deref(),
            Some("\"Hi\" - it's... ok")
        );
    }
}
