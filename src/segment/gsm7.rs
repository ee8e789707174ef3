//! GSM 7-bit alphabets (3GPP TS 23.038 §6.2.1 and annex A) and septet packing.
//!
//! Each alphabet is a decode table (septet -> char) from which the reverse lookup is built at
//! compile time, so the tables are written once, in spec order, and cannot drift apart.

use super::{NationalLanguage, NationalShift};

/// The escape septet that switches to the single shift (extension) table for one character.
pub(crate) const ESC: u8 = 0x1B;
/// Carriage return: also the padding septet for packed messages ending with 7 spare bits.
pub(crate) const CR: u8 = 0x0D;

/// One 128-entry GSM 7-bit table (a locking shift table or a single shift table).
pub(crate) struct Table {
    decode: [Option<char>; 128],
    /// Reverse lookup for ASCII, the hot path: `ABSENT` when the table lacks the character.
    ascii: [u8; 128],
    /// Reverse lookup for the non-ASCII characters, sorted by code point for binary search.
    other: [(u32, u8); 128],
    other_len: usize,
    /// Bit `n` set when some non-ASCII character of the table lies in U+n*128..U+n*128+127
    /// (below U+4000): rejects Cyrillic, CJK or emoji without a search.
    blocks: u128,
}

const ABSENT: u8 = 0xFF;

impl Table {
    /// Builds a locking shift table from all 128 entries; position 0x1B is the escape.
    const fn locking(chars: [char; 128]) -> Table {
        let mut decode = [None; 128];
        let mut i = 0;
        while i < 128 {
            if i != ESC as usize {
                decode[i] = Some(chars[i]);
            }
            i += 1;
        }
        Table::finish(decode)
    }

    /// Builds a single shift table from its few defined entries.
    const fn single(entries: &[(u8, char)]) -> Table {
        let mut decode = [None; 128];
        let mut i = 0;
        while i < entries.len() {
            decode[entries[i].0 as usize] = Some(entries[i].1);
            i += 1;
        }
        Table::finish(decode)
    }

    const fn finish(decode: [Option<char>; 128]) -> Table {
        let mut ascii = [ABSENT; 128];
        let mut other = [(0u32, 0u8); 128];
        let mut other_len = 0;
        let mut blocks = 0u128;
        let mut code = 0;
        while code < 128 {
            if let Some(c) = decode[code] {
                let cp = c as u32;
                if cp < 128 {
                    if ascii[cp as usize] == ABSENT {
                        ascii[cp as usize] = code as u8;
                    }
                } else {
                    other[other_len] = (cp, code as u8);
                    other_len += 1;
                    assert!(cp < 0x4000, "block filter covers U+0000..U+3FFF");
                    blocks |= 1 << (cp >> 7);
                }
            }
            code += 1;
        }
        // Insertion sort: const fn cannot call slice::sort, and n <= 128 at compile time.
        let mut i = 1;
        while i < other_len {
            let mut j = i;
            while j > 0 && other[j - 1].0 > other[j].0 {
                let t = other[j - 1];
                other[j - 1] = other[j];
                other[j] = t;
                j -= 1;
            }
            i += 1;
        }
        Table {
            decode,
            ascii,
            other,
            other_len,
            blocks,
        }
    }

    /// The septet for `c`, if this table has it.
    #[inline]
    pub(crate) fn encode(&self, c: char) -> Option<u8> {
        let cp = c as u32;
        if cp < 128 {
            let code = self.ascii[cp as usize];
            return (code != ABSENT).then_some(code);
        }
        if cp >= 0x4000 || self.blocks & (1 << (cp >> 7)) == 0 {
            return None;
        }
        let other = &self.other[..self.other_len];
        other
            .binary_search_by_key(&cp, |&(k, _)| k)
            .ok()
            .map(|i| other[i].1)
    }

    #[inline]
    pub(crate) fn decode(&self, septet: u8) -> Option<char> {
        self.decode[(septet & 0x7F) as usize]
    }
}

#[rustfmt::skip]
pub(crate) static DEFAULT_LOCKING: Table = Table::locking([
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\x1B', 'Æ', 'æ', 'ß', 'É',
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
]);

/// The default extension table (§6.2.1.1). 0x0D (CR2) and 0x1B (SS2) are reserved.
pub(crate) static DEFAULT_SINGLE: Table = Table::single(&[
    (0x0A, '\x0C'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
]);

/// Septets per byte of an ASCII text in the default alphabet (0 = not representable): the hot
/// path of planning. 256 entries so a byte indexes it without a bounds check.
pub(crate) static DEFAULT_ASCII_SEPTETS: [u8; 256] = {
    let mut costs = [0u8; 256];
    let mut c = 0;
    while c < 128 {
        costs[c] = if DEFAULT_LOCKING.ascii[c] != ABSENT {
            1
        } else if DEFAULT_SINGLE.ascii[c] != ABSENT {
            2
        } else {
            0
        };
        c += 1;
    }
    costs
};

/// A.3.1 Turkish locking shift table.
#[rustfmt::skip]
pub(crate) static TURKISH_LOCKING: Table = Table::locking([
    '@', '£', '$', '¥', '€', 'é', 'ù', 'ı', 'ò', 'Ç', '\n', 'Ğ', 'ğ', '\r', 'Å', 'å',
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\x1B', 'Ş', 'ş', 'ß', 'É',
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    'İ', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    'ç', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
]);

/// A.2.1 Turkish single shift table.
pub(crate) static TURKISH_SINGLE: Table = Table::single(&[
    (0x0A, '\x0C'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x47, 'Ğ'),
    (0x49, 'İ'),
    (0x53, 'Ş'),
    (0x63, 'ç'),
    (0x65, '€'),
    (0x67, 'ğ'),
    (0x69, 'ı'),
    (0x73, 'ş'),
]);

/// A.2.2 Spanish single shift table (Spanish has no locking shift table of its own).
pub(crate) static SPANISH_SINGLE: Table = Table::single(&[
    (0x09, 'ç'),
    (0x0A, '\x0C'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x41, 'Á'),
    (0x49, 'Í'),
    (0x4F, 'Ó'),
    (0x55, 'Ú'),
    (0x61, 'á'),
    (0x65, '€'),
    (0x69, 'í'),
    (0x6F, 'ó'),
    (0x75, 'ú'),
]);

/// A.3.3 Portuguese locking shift table.
#[rustfmt::skip]
pub(crate) static PORTUGUESE_LOCKING: Table = Table::locking([
    '@', '£', '$', '¥', 'ê', 'é', 'ú', 'í', 'ó', 'ç', '\n', 'Ô', 'ô', '\r', 'Á', 'á',
    'Δ', '_', 'ª', 'Ç', 'À', '∞', '^', '\\', '€', 'Ó', '|', '\x1B', 'Â', 'â', 'Ê', 'É',
    ' ', '!', '"', '#', 'º', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    'Í', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ã', 'Õ', 'Ú', 'Ü', '§',
    '~', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ã', 'õ', '`', 'ü', 'à',
]);

/// A.2.3 Portuguese single shift table.
pub(crate) static PORTUGUESE_SINGLE: Table = Table::single(&[
    (0x05, 'ê'),
    (0x09, 'ç'),
    (0x0A, '\x0C'),
    (0x0B, 'Ô'),
    (0x0C, 'ô'),
    (0x0E, 'Á'),
    (0x0F, 'á'),
    (0x12, 'Φ'),
    (0x13, 'Γ'),
    (0x14, '^'),
    (0x15, 'Ω'),
    (0x16, 'Π'),
    (0x17, 'Ψ'),
    (0x18, 'Σ'),
    (0x19, 'Θ'),
    (0x1F, 'Ê'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x41, 'À'),
    (0x49, 'Í'),
    (0x4F, 'Ó'),
    (0x55, 'Ú'),
    (0x5B, 'Ã'),
    (0x5C, 'Õ'),
    (0x61, 'Â'),
    (0x65, '€'),
    (0x69, 'í'),
    (0x6F, 'ó'),
    (0x75, 'ú'),
    (0x7B, 'ã'),
    (0x7C, 'õ'),
    (0x7F, 'â'),
]);

impl NationalLanguage {
    /// The locking shift table, if the language has one (Spanish does not).
    pub(crate) fn locking_table(self) -> Option<&'static Table> {
        match self {
            NationalLanguage::Turkish => Some(&TURKISH_LOCKING),
            NationalLanguage::Spanish => None,
            NationalLanguage::Portuguese => Some(&PORTUGUESE_LOCKING),
        }
    }

    pub(crate) fn single_table(self) -> &'static Table {
        match self {
            NationalLanguage::Turkish => &TURKISH_SINGLE,
            NationalLanguage::Spanish => &SPANISH_SINGLE,
            NationalLanguage::Portuguese => &PORTUGUESE_SINGLE,
        }
    }
}

/// A pair of tables in effect: the locking shift table and the single shift table behind ESC.
#[derive(Clone, Copy)]
pub(crate) struct Charset {
    pub(crate) locking: &'static Table,
    pub(crate) single: &'static Table,
    /// Both tables merged for ASCII, so the common character costs one lookup.
    ascii: &'static [Option<Code>; 128],
    /// Per byte: the septet of an ASCII character that is plain here, else `ABSENT`.
    plain: &'static [u8; 256],
}

/// How one character is written: one septet, or ESC plus one septet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    Plain(u8),
    Escaped(u8),
}

impl Code {
    #[inline]
    pub(crate) fn septets(self) -> usize {
        match self {
            Code::Plain(_) => 1,
            Code::Escaped(_) => 2,
        }
    }
}

/// Locking tables by index: default, Turkish, Portuguese.
const LOCKINGS: [&Table; 3] = [&DEFAULT_LOCKING, &TURKISH_LOCKING, &PORTUGUESE_LOCKING];
/// Single shift tables by index: default, Turkish, Spanish, Portuguese.
const SINGLES: [&Table; 4] = [
    &DEFAULT_SINGLE,
    &TURKISH_SINGLE,
    &SPANISH_SINGLE,
    &PORTUGUESE_SINGLE,
];

/// Merged ASCII lookups for every (locking, single) pair, built at compile time.
static ASCII_CODES: [[[Option<Code>; 128]; 4]; 3] = {
    let mut all = [[[None; 128]; 4]; 3];
    let mut l = 0;
    while l < LOCKINGS.len() {
        let mut s = 0;
        while s < SINGLES.len() {
            let mut c = 0;
            while c < 128 {
                all[l][s][c] = if LOCKINGS[l].ascii[c] != ABSENT {
                    Some(Code::Plain(LOCKINGS[l].ascii[c]))
                } else if SINGLES[s].ascii[c] != ABSENT {
                    Some(Code::Escaped(SINGLES[s].ascii[c]))
                } else {
                    None
                };
                c += 1;
            }
            s += 1;
        }
        l += 1;
    }
    all
};

/// The plain (one-septet) part of [`ASCII_CODES`], indexable by any byte.
static PLAIN_ASCII: [[[u8; 256]; 4]; 3] = {
    let mut all = [[[ABSENT; 256]; 4]; 3];
    let mut l = 0;
    while l < LOCKINGS.len() {
        let mut s = 0;
        while s < SINGLES.len() {
            let mut c = 0;
            while c < 128 {
                if let Some(Code::Plain(septet)) = ASCII_CODES[l][s][c] {
                    all[l][s][c] = septet;
                }
                c += 1;
            }
            s += 1;
        }
        l += 1;
    }
    all
};

fn locking_index(language: NationalLanguage) -> usize {
    match language {
        NationalLanguage::Turkish => 1,
        // No Spanish locking table: the default alphabet stays in force.
        NationalLanguage::Spanish => 0,
        NationalLanguage::Portuguese => 2,
    }
}

fn single_index(language: NationalLanguage) -> usize {
    match language {
        NationalLanguage::Turkish => 1,
        NationalLanguage::Spanish => 2,
        NationalLanguage::Portuguese => 3,
    }
}

impl Charset {
    pub(crate) const DEFAULT: Charset = Charset::new(0, 0);

    const fn new(locking: usize, single: usize) -> Charset {
        Charset {
            locking: LOCKINGS[locking],
            single: SINGLES[single],
            ascii: &ASCII_CODES[locking][single],
            plain: &PLAIN_ASCII[locking][single],
        }
    }

    /// The tables a sender uses for `shift`.
    pub(crate) fn for_shift(shift: Option<NationalShift>) -> Charset {
        let Some(shift) = shift else {
            return Charset::DEFAULT;
        };
        let locking = if shift.locking {
            locking_index(shift.language)
        } else {
            0
        };
        let single = if shift.single {
            single_index(shift.language)
        } else {
            0
        };
        Charset::new(locking, single)
    }

    /// The charset a receiver uses given the raw language ids of the shift IEs (unknown ids
    /// fall back to the default tables, as TS 23.038 asks of receivers).
    pub(crate) fn from_ids(single: Option<u8>, locking: Option<u8>) -> Charset {
        let single = single
            .and_then(NationalLanguage::from_id)
            .map_or(0, single_index);
        let locking = locking
            .and_then(NationalLanguage::from_id)
            .map_or(0, locking_index);
        Charset::new(locking, single)
    }

    /// Prefers the locking table: a character found there costs one septet instead of two.
    #[inline]
    pub(crate) fn encode(&self, c: char) -> Option<Code> {
        if c.is_ascii() {
            return self.ascii[c as usize];
        }
        self.encode_non_ascii(c)
    }

    /// Appends the septets of the leading run of `bytes` whose characters are ASCII and one
    /// septet each here, and returns the run's length. The hot loop of GSM-7 encoding.
    #[inline]
    pub(crate) fn push_plain_ascii_run(&self, bytes: &[u8], out: &mut Vec<u8>) -> usize {
        // Staged through a stack buffer so the loop stores bytes without growing `out`.
        let mut buf = [0u8; 64];
        let mut done = 0;
        for chunk in bytes.chunks(buf.len()) {
            let mut n = 0;
            for (slot, &b) in buf.iter_mut().zip(chunk) {
                let septet = self.plain[usize::from(b)];
                if septet == ABSENT {
                    break;
                }
                *slot = septet;
                n += 1;
            }
            out.extend_from_slice(&buf[..n]);
            done += n;
            if n < chunk.len() {
                break;
            }
        }
        done
    }

    #[inline]
    fn encode_non_ascii(&self, c: char) -> Option<Code> {
        if let Some(code) = self.locking.encode(c) {
            return Some(Code::Plain(code));
        }
        self.single.encode(c).map(Code::Escaped)
    }

    /// Appends the text of `septets` (one per item) to `out`; an item above 0x7F is not a
    /// septet and becomes U+FFFD.
    pub(crate) fn decode_into(&self, septets: impl IntoIterator<Item = u8>, out: &mut String) {
        let mut escaped = false;
        for s in septets {
            if s > 0x7F {
                escaped = false;
                out.push(char::REPLACEMENT_CHARACTER);
            } else if escaped {
                escaped = false;
                // TS 23.038 6.2.1.1: ESC ESC is reserved and shown as a space; a code missing
                // from the single shift table is shown from the locking table.
                let c = if s == ESC {
                    ' '
                } else {
                    self.single
                        .decode(s)
                        .or_else(|| self.locking.decode(s))
                        .unwrap_or(' ')
                };
                out.push(c);
            } else if s == ESC {
                escaped = true;
            } else {
                // Every locking position except ESC is defined.
                out.push(self.locking.decode(s).unwrap_or(' '));
            }
        }
        if escaped {
            // A dangling escape carries no character; a space keeps the reader's count right.
            out.push(' ');
        }
    }
}

/// Fill bits that align the first septet after a UDH of `udh_len` octets (TS 23.040 9.2.3.24).
#[inline]
pub(crate) fn fill_bits(udh_len: usize) -> usize {
    (7 - (udh_len * 8) % 7) % 7
}

/// Septets that fit in 140 octets after a UDH of `udh_len` octets (0 = no UDH).
#[inline]
pub(crate) fn septet_capacity(udh_len: usize) -> usize {
    (140 * 8 - (udh_len * 8).div_ceil(7) * 7) / 7
}

/// Packs septets LSB first after `fill` zero bits, appending to `out`.
///
/// When exactly 7 bits would be left spare in the last octet, a CR septet fills them: SMPP
/// carries a length in octets, so a receiver would otherwise read an extra '@' (TS 23.038 6.1.2.3.1).
pub(crate) fn pack_into(septets: &[u8], fill: usize, out: &mut Vec<u8>) {
    let bits = fill + septets.len() * 7;
    let pad = (bits % 8 == 1).then_some(&CR);
    out.reserve(bits.div_ceil(8));
    // Bits not yet written, LSB first; never more than 14 of them.
    let mut acc: u32 = 0;
    let mut pending = fill;
    for &septet in septets.iter().chain(pad) {
        acc |= u32::from(septet & 0x7F) << pending;
        pending += 7;
        if pending >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            pending -= 8;
        }
    }
    if pending > 0 {
        out.push(acc as u8);
    }
}

/// Unpacks septets stored after `fill` bits. Drops a trailing CR that sits exactly in the
/// padding position (see [`pack_into`]).
pub(crate) fn unpack(data: &[u8], fill: usize) -> Vec<u8> {
    let bits = (data.len() * 8).saturating_sub(fill);
    let mut out = Vec::with_capacity(bits / 7);
    let mut acc: u32 = 0;
    let mut have = 0;
    let mut skip = fill;
    for &byte in data {
        acc |= u32::from(byte) << have;
        have += 8;
        if skip > 0 {
            // Fill bits precede the first septet; at most 6 of them.
            let n = skip.min(have);
            acc >>= n;
            have -= n;
            skip -= n;
        }
        while have >= 7 {
            out.push((acc & 0x7F) as u8);
            acc >>= 7;
            have -= 7;
        }
    }
    if bits.is_multiple_of(7) && out.last() == Some(&CR) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_locking_table_round_trips_each_of_its_characters() {
        for table in [&DEFAULT_LOCKING, &TURKISH_LOCKING, &PORTUGUESE_LOCKING] {
            for code in 0u8..128 {
                if code == ESC {
                    assert_eq!(table.decode(code), None);
                    continue;
                }
                let c = table.decode(code).expect("locking tables are full");
                assert_eq!(table.encode(c), Some(code), "{c:?}");
            }
        }
    }

    #[test]
    fn every_single_shift_table_round_trips_each_of_its_characters() {
        for table in [
            &DEFAULT_SINGLE,
            &TURKISH_SINGLE,
            &SPANISH_SINGLE,
            &PORTUGUESE_SINGLE,
        ] {
            for code in 0u8..128 {
                if let Some(c) = table.decode(code) {
                    assert_eq!(table.encode(c), Some(code), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn merged_ascii_lookups_agree_with_the_two_tables() {
        for l in 0..LOCKINGS.len() {
            for s in 0..SINGLES.len() {
                let charset = Charset::new(l, s);
                for c in (0u8..128).map(char::from) {
                    let slow = charset
                        .locking
                        .encode(c)
                        .map(Code::Plain)
                        .or_else(|| charset.single.encode(c).map(Code::Escaped));
                    assert_eq!(charset.encode(c), slow, "{l} {s} {c:?}");
                }
            }
        }
    }

    #[test]
    fn default_alphabet_has_the_well_known_positions() {
        let d = Charset::DEFAULT;
        assert_eq!(d.encode('@'), Some(Code::Plain(0x00)));
        assert_eq!(d.encode('A'), Some(Code::Plain(0x41)));
        assert_eq!(d.encode('€'), Some(Code::Escaped(0x65)));
        assert_eq!(d.encode('{'), Some(Code::Escaped(0x28)));
        assert_eq!(d.encode('\x1B'), None);
        assert_eq!(d.encode('ç'), None);
        assert_eq!(d.encode('`'), None);
    }

    #[test]
    fn capacities_match_the_well_known_part_sizes() {
        assert_eq!(septet_capacity(0), 160);
        assert_eq!(septet_capacity(6), 153);
        assert_eq!(septet_capacity(7), 152);
        assert_eq!(septet_capacity(4), 155);
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(7), 0);
        assert_eq!(fill_bits(0), 0);
    }

    #[test]
    fn packing_hello_gives_the_textbook_octets() {
        let mut out = Vec::new();
        pack_into(b"hellohello", 0, &mut out);
        assert_eq!(out, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(unpack(&out, 0), b"hellohello");
    }

    #[test]
    fn seven_septets_are_padded_with_cr_and_unpack_without_it() {
        let mut out = Vec::new();
        pack_into(&[0, 0, 0, 0, 0, 0, 0], 0, &mut out);
        assert_eq!(out.len(), 7);
        assert_eq!(out[6] >> 1, CR);
        assert_eq!(unpack(&out, 0), [0u8; 7]);
    }
}
