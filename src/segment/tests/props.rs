//! Property tests: arbitrary texts and options, checked against the decoder and against a
//! naive, independent cost model.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::super::gsm7;
use super::super::*;
use super::split_udh;

/// The GSM-7 default alphabet and extension table, written out independently of `gsm7.rs`.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXT: &str = "\u{0C}^{}\\[~]|€";
const EMOJI: &str = "😀👍🎉❤🇺🇸🤷\u{200D}♂\u{FE0F}𝄞";
const NATIONAL: &str = "ŞşĞğİıçÇÖöÜüÁáÍíÓóÚúñÃãÕõÊêÔôÂâÀàªº∞`";
const LOOKALIKES: &str = "‘’‚“”„–—―…\u{A0}\u{2009}•\u{200B}«»\t";

fn chars(s: &'static str) -> Vec<char> {
    s.chars().collect()
}

fn mixed_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => select(chars(GSM_BASIC)),
        2 => select(chars(GSM_EXT)),
        1 => select(chars(EMOJI)),
        2 => select(chars(NATIONAL)),
        1 => select(chars(LOOKALIKES)),
        1 => any::<char>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    let gsm = [chars(GSM_BASIC), chars(GSM_EXT)].concat();
    let turkish = [chars(GSM_BASIC), chars("ŞşĞğİıç")].concat();
    prop_oneof![
        vec(select(gsm), 1..400).prop_map(String::from_iter),
        vec(mixed_char(), 1..400).prop_map(String::from_iter),
        vec(select(turkish), 1..400).prop_map(String::from_iter),
        vec(select(chars(EMOJI)), 1..150).prop_map(String::from_iter),
        vec(any::<char>(), 1..200).prop_map(String::from_iter),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    let langs = vec![
        NationalLanguage::Turkish,
        NationalLanguage::Spanish,
        NationalLanguage::Portuguese,
    ];
    (
        select(vec![
            Concat::Udh8,
            Concat::Udh16,
            Concat::Sar,
            Concat::Payload,
        ]),
        subsequence(langs, 0..=3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(concat, national, latin1, smart_encoding, gsm7_packed)| Options {
                max_parts: 255,
                concat,
                national,
                latin1,
                smart_encoding,
                gsm7_packed,
            },
        )
}

fn alphabet(opts: &Options) -> DefaultAlphabet {
    if opts.gsm7_packed {
        DefaultAlphabet::Gsm7Packed
    } else {
        DefaultAlphabet::Gsm7Unpacked
    }
}

/// Naive part count: one part if it all fits, else greedy with the multi-part capacity.
fn naive_parts(costs: &[usize], single: usize, multi: usize) -> usize {
    if costs.iter().sum::<usize>() <= single {
        return 1;
    }
    let (mut parts, mut used) = (1, 0);
    for &c in costs {
        if used + c > multi {
            parts += 1;
            used = 0;
        }
        used += c;
    }
    parts
}

/// (single, multi) capacities of GSM-7, Latin-1 and UCS-2 without shift tables.
fn naive_caps(concat: Concat) -> [(usize, usize); 3] {
    match concat {
        Concat::Udh16 => [(160, 152), (140, 133), (70, 66)],
        _ => [(160, 153), (140, 134), (70, 67)],
    }
}

/// The septets or UTF-16 units of a part's payload.
fn part_units(seg: &Segmented, part: &Part, packed: bool) -> Vec<u16> {
    let (udh, body) = split_udh(part);
    match seg.plan.encoding {
        Encoding::Gsm7 if packed => gsm7::unpack(body, gsm7::fill_bits(udh.len()))
            .into_iter()
            .map(u16::from)
            .collect(),
        Encoding::Gsm7 | Encoding::Latin1 => body.iter().map(|&b| u16::from(b)).collect(),
        Encoding::Ucs2 => body
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect(),
    }
}

/// Octets a part takes on the air, counting the UDH the SMSC adds for SAR.
fn on_air_octets(seg: &Segmented, part: &Part, opts: &Options) -> usize {
    let (udh, body) = split_udh(part);
    let udh = if part.sar.is_some() { 6 } else { udh.len() };
    match seg.plan.encoding {
        Encoding::Gsm7 if !opts.gsm7_packed => {
            udh + (gsm7::fill_bits(udh) + 7 * body.len()).div_ceil(8)
        }
        _ => udh + body.len(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn segmented_parts_decode_back_to_the_planned_text(
        text in text(),
        opts in options(),
        reference in any::<u16>(),
    ) {
        let seg = segment(&text, &opts, reference).unwrap();
        if !seg.plan.replaced {
            prop_assert_eq!(&seg.plan.text, &text);
        }
        let decoded: Vec<String> = seg
            .parts
            .iter()
            .map(|p| decode_mo(seg.data_coding, p.udhi, &p.short_message, alphabet(&opts)).map(|m| m.text))
            .collect::<Result<_, _>>()
            .unwrap();
        if opts.gsm7_packed && seg.plan.encoding == Encoding::Gsm7 {
            // Over SMPP a packed part's length is in octets: a genuine CR ending exactly on an
            // octet boundary reads as the CR padding of TS 23.038 6.1.2.3.1 and is dropped.
            let unpacked = segment(&text, &Options { gsm7_packed: false, ..opts.clone() }, reference).unwrap();
            for (got, part) in decoded.iter().zip(&unpacked.parts) {
                let want = decode_mo(0, part.udhi, &part.short_message, DefaultAlphabet::Gsm7Unpacked).unwrap().text;
                prop_assert!(*got == want || (want.ends_with('\r') && *got == want[..want.len() - 1]),
                    "got {:?} want {:?}", got, want);
            }
        } else {
            prop_assert_eq!(decoded.concat(), seg.plan.text);
        }
    }

    #[test]
    fn every_part_fits_one_sms_on_the_air(text in text(), opts in options()) {
        let seg = segment(&text, &opts, 1).unwrap();
        for part in &seg.parts {
            if part.payload {
                prop_assert!(part.short_message.len() <= 65_535);
                continue;
            }
            prop_assert!(on_air_octets(&seg, part, &opts) <= 140);
            prop_assert!(part.short_message.len() <= 254, "SMPP short_message limit");
        }
    }

    #[test]
    fn the_chosen_encoding_is_the_cheapest_that_carries_the_text(text in text(), opts in options()) {
        let plan = plan(&text, &opts).unwrap();
        let t = &plan.text;
        let [gsm_caps, latin_caps, ucs2_caps] = naive_caps(opts.concat);
        let gsm: Option<Vec<usize>> = t
            .chars()
            .map(|c| if GSM_BASIC.contains(c) { Some(1) } else if GSM_EXT.contains(c) { Some(2) } else { None })
            .collect();
        let ucs2: Vec<usize> = t.chars().map(char::len_utf16).collect();
        let ucs2_parts = naive_parts(&ucs2, ucs2_caps.0, ucs2_caps.1);
        prop_assert!(plan.parts <= ucs2_parts);
        if let Some(gsm) = gsm {
            let gsm_parts = naive_parts(&gsm, gsm_caps.0, gsm_caps.1);
            prop_assert!(plan.parts <= gsm_parts);
            prop_assert_ne!(plan.encoding, Encoding::Ucs2);
            if plan.parts == gsm_parts {
                prop_assert_eq!((plan.encoding, plan.national), (Encoding::Gsm7, None), "GSM-7 wins ties");
            }
        } else if plan.encoding == Encoding::Ucs2 {
            prop_assert!(!plan.forcing_ucs2.is_empty());
        }
        if opts.latin1 && t.chars().all(|c| u32::from(c) <= 0xFF) {
            let latin = vec![1; t.chars().count()];
            prop_assert!(plan.parts <= naive_parts(&latin, latin_caps.0, latin_caps.1));
            prop_assert_ne!(plan.encoding, Encoding::Ucs2);
        }
        if plan.encoding != Encoding::Ucs2 {
            prop_assert!(plan.forcing_ucs2.is_empty());
        }
    }

    #[test]
    fn no_part_starts_or_ends_inside_a_character(text in text(), opts in options()) {
        let seg = segment(&text, &opts, 1).unwrap();
        for part in &seg.parts {
            let units = part_units(&seg, part, opts.gsm7_packed);
            match seg.plan.encoding {
                Encoding::Gsm7 => {
                    let mut i = 0;
                    while i < units.len() {
                        i += if units[i] == 0x1B { 2 } else { 1 };
                    }
                    prop_assert_eq!(i, units.len(), "a part ends with half an escape");
                }
                Encoding::Ucs2 => {
                    prop_assert!(!units.first().is_some_and(|u| (0xDC00..=0xDFFF).contains(u)));
                    prop_assert!(!units.last().is_some_and(|u| (0xD800..=0xDBFF).contains(u)));
                }
                Encoding::Latin1 => {}
            }
        }
    }

    #[test]
    fn the_layout_is_consistent_with_the_parts(text in text(), opts in options(), reference in any::<u16>()) {
        let seg = segment(&text, &opts, reference).unwrap();
        let plan = &seg.plan;
        prop_assert_eq!(plan.units_per_part.len(), plan.parts);
        let n = plan.parts;
        for (i, &units) in plan.units_per_part.iter().enumerate() {
            prop_assert!(units <= plan.units_per_part_max);
            if i + 1 < n {
                // Greedy: a part closes only when the next character (<= 2 units) does not fit.
                prop_assert!(units + 2 > plan.units_per_part_max);
            }
        }
        if opts.concat == Concat::Payload {
            prop_assert_eq!(seg.parts.len(), 1);
            return Ok(());
        }
        prop_assert_eq!(seg.parts.len(), n);
        for (i, part) in seg.parts.iter().enumerate() {
            let units = part_units(&seg, part, opts.gsm7_packed);
            if !(opts.gsm7_packed && plan.encoding == Encoding::Gsm7) {
                prop_assert_eq!(units.len(), plan.units_per_part[i]);
            }
            let udh = part.udhi.then(|| parse_udh(&part.short_message).unwrap().0);
            let concat = udh.and_then(|u| u.concat);
            match opts.concat {
                Concat::Udh8 | Concat::Udh16 if n > 1 => {
                    let reference = if opts.concat == Concat::Udh8 { reference & 0xFF } else { reference };
                    prop_assert_eq!(concat, Some(ConcatInfo { reference, total: n as u8, seq: i as u8 + 1 }));
                }
                Concat::Sar if n > 1 => {
                    prop_assert_eq!(part.sar, Some(Sar { ref_num: reference, total: n as u8, seq: i as u8 + 1 }));
                    prop_assert_eq!(concat, None);
                }
                _ => prop_assert_eq!(concat, None),
            }
            let shift = udh.map(|u| (u.national_single, u.national_locking)).unwrap_or_default();
            let expected = plan.national.map(|s| {
                let id = Some(s.language.id());
                (id.filter(|_| s.single), id.filter(|_| s.locking))
            }).unwrap_or_default();
            prop_assert_eq!(shift, expected);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        data_coding in any::<u8>(),
        udhi in any::<bool>(),
        bytes in vec(any::<u8>(), 0..300),
        alphabet in select(vec![
            DefaultAlphabet::Gsm7Unpacked,
            DefaultAlphabet::Gsm7Packed,
            DefaultAlphabet::Latin1,
            DefaultAlphabet::Ascii,
        ]),
    ) {
        if let Ok((_, consumed)) = parse_udh(&bytes) {
            prop_assert_eq!(consumed, usize::from(bytes[0]) + 1);
            prop_assert!(consumed <= bytes.len());
        }
        if let Ok(mo) = decode_mo(data_coding, udhi, &bytes, alphabet) {
            prop_assert_eq!(mo.udh.is_some(), udhi);
            prop_assert!(mo.binary.is_none() || mo.text.is_empty());
        }
    }
}
