//! Part bytes: UDH plus encoded payload for each `submit_sm`, following a [`Plan`].

use super::gsm7::{self, Charset, Code};
use super::plan::plan;
use super::udh::{ConcatIe, udh_len, write_udh};
use super::{Concat, Encoding, Options, Part, Plan, Sar, SegmentError, Segmented};

/// Plans `text` and encodes its parts.
///
/// `reference` is the concatenation reference; the caller rotates it per destination so parts
/// of different messages are never mixed up. [`Concat::Udh8`] uses its low byte.
pub fn segment(text: &str, opts: &Options, reference: u16) -> Result<Segmented, SegmentError> {
    let plan = plan(text, opts)?;
    let parts = build_parts(&plan, opts, reference);
    Ok(Segmented {
        data_coding: plan.encoding.data_coding(),
        plan,
        parts,
    })
}

/// A GSM-7 code that the plan promised exists; the fallback only guards against a planner bug.
fn planned(code: Option<Code>) -> Code {
    match code {
        Some(code) => code,
        None if cfg!(debug_assertions) => unreachable!("plan chose a charset lacking a character"),
        None => Code::Plain(0x3F), // '?'
    }
}

fn build_parts(plan: &Plan, opts: &Options, reference: u16) -> Vec<Part> {
    if opts.concat == Concat::Payload {
        // At most two octets per unit (UCS-2); GSM-7 and Latin-1 take one.
        let mut short_message = Vec::with_capacity(plan.units_per_part.iter().sum::<usize>() * 2);
        let mut septets = Vec::with_capacity(if opts.gsm7_packed {
            plan.text.len() * 2
        } else {
            0
        });
        encode_units(
            plan,
            &mut Cursor::new(&plan.text),
            usize::MAX,
            &mut septets,
            &mut short_message,
            opts.gsm7_packed,
            0,
        );
        return vec![Part {
            short_message,
            udhi: false,
            sar: None,
            payload: true,
        }];
    }

    let total = plan.parts;
    // `plan` caps parts at 255, so the count fits the one-octet fields.
    let total_u8 = u8::try_from(total).unwrap_or(u8::MAX);
    let concat = (total > 1).then_some(opts.concat);
    let header_len = udh_len(
        concat.filter(|c| matches!(c, Concat::Udh8 | Concat::Udh16)),
        plan.national,
    );
    let mut chars = Cursor::new(&plan.text);
    let mut septets = Vec::with_capacity(if opts.gsm7_packed {
        plan.units_per_part_max
    } else {
        0
    });
    let mut parts = Vec::with_capacity(total);
    for (i, &units) in plan.units_per_part.iter().enumerate() {
        let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
        let mut short_message = Vec::with_capacity(header_len + units * 2);
        let concat_ie = match concat {
            Some(Concat::Udh8) | Some(Concat::Udh16) => Some(ConcatIe {
                sixteen_bit: concat == Some(Concat::Udh16),
                reference,
                total: total_u8,
                seq,
            }),
            _ => None,
        };
        write_udh(&mut short_message, concat_ie, plan.national);
        let udh = short_message.len();
        encode_units(
            plan,
            &mut chars,
            units,
            &mut septets,
            &mut short_message,
            opts.gsm7_packed,
            udh,
        );
        let sar = (concat == Some(Concat::Sar)).then_some(Sar {
            ref_num: reference,
            total: total_u8,
            seq,
        });
        parts.push(Part {
            short_message,
            udhi: udh > 0,
            sar,
            payload: false,
        });
    }
    parts
}

/// Encodes characters from `chars` worth `units` units (or all of them) and appends them to
/// `out`, which already holds a UDH of `udh` octets. `septets` is scratch for packing.
fn encode_units(
    plan: &Plan,
    chars: &mut Cursor<'_>,
    units: usize,
    septets: &mut Vec<u8>,
    out: &mut Vec<u8>,
    packed: bool,
    udh: usize,
) {
    let mut used = 0;
    match plan.encoding {
        Encoding::Gsm7 => {
            let charset = Charset::for_shift(plan.national);
            // Unpacked septets go straight into `out`; packed ones are collected first.
            let sink: &mut Vec<u8> = if packed {
                septets.clear();
                septets
            } else {
                out
            };
            loop {
                // Most text is runs of plain ASCII septets: copy those a run at a time.
                let room = units - used;
                let n = charset.push_plain_ascii_run(chars.ascii_prefix(room), sink);
                chars.skip_bytes(n);
                used += n;
                let Some(c) = chars.peek() else { break };
                let code = planned(charset.encode(c));
                if used + code.septets() > units {
                    break;
                }
                used += code.septets();
                match code {
                    Code::Plain(s) => sink.push(s),
                    Code::Escaped(s) => sink.extend_from_slice(&[gsm7::ESC, s]),
                }
                chars.advance(c);
            }
            if packed {
                gsm7::pack_into(septets, gsm7::fill_bits(udh), out);
            }
        }
        Encoding::Latin1 => {
            let rest = chars.rest();
            let mut consumed = rest.len();
            for (i, c) in rest.char_indices() {
                if used + 1 > units {
                    consumed = i;
                    break;
                }
                used += 1;
                // The planner chose Latin-1 only if every character is <= U+00FF.
                out.push(u8::try_from(u32::from(c)).unwrap_or(b'?'));
            }
            chars.skip_bytes(consumed);
        }
        Encoding::Ucs2 => {
            let rest = chars.rest();
            let mut consumed = rest.len();
            let mut buf = [0u16; 2];
            for (i, c) in rest.char_indices() {
                let code_units = c.encode_utf16(&mut buf);
                if used + code_units.len() > units {
                    consumed = i;
                    break;
                }
                used += code_units.len();
                for unit in code_units.iter() {
                    out.extend_from_slice(&unit.to_be_bytes());
                }
            }
            chars.skip_bytes(consumed);
        }
    }
}

/// A position in the text; reads ASCII without UTF-8 decoding, the common case.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, pos: 0 }
    }

    #[inline]
    fn peek(&self) -> Option<char> {
        let b = *self.text.as_bytes().get(self.pos)?;
        if b.is_ascii() {
            return Some(char::from(b));
        }
        self.text.get(self.pos..)?.chars().next()
    }

    /// Up to `max` bytes from the current position (may end inside a character: callers only
    /// look at its ASCII bytes).
    #[inline]
    fn ascii_prefix(&self, max: usize) -> &'a [u8] {
        let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
        &rest[..max.min(rest.len())]
    }

    /// The text not consumed yet.
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Skips `n` bytes (whole characters).
    #[inline]
    fn skip_bytes(&mut self, n: usize) {
        self.pos += n;
    }

    #[inline]
    fn advance(&mut self, c: char) {
        self.pos += c.len_utf8();
    }
}
