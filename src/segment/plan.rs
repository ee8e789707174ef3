//! Encoding choice and part layout: which alphabet carries the text in the fewest parts, and how
//! many units go in each part. No bytes are produced here, so the estimate API stays cheap.

use super::gsm7::{Charset, Code, DEFAULT_ASCII_SEPTETS, septet_capacity};
use super::smart;
use super::udh::udh_len;
use super::{Concat, Encoding, NationalLanguage, NationalShift, Options, Plan, SegmentError};

/// The largest value of the `message_payload` TLV (its length field is 16 bits).
pub(crate) const PAYLOAD_MAX_OCTETS: usize = 65_535;
/// Concatenation IEs and SAR TLVs count parts in one octet.
const MAX_PARTS_ON_AIR: usize = 255;

/// An alphabet candidate: an encoding, plus national shift tables for GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scheme {
    encoding: Encoding,
    shift: Option<NationalShift>,
}

const GSM7_DEFAULT: Scheme = Scheme {
    encoding: Encoding::Gsm7,
    shift: None,
};

/// Units per part: `single` for a one-part message, `multi` when concatenated (`None` when the
/// scheme cannot be concatenated with this [`Concat`]).
#[derive(Debug, Clone, Copy)]
struct Caps {
    single: usize,
    multi: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Choice {
    scheme: Scheme,
    parts: usize,
    /// Units of the whole text.
    total: usize,
    /// Characters of the whole text: when equal to `total`, every character costs one unit and
    /// the layout is arithmetic.
    chars: usize,
    caps: Caps,
}

fn capacity(encoding: Encoding, udh: usize) -> usize {
    match encoding {
        Encoding::Gsm7 => septet_capacity(udh),
        Encoding::Latin1 => 140 - udh,
        Encoding::Ucs2 => (140 - udh) / 2,
    }
}

fn caps(scheme: Scheme, concat: Concat) -> Caps {
    let single = capacity(scheme.encoding, udh_len(None, scheme.shift));
    // Shift IEs need a UDH we build ourselves; with SAR or payload the SMSC builds the
    // concatenation UDH and could not be trusted to keep them, so those stay single-part.
    let multi_allowed = scheme.shift.is_none() || matches!(concat, Concat::Udh8 | Concat::Udh16);
    let multi =
        multi_allowed.then(|| capacity(scheme.encoding, udh_len(Some(concat), scheme.shift)));
    Caps { single, multi }
}

/// Greedy split of `text` in the scheme's units (the scheme is known to carry the text).
fn split_text(text: &str, scheme: Scheme, cap: usize, sizes: Option<&mut Vec<usize>>) -> usize {
    match scheme.encoding {
        Encoding::Gsm7 => {
            let charset = Charset::for_shift(scheme.shift);
            let costs = text
                .chars()
                .map(|c| charset.encode(c).map_or(1, Code::septets));
            split(costs, cap, sizes)
        }
        // UTF-16 units straight from the UTF-8 lead bytes: 4-byte sequences are surrogate pairs.
        Encoding::Ucs2 => {
            let leads = text.bytes().filter(|b| b & 0xC0 != 0x80);
            split(leads.map(|b| if b >= 0xF0 { 2 } else { 1 }), cap, sizes)
        }
        Encoding::Latin1 => split(text.chars().map(|_| 1), cap, sizes),
    }
}

/// Greedy split: a character (an escape pair, a surrogate pair) never straddles two parts.
/// Greedy is optimal here since every part has the same capacity.
fn split(
    costs: impl Iterator<Item = usize>,
    cap: usize,
    mut sizes: Option<&mut Vec<usize>>,
) -> usize {
    let mut parts = 1;
    let mut used = 0;
    for cost in costs {
        if used + cost > cap {
            if let Some(sizes) = sizes.as_deref_mut() {
                sizes.push(used);
            }
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    if let Some(sizes) = sizes {
        sizes.push(used);
    }
    parts
}

fn count_parts(
    text: &str,
    scheme: Scheme,
    total: usize,
    chars: usize,
    caps: Caps,
) -> Option<usize> {
    if total <= caps.single {
        return Some(1);
    }
    let multi = caps.multi?;
    Some(if total == chars {
        total.div_ceil(multi)
    } else {
        split_text(text, scheme, multi, None)
    })
}

/// Septets of `text` in `charset`, or `None` when a character is missing from it.
fn gsm7_total(text: &str, charset: &Charset) -> Option<usize> {
    text.chars()
        .try_fold(0, |total, c| Some(total + charset.encode(c)?.septets()))
}

/// National shift candidates in order of preference on equal part counts: fewer IEs first, and a
/// single shift before a locking shift (a handset without the table misreads only the escaped
/// characters instead of every one).
fn national_candidates(langs: &[NationalLanguage]) -> impl Iterator<Item = NationalShift> + '_ {
    let with = |single: bool, locking: bool| {
        move |&language: &NationalLanguage| NationalShift {
            language,
            single,
            locking,
        }
    };
    let has_locking = |l: &&NationalLanguage| l.locking_table().is_some();
    let singles = langs.iter().map(with(true, false));
    let lockings = langs.iter().filter(has_locking).map(with(false, true));
    let both = langs.iter().filter(has_locking).map(with(true, true));
    singles.chain(lockings).chain(both)
}

/// Keeps the candidate if it needs strictly fewer parts: earlier candidates win ties.
fn consider(
    best: &mut Option<Choice>,
    text: &str,
    scheme: Scheme,
    (total, chars): (usize, usize),
    concat: Concat,
) {
    let caps = caps(scheme, concat);
    let Some(parts) = count_parts(text, scheme, total, chars, caps) else {
        return;
    };
    if best.is_none_or(|b| parts < b.parts) {
        *best = Some(Choice {
            scheme,
            parts,
            total,
            chars,
            caps,
        });
    }
}

fn one_part(best: &Option<Choice>) -> bool {
    best.is_some_and(|b| b.parts == 1)
}

/// What the first look at a text tells: its septets in the default alphabet (if it fits), its
/// UTF-16 units and characters, and whether it fits Latin-1.
struct Stats {
    gsm7: Option<usize>,
    utf16: usize,
    chars: usize,
    latin1: bool,
}

fn stats(text: &str) -> Stats {
    // Most texts are plain ASCII: a table lookup per byte, no UTF-8 decoding, no branches.
    if text.is_ascii() {
        let mut septets = 0usize;
        let mut missing = false;
        for &b in text.as_bytes() {
            let cost = DEFAULT_ASCII_SEPTETS[usize::from(b)];
            missing |= cost == 0;
            septets += usize::from(cost);
        }
        return Stats {
            gsm7: (!missing).then_some(septets),
            utf16: text.len(),
            chars: text.len(),
            latin1: true,
        };
    }
    let mut stats = Stats {
        gsm7: Some(0),
        utf16: 0,
        chars: 0,
        latin1: true,
    };
    for c in text.chars() {
        stats.chars += 1;
        stats.utf16 += c.len_utf16();
        stats.latin1 &= u32::from(c) <= 0xFF;
        if let Some(total) = stats.gsm7 {
            stats.gsm7 = Charset::DEFAULT
                .encode(c)
                .map(|code| total + code.septets());
        }
    }
    stats
}

/// The cheapest scheme for `text`: fewest parts, then GSM-7 default, GSM-7 with national shift
/// tables, Latin-1, UCS-2 in that order.
fn choose(text: &str, opts: &Options) -> Choice {
    let Stats {
        gsm7,
        utf16,
        chars,
        latin1,
    } = stats(text);
    let mut best = None;
    if let Some(total) = gsm7 {
        consider(&mut best, text, GSM7_DEFAULT, (total, chars), opts.concat);
    }
    if !one_part(&best) && opts.concat != Concat::Payload {
        for shift in national_candidates(&opts.national) {
            let scheme = Scheme {
                encoding: Encoding::Gsm7,
                shift: Some(shift),
            };
            if let Some(total) = gsm7_total(text, &Charset::for_shift(Some(shift))) {
                consider(&mut best, text, scheme, (total, chars), opts.concat);
                if one_part(&best) {
                    break;
                }
            }
        }
    }
    if !one_part(&best) && opts.latin1 && latin1 {
        let scheme = Scheme {
            encoding: Encoding::Latin1,
            shift: None,
        };
        consider(&mut best, text, scheme, (chars, chars), opts.concat);
    }
    if !one_part(&best) {
        let scheme = Scheme {
            encoding: Encoding::Ucs2,
            shift: None,
        };
        consider(&mut best, text, scheme, (utf16, chars), opts.concat);
    }
    // UCS-2 always has a multi-part capacity, so `best` is set by now.
    best.unwrap_or(Choice {
        scheme: GSM7_DEFAULT,
        parts: 1,
        total: 0,
        chars: 0,
        caps: caps(GSM7_DEFAULT, opts.concat),
    })
}

/// Smart replacement is worth it when it saves parts, or avoids UCS-2 at no extra part.
fn replacement_wins(original: &Choice, replaced: &Choice) -> bool {
    replaced.parts < original.parts
        || (original.scheme.encoding == Encoding::Ucs2
            && replaced.scheme.encoding != Encoding::Ucs2
            && replaced.parts <= original.parts)
}

/// See [`Plan::forcing_ucs2`].
fn forcing_ucs2(text: &str, opts: &Options) -> Vec<char> {
    // Distinct characters outside the default alphabet in order of first appearance, deduplicated
    // through a sorted set so long texts in another script stay linear-ish.
    let mut seen: Vec<char> = Vec::new();
    let mut outside_default = Vec::new();
    for c in text.chars() {
        if Charset::DEFAULT.encode(c).is_some() {
            continue;
        }
        if let Err(at) = seen.binary_search(&c) {
            seen.insert(at, c);
            outside_default.push(c);
        }
    }
    let in_national = |c: char| {
        opts.concat != Concat::Payload
            && opts.national.iter().any(|l| {
                l.single_table().encode(c).is_some()
                    || l.locking_table().is_some_and(|t| t.encode(c).is_some())
            })
    };
    let carried_elsewhere = |c: char| (opts.latin1 && u32::from(c) <= 0xFF) || in_national(c);
    let forcing: Vec<char> = outside_default
        .iter()
        .copied()
        .filter(|&c| !carried_elsewhere(c))
        .collect();
    if forcing.is_empty() {
        outside_default
    } else {
        forcing
    }
}

fn payload_octets(encoding: Encoding, total: usize, packed: bool) -> usize {
    match encoding {
        Encoding::Gsm7 if packed => (total * 7).div_ceil(8),
        Encoding::Gsm7 | Encoding::Latin1 => total,
        Encoding::Ucs2 => total * 2,
    }
}

/// Chooses the encoding and lays out the parts of `text`, without producing bytes.
///
/// Errors: [`SegmentError::Empty`], [`SegmentError::TooManyParts`] (with the count the cheapest
/// encoding needs), [`SegmentError::PayloadTooLong`].
pub fn plan(text: &str, opts: &Options) -> Result<Plan, SegmentError> {
    if text.is_empty() {
        return Err(SegmentError::Empty);
    }
    let mut choice = choose(text, opts);
    let mut replaced = None;
    if opts.smart_encoding
        && choice.scheme != GSM7_DEFAULT
        && let Some(candidate) = smart::replace(text)
        && !candidate.is_empty()
    {
        let alternative = choose(&candidate, opts);
        if replacement_wins(&choice, &alternative) {
            choice = alternative;
            replaced = Some(candidate);
        }
    }

    let max = opts.max_parts.min(MAX_PARTS_ON_AIR);
    if choice.parts > max {
        return Err(SegmentError::TooManyParts {
            parts: choice.parts,
            max,
        });
    }
    if opts.concat == Concat::Payload {
        let octets = payload_octets(choice.scheme.encoding, choice.total, opts.gsm7_packed);
        if octets > PAYLOAD_MAX_OCTETS {
            return Err(SegmentError::PayloadTooLong {
                octets,
                max: PAYLOAD_MAX_OCTETS,
            });
        }
    }

    let was_replaced = replaced.is_some();
    let text = replaced.unwrap_or_else(|| text.to_owned());
    let (units_per_part, units_per_part_max) = match choice.caps.multi {
        Some(multi) if choice.parts > 1 && choice.total == choice.chars => {
            let mut sizes = vec![multi; choice.parts];
            sizes[choice.parts - 1] = choice.total - multi * (choice.parts - 1);
            (sizes, multi)
        }
        Some(multi) if choice.parts > 1 => {
            let mut sizes = Vec::with_capacity(choice.parts);
            split_text(&text, choice.scheme, multi, Some(&mut sizes));
            (sizes, multi)
        }
        _ => (vec![choice.total], choice.caps.single),
    };
    let forcing_ucs2 = if choice.scheme.encoding == Encoding::Ucs2 {
        forcing_ucs2(&text, opts)
    } else {
        Vec::new()
    };
    Ok(Plan {
        encoding: choice.scheme.encoding,
        national: choice.scheme.shift,
        parts: choice.parts,
        units_per_part,
        units_per_part_max,
        forcing_ucs2,
        replaced: was_replaced,
        text,
    })
}
