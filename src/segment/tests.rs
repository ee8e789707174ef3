//! Boundary tables, byte-exact parts, MO decoding and property tests for the whole module.

use super::*;

fn opts() -> Options {
    Options::default()
}

fn with(f: impl FnOnce(&mut Options)) -> Options {
    let mut o = opts();
    f(&mut o);
    o
}

fn rep(s: &str, n: usize) -> String {
    s.repeat(n)
}

/// Splits a part into (UDH, rest).
fn split_udh(part: &Part) -> (&[u8], &[u8]) {
    if part.udhi {
        let len = usize::from(part.short_message[0]) + 1;
        part.short_message.split_at(len)
    } else {
        (&[], &part.short_message)
    }
}

fn decode_all(seg: &Segmented, packed: bool) -> String {
    let alphabet = if packed {
        DefaultAlphabet::Gsm7Packed
    } else {
        DefaultAlphabet::Gsm7Unpacked
    };
    seg.parts
        .iter()
        .map(|p| {
            decode_mo(seg.data_coding, p.udhi, &p.short_message, alphabet)
                .expect("our own parts decode")
                .text
        })
        .collect()
}

struct Case {
    name: &'static str,
    text: String,
    opts: Options,
    encoding: Encoding,
    units: &'static [usize],
    max: usize,
}

fn case(
    name: &'static str,
    text: String,
    opts: Options,
    encoding: Encoding,
    units: &'static [usize],
    max: usize,
) -> Case {
    Case {
        name,
        text,
        opts,
        encoding,
        units,
        max,
    }
}

#[test]
fn part_boundaries_match_the_table() {
    use Encoding::*;
    let udh16 = with(|o| o.concat = Concat::Udh16);
    let sar = with(|o| o.concat = Concat::Sar);
    let latin1 = with(|o| o.latin1 = true);
    let cases = [
        case(
            "160 GSM-7 fit one part",
            rep("a", 160),
            opts(),
            Gsm7,
            &[160],
            160,
        ),
        case(
            "161 GSM-7 need two",
            rep("a", 161),
            opts(),
            Gsm7,
            &[153, 8],
            153,
        ),
        case(
            "153 in a later part fit",
            rep("a", 306),
            opts(),
            Gsm7,
            &[153, 153],
            153,
        ),
        case(
            "154 in a later part spill",
            rep("a", 307),
            opts(),
            Gsm7,
            &[153, 153, 1],
            153,
        ),
        case(
            "16-bit ref leaves 152",
            rep("a", 161),
            udh16.clone(),
            Gsm7,
            &[152, 9],
            152,
        ),
        case(
            "16-bit ref 304 fill two",
            rep("a", 304),
            udh16.clone(),
            Gsm7,
            &[152, 152],
            152,
        ),
        case(
            "SAR sized as Udh8",
            rep("a", 161),
            sar,
            Gsm7,
            &[153, 8],
            153,
        ),
        case(
            "extension costs two",
            rep("a", 158) + "€",
            opts(),
            Gsm7,
            &[160],
            160,
        ),
        case(
            "extension overflows one part",
            rep("a", 159) + "{",
            opts(),
            Gsm7,
            &[153, 8],
            153,
        ),
        case(
            "extension at a boundary moves whole",
            rep("a", 152) + "€" + &rep("b", 10),
            opts(),
            Gsm7,
            &[152, 12],
            153,
        ),
        case(
            "70 UCS-2 fit one part",
            rep("ж", 70),
            opts(),
            Ucs2,
            &[70],
            70,
        ),
        case(
            "71 UCS-2 need two",
            rep("ж", 71),
            opts(),
            Ucs2,
            &[67, 4],
            67,
        ),
        case(
            "67 in a later part fit",
            rep("ж", 134),
            opts(),
            Ucs2,
            &[67, 67],
            67,
        ),
        case(
            "68 in a later part spill",
            rep("ж", 135),
            opts(),
            Ucs2,
            &[67, 67, 1],
            67,
        ),
        case(
            "16-bit ref leaves 66 units",
            rep("ж", 71),
            udh16.clone(),
            Ucs2,
            &[66, 5],
            66,
        ),
        case(
            "emoji fills one part",
            rep("ж", 68) + "😀",
            opts(),
            Ucs2,
            &[70],
            70,
        ),
        case(
            "emoji at a boundary moves whole",
            rep("ж", 66) + "😀" + &rep("ж", 5),
            opts(),
            Ucs2,
            &[66, 7],
            67,
        ),
        case(
            "140 Latin-1 fit one part",
            rep("ç", 140),
            latin1.clone(),
            Latin1,
            &[140],
            140,
        ),
        case(
            "141 Latin-1 need two",
            rep("ç", 141),
            latin1.clone(),
            Latin1,
            &[134, 7],
            134,
        ),
        case(
            "Latin-1 off falls to UCS-2",
            rep("ç", 141),
            opts(),
            Ucs2,
            &[67, 67, 7],
            67,
        ),
        case(
            "16-bit ref leaves 133 octets",
            rep("ç", 141),
            {
                let mut o = latin1.clone();
                o.concat = Concat::Udh16;
                o
            },
            Latin1,
            &[133, 8],
            133,
        ),
        case(
            "Latin-1 beats GSM-7 full of extensions",
            rep("{", 100),
            latin1.clone(),
            Latin1,
            &[100],
            140,
        ),
        case(
            "extensions stay GSM-7 without Latin-1",
            rep("{", 100),
            opts(),
            Gsm7,
            &[152, 48],
            153,
        ),
    ];
    for c in cases {
        let p = plan(&c.text, &c.opts).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(p.encoding, c.encoding, "{}", c.name);
        assert_eq!(p.units_per_part, c.units, "{}", c.name);
        assert_eq!(p.parts, c.units.len(), "{}", c.name);
        assert_eq!(p.units_per_part_max, c.max, "{}", c.name);
        let seg = segment(&c.text, &c.opts, 7).unwrap();
        assert_eq!(decode_all(&seg, false), c.text, "{}", c.name);
    }
}

#[test]
fn extension_character_at_a_boundary_starts_the_next_part_with_the_escape() {
    let text = rep("a", 152) + "€" + &rep("b", 10);
    let seg = segment(&text, &opts(), 1).unwrap();
    let (_, first) = split_udh(&seg.parts[0]);
    let (_, second) = split_udh(&seg.parts[1]);
    assert_eq!(first.len(), 152);
    assert_ne!(first.last(), Some(&0x1B));
    assert_eq!(&second[..2], &[0x1B, 0x65]);
}

#[test]
fn emoji_at_a_boundary_is_never_split_into_halves() {
    let text = rep("ж", 66) + "😀" + &rep("ж", 5);
    let seg = segment(&text, &opts(), 1).unwrap();
    let (_, first) = split_udh(&seg.parts[0]);
    let (_, second) = split_udh(&seg.parts[1]);
    assert_eq!(first.len(), 132);
    assert_eq!(&second[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
}

#[test]
fn udh8_parts_carry_reference_low_byte_total_and_sequence() {
    let seg = segment(&rep("a", 161), &opts(), 0x1234).unwrap();
    assert_eq!(seg.data_coding, 0);
    assert_eq!(seg.parts.len(), 2);
    assert_eq!(&seg.parts[0].short_message[..6], &[5, 0, 3, 0x34, 2, 1]);
    assert_eq!(&seg.parts[1].short_message[..6], &[5, 0, 3, 0x34, 2, 2]);
    assert_eq!(seg.parts[0].short_message.len(), 6 + 153);
    assert!(
        seg.parts
            .iter()
            .all(|p| p.udhi && p.sar.is_none() && !p.payload)
    );
}

#[test]
fn udh16_parts_carry_the_full_reference() {
    let o = with(|o| o.concat = Concat::Udh16);
    let seg = segment(&rep("a", 305), &o, 0x1234).unwrap();
    let headers: Vec<&[u8]> = seg.parts.iter().map(|p| &p.short_message[..7]).collect();
    assert_eq!(
        headers,
        [
            &[6, 8, 4, 0x12, 0x34, 3, 1][..],
            &[6, 8, 4, 0x12, 0x34, 3, 2][..],
            &[6, 8, 4, 0x12, 0x34, 3, 3][..],
        ]
    );
}

#[test]
fn single_part_messages_have_no_udh() {
    let seg = segment("hello", &opts(), 9).unwrap();
    assert_eq!(seg.parts.len(), 1);
    assert_eq!(seg.parts[0].short_message, b"hello");
    assert!(!seg.parts[0].udhi);
}

#[test]
fn sar_parts_carry_no_udh_and_number_the_tlvs() {
    let o = with(|o| o.concat = Concat::Sar);
    let seg = segment(&rep("a", 161), &o, 0xBEEF).unwrap();
    let sars: Vec<Sar> = seg.parts.iter().map(|p| p.sar.unwrap()).collect();
    assert_eq!(
        sars,
        [
            Sar {
                ref_num: 0xBEEF,
                total: 2,
                seq: 1
            },
            Sar {
                ref_num: 0xBEEF,
                total: 2,
                seq: 2
            },
        ]
    );
    assert!(seg.parts.iter().all(|p| !p.udhi && !p.payload));
    assert_eq!(seg.parts[0].short_message, rep("a", 153).as_bytes());
    // One part needs no SAR TLVs.
    assert_eq!(segment("hi", &o, 1).unwrap().parts[0].sar, None);
}

#[test]
fn payload_puts_the_whole_text_in_one_pdu() {
    let o = with(|o| o.concat = Concat::Payload);
    let text = rep("a", 400) + "€";
    let seg = segment(&text, &o, 1).unwrap();
    assert_eq!(seg.plan.parts, 3, "the carrier's split is still reported");
    assert_eq!(seg.parts.len(), 1);
    let part = &seg.parts[0];
    assert!(part.payload && !part.udhi && part.sar.is_none());
    assert_eq!(part.short_message.len(), 402);
    assert_eq!(decode_all(&seg, false), text);
}

#[test]
fn at_sign_is_septet_zero_and_round_trips() {
    let seg = segment("@@a@", &opts(), 1).unwrap();
    assert_eq!(seg.parts[0].short_message, [0, 0, 0x61, 0]);
    assert_eq!(decode_all(&seg, false), "@@a@");
    let packed = segment("@@a@", &with(|o| o.gsm7_packed = true), 1).unwrap();
    assert_eq!(decode_all(&packed, true), "@@a@");
}

#[test]
fn packed_gsm7_gives_textbook_octets() {
    let seg = segment("hellohello", &with(|o| o.gsm7_packed = true), 1).unwrap();
    assert_eq!(
        seg.parts[0].short_message,
        [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
    );
}

#[test]
fn packed_parts_fit_140_octets_and_round_trip() {
    let o = with(|o| o.gsm7_packed = true);
    for n in [159, 160, 161, 306, 307] {
        let text = rep("x", n);
        let seg = segment(&text, &o, 3).unwrap();
        for p in &seg.parts {
            assert!(
                p.short_message.len() <= 140,
                "{n}: {}",
                p.short_message.len()
            );
        }
        assert_eq!(decode_all(&seg, true), text, "{n}");
    }
}

#[test]
fn empty_text_is_refused() {
    assert_eq!(plan("", &opts()), Err(SegmentError::Empty));
    assert_eq!(segment("", &opts(), 1).unwrap_err(), SegmentError::Empty);
}

#[test]
fn too_many_parts_reports_the_count_and_limit() {
    assert_eq!(plan(&rep("a", 1530), &opts()).unwrap().parts, 10);
    assert_eq!(
        plan(&rep("a", 1531), &opts()),
        Err(SegmentError::TooManyParts { parts: 11, max: 10 })
    );
    let two = with(|o| o.max_parts = 2);
    assert_eq!(
        plan(&rep("ж", 135), &two),
        Err(SegmentError::TooManyParts { parts: 3, max: 2 })
    );
    let huge = with(|o| o.max_parts = 10_000);
    assert_eq!(
        plan(&rep("a", 153 * 255 + 1), &huge),
        Err(SegmentError::TooManyParts {
            parts: 256,
            max: 255
        })
    );
}

const TURKISH: &str = "Şişli'de buluşalım mı? Ağaç altında, İstanbul";

#[test]
fn turkish_text_uses_a_shift_table_when_enabled() {
    let o = with(|o| o.national = vec![NationalLanguage::Turkish]);
    let p = plan(TURKISH, &o).unwrap();
    assert_eq!(p.encoding, Encoding::Gsm7);
    assert_eq!(
        p.national,
        Some(NationalShift {
            language: NationalLanguage::Turkish,
            single: true,
            locking: false
        })
    );
    assert_eq!(p.units_per_part_max, 155, "the 4-octet UDH costs 5 septets");
    let seg = segment(TURKISH, &o, 1).unwrap();
    assert_eq!(&seg.parts[0].short_message[..4], &[3, 0x24, 1, 1]);
    assert!(seg.parts[0].udhi);
    assert_eq!(decode_all(&seg, false), TURKISH);
}

#[test]
fn turkish_text_is_ucs2_without_the_shift_table() {
    let p = plan(TURKISH, &opts()).unwrap();
    assert_eq!(p.encoding, Encoding::Ucs2);
    assert_eq!(p.national, None);
    assert_eq!(p.forcing_ucs2, ['Ş', 'ş', 'ı', 'ğ', 'ç', 'İ']);
}

#[test]
fn long_turkish_text_prefers_the_locking_table_when_it_saves_a_part() {
    // 30 Turkish letters cost 60 septets through the single shift but 30 when locked.
    let text = rep("ş", 30) + &rep("a", 120);
    let o = with(|o| o.national = vec![NationalLanguage::Turkish]);
    let p = plan(&text, &o).unwrap();
    assert_eq!(p.parts, 1);
    assert_eq!(
        p.national,
        Some(NationalShift {
            language: NationalLanguage::Turkish,
            single: false,
            locking: true
        })
    );
    let seg = segment(&text, &o, 1).unwrap();
    assert_eq!(&seg.parts[0].short_message[..4], &[3, 0x25, 1, 1]);
    assert_eq!(decode_all(&seg, false), text);
}

#[test]
fn multi_part_shift_parts_carry_concat_and_shift_ies() {
    let text = rep("ş", 200);
    let o = with(|o| o.national = vec![NationalLanguage::Turkish]);
    let seg = segment(&text, &o, 0x42).unwrap();
    // Locking shift: 149 septets per part after 9 octets of UDH.
    assert_eq!(seg.plan.units_per_part, [149, 51]);
    assert_eq!(
        &seg.parts[0].short_message[..9],
        &[8, 0, 3, 0x42, 2, 1, 0x25, 1, 1]
    );
    assert_eq!(decode_all(&seg, false), text);
}

#[test]
fn shift_tables_need_a_udh_we_build() {
    let turkish = vec![NationalLanguage::Turkish];
    let sar = with(|o| {
        o.concat = Concat::Sar;
        o.national = turkish.clone();
    });
    let seg = segment(TURKISH, &sar, 1).unwrap();
    assert_eq!(seg.parts.len(), 1);
    assert!(seg.parts[0].udhi && seg.parts[0].sar.is_none());
    assert_eq!(&seg.parts[0].short_message[..4], &[3, 0x24, 1, 1]);
    // Multi-part SAR and payload leave the UDH to the SMSC, which would drop the shift IEs.
    assert_eq!(plan(&rep("ş", 200), &sar).unwrap().encoding, Encoding::Ucs2);
    let payload = with(|o| {
        o.concat = Concat::Payload;
        o.national = turkish.clone();
    });
    assert_eq!(plan(TURKISH, &payload).unwrap().encoding, Encoding::Ucs2);
}

#[test]
fn spanish_text_uses_the_spanish_single_shift() {
    let text = "¿Cómo estás? Sí, mañana a las ocho. ¡Olé!";
    let o = with(|o| o.national = vec![NationalLanguage::Spanish]);
    let p = plan(text, &o).unwrap();
    assert_eq!(p.encoding, Encoding::Gsm7);
    assert_eq!(
        p.national.map(|n| n.language),
        Some(NationalLanguage::Spanish)
    );
    assert_eq!(plan(text, &opts()).unwrap().encoding, Encoding::Ucs2);
    assert_eq!(decode_all(&segment(text, &o, 1).unwrap(), false), text);
}

#[test]
fn portuguese_text_uses_the_portuguese_tables() {
    let text = "Não, obrigação às três horas. Você está lá?";
    let o = with(|o| o.national = vec![NationalLanguage::Portuguese]);
    let p = plan(text, &o).unwrap();
    assert_eq!(p.encoding, Encoding::Gsm7);
    assert_eq!(
        p.national.map(|n| n.language),
        Some(NationalLanguage::Portuguese)
    );
    assert_eq!(plan(text, &opts()).unwrap().encoding, Encoding::Ucs2);
    assert_eq!(decode_all(&segment(text, &o, 1).unwrap(), false), text);
}

#[test]
fn portuguese_locking_shift_beats_the_default_alphabet_when_cheaper() {
    // '|' is an escape in the default alphabet but a plain septet in the Portuguese table.
    let text = rep("|", 160);
    let o = with(|o| o.national = vec![NationalLanguage::Portuguese]);
    assert_eq!(plan(&text, &opts()).unwrap().parts, 3);
    let p = plan(&text, &o).unwrap();
    assert_eq!(p.parts, 2);
    assert_eq!(
        p.national,
        Some(NationalShift {
            language: NationalLanguage::Portuguese,
            single: false,
            locking: true
        })
    );
}

#[test]
fn plain_gsm7_is_preferred_over_a_shift_table_on_a_tie() {
    let o = with(|o| {
        o.national = vec![
            NationalLanguage::Turkish,
            NationalLanguage::Spanish,
            NationalLanguage::Portuguese,
        ]
    });
    let p = plan(&rep("a", 300), &o).unwrap();
    assert_eq!((p.encoding, p.national, p.parts), (Encoding::Gsm7, None, 2));
}

#[test]
fn smart_encoding_replaces_lookalikes_only_when_enabled() {
    let text = "It\u{2019}s \u{201C}fine\u{201D} \u{2014} ok\u{2026}";
    let off = plan(text, &opts()).unwrap();
    assert_eq!(off.encoding, Encoding::Ucs2);
    assert!(!off.replaced);
    assert_eq!(
        off.forcing_ucs2,
        ['\u{2019}', '\u{201C}', '\u{201D}', '\u{2014}', '\u{2026}']
    );

    let on = plan(text, &with(|o| o.smart_encoding = true)).unwrap();
    assert_eq!(on.encoding, Encoding::Gsm7);
    assert!(on.replaced);
    assert_eq!(on.text, "It's \"fine\" - ok...");
    assert!(on.forcing_ucs2.is_empty());
}

#[test]
fn smart_encoding_leaves_text_alone_when_ucs2_is_needed_anyway() {
    let text = "It\u{2019}s done 😀";
    let p = plan(text, &with(|o| o.smart_encoding = true)).unwrap();
    assert_eq!(p.encoding, Encoding::Ucs2);
    assert!(!p.replaced);
    assert_eq!(p.text, text);
    assert_eq!(p.forcing_ucs2, ['\u{2019}', '😀']);
}

#[test]
fn smart_encoding_is_not_applied_when_it_costs_a_part() {
    // 70 ellipses fit one UCS-2 part but would take 210 septets.
    let text = rep("\u{2026}", 70);
    let p = plan(&text, &with(|o| o.smart_encoding = true)).unwrap();
    assert_eq!(
        (p.encoding, p.parts, p.replaced),
        (Encoding::Ucs2, 1, false)
    );
}

#[test]
fn forcing_characters_exclude_those_an_enabled_alphabet_carries() {
    let o = with(|o| o.national = vec![NationalLanguage::Turkish]);
    let p = plan("ş 😀 ş", &o).unwrap();
    assert_eq!(p.forcing_ucs2, ['😀']);
}

#[test]
fn encoding_names_and_data_codings_match_the_api() {
    assert_eq!(
        [Encoding::Gsm7, Encoding::Ucs2, Encoding::Latin1].map(|e| (e.as_str(), e.data_coding())),
        [("gsm7", 0), ("ucs2", 8), ("latin1", 3)]
    );
}

// ---- MO decoding ----

#[test]
fn unpacked_gsm7_decodes_at_sign_and_extensions() {
    let bytes = [0x00, 0x01, 0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29, 0x41];
    let mo = decode_mo(0, false, &bytes, DefaultAlphabet::Gsm7Unpacked).unwrap();
    assert_eq!(mo.text, "@£{€}A");
    assert!(!mo.lossy && mo.binary.is_none() && mo.udh.is_none());
}

/// Packs septets bit by bit, independently of `gsm7::pack_into`.
fn reference_pack(septets: &[u8], fill: usize) -> Vec<u8> {
    let mut bits: Vec<bool> = vec![false; fill];
    for s in septets {
        bits.extend((0..7).map(|i| s >> i & 1 == 1));
    }
    bits.chunks(8)
        .map(|byte| {
            byte.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i))
        })
        .collect()
}

#[test]
fn packed_gsm7_decodes_at_sign_and_extensions() {
    let septets = [0x00, 0x01, 0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29, 0x41];
    let bytes = reference_pack(&septets, 0);
    let mo = decode_mo(0, false, &bytes, DefaultAlphabet::Gsm7Packed).unwrap();
    assert_eq!(mo.text, "@£{€}A");
}

#[test]
fn packed_gsm7_after_a_udh_skips_the_fill_bits() {
    let mut bytes = vec![5, 0, 3, 0x10, 2, 1];
    bytes.extend(reference_pack(&[0x68, 0x69, 0x00], 1));
    let mo = decode_mo(0, true, &bytes, DefaultAlphabet::Gsm7Packed).unwrap();
    assert_eq!(mo.text, "hi@");
    assert_eq!(
        mo.udh.unwrap().concat,
        Some(ConcatInfo {
            reference: 0x10,
            total: 2,
            seq: 1
        })
    );
}

#[test]
fn our_packer_agrees_with_the_reference_packer() {
    for n in 0..20 {
        for udh in [0, 6, 7, 9] {
            let septets: Vec<u8> = (0..n as u8)
                .map(|i| i.wrapping_mul(37).wrapping_add(1) & 0x7F)
                .collect();
            let mut ours = Vec::new();
            gsm7::pack_into(&septets, gsm7::fill_bits(udh), &mut ours);
            let mut expected = reference_pack(&septets, gsm7::fill_bits(udh));
            if (gsm7::fill_bits(udh) + 7 * n) % 8 == 1 {
                // 7 spare bits are filled with CR.
                *expected.last_mut().unwrap() |= 0x0D << 1;
            }
            assert_eq!(ours, expected, "n={n} udh={udh}");
        }
    }
}

#[test]
fn ucs2_decodes_surrogate_pairs() {
    let bytes = [0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00, 0x04, 0x36];
    let mo = decode_mo(8, false, &bytes, DefaultAlphabet::Gsm7Unpacked).unwrap();
    assert_eq!(mo.text, "a😀ж");
    assert!(!mo.lossy);
}

#[test]
fn ucs2_lone_surrogates_and_odd_lengths_become_replacement_characters() {
    let d = DefaultAlphabet::Gsm7Unpacked;
    let lone = decode_mo(8, false, &[0xD8, 0x3D, 0x00, 0x61], d).unwrap();
    assert_eq!((lone.text.as_str(), lone.lossy), ("\u{FFFD}a", true));
    let low_first = decode_mo(8, false, &[0xDE, 0x00], d).unwrap();
    assert_eq!(low_first.text, "\u{FFFD}");
    let odd = decode_mo(8, false, &[0x00, 0x61, 0x00], d).unwrap();
    assert_eq!((odd.text.as_str(), odd.lossy), ("a\u{FFFD}", true));
}

#[test]
fn other_codings_decode_as_their_charsets() {
    let d = DefaultAlphabet::Gsm7Unpacked;
    assert_eq!(decode_mo(3, false, b"caf\xE9", d).unwrap().text, "café");
    assert_eq!(
        decode_mo(0, false, b"caf\xE9", DefaultAlphabet::Latin1)
            .unwrap()
            .text,
        "café"
    );
    let ascii = decode_mo(1, false, b"ok\xFF", d).unwrap();
    assert_eq!((ascii.text.as_str(), ascii.lossy), ("ok\u{FFFD}", true));
    assert_eq!(
        decode_mo(0, false, b"ok", DefaultAlphabet::Ascii)
            .unwrap()
            .text,
        "ok"
    );
    assert_eq!(
        decode_mo(6, false, &[0xBF, 0xE0, 0xD8, 0xD2, 0xD5, 0xE2], d)
            .unwrap()
            .text,
        "Привет"
    );
    assert_eq!(decode_mo(0xF0, false, &[0x00, 0x41], d).unwrap().text, "@A");
}

#[test]
fn eight_bit_data_is_kept_as_bytes() {
    for dc in [2, 4, 0xF4, 0xF5] {
        let mo = decode_mo(
            dc,
            true,
            &[4, 4, 2, 0x10, 0x20, 0x00, 0xFF],
            DefaultAlphabet::Gsm7Unpacked,
        )
        .unwrap();
        assert_eq!(mo.binary.as_deref(), Some(&[0x00, 0xFF][..]), "dc {dc}");
        assert_eq!(mo.text, "");
        assert_eq!(mo.udh.unwrap().ports, Some((0x10, 0x20)));
    }
}

#[test]
fn udh_ies_are_parsed() {
    struct UdhCase {
        name: &'static str,
        bytes: &'static [u8],
        udh: Udh,
        consumed: usize,
    }
    let concat = |reference, total, seq| {
        Some(ConcatInfo {
            reference,
            total,
            seq,
        })
    };
    let cases = [
        UdhCase {
            name: "8-bit concat",
            bytes: &[5, 0x00, 3, 0xAA, 3, 2, b'h', b'i'],
            udh: Udh {
                concat: concat(0xAA, 3, 2),
                ..Udh::default()
            },
            consumed: 6,
        },
        UdhCase {
            name: "16-bit concat",
            bytes: &[6, 0x08, 4, 0x12, 0x34, 3, 1],
            udh: Udh {
                concat: concat(0x1234, 3, 1),
                ..Udh::default()
            },
            consumed: 7,
        },
        UdhCase {
            name: "16-bit ports (WAP push)",
            bytes: &[6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0],
            udh: Udh {
                ports: Some((2948, 9200)),
                ..Udh::default()
            },
            consumed: 7,
        },
        UdhCase {
            name: "8-bit ports",
            bytes: &[4, 0x04, 2, 16, 32],
            udh: Udh {
                ports: Some((16, 32)),
                ..Udh::default()
            },
            consumed: 5,
        },
        UdhCase {
            name: "unknown IE skipped",
            bytes: &[9, 0x70, 2, 0xAA, 0xBB, 0x00, 3, 1, 2, 1],
            udh: Udh {
                concat: concat(1, 2, 1),
                ..Udh::default()
            },
            consumed: 10,
        },
        UdhCase {
            name: "national shifts",
            bytes: &[6, 0x24, 1, 1, 0x25, 1, 3],
            udh: Udh {
                national_single: Some(1),
                national_locking: Some(3),
                ..Udh::default()
            },
            consumed: 7,
        },
        UdhCase {
            name: "sequence zero ignores the concat IE",
            bytes: &[5, 0x00, 3, 1, 2, 0],
            udh: Udh::default(),
            consumed: 6,
        },
        UdhCase {
            name: "sequence beyond total ignores the concat IE",
            bytes: &[5, 0x00, 3, 1, 2, 3],
            udh: Udh::default(),
            consumed: 6,
        },
        UdhCase {
            name: "empty UDH",
            bytes: &[0, b'x'],
            udh: Udh::default(),
            consumed: 1,
        },
    ];
    for c in cases {
        assert_eq!(parse_udh(c.bytes), Ok((c.udh, c.consumed)), "{}", c.name);
    }
}

#[test]
fn malformed_udhs_are_errors() {
    let cases: [(&[u8], DecodeError); 4] = [
        (&[], DecodeError::MissingUdh),
        (
            &[5, 0, 3, 1],
            DecodeError::UdhTruncated {
                udhl: 5,
                available: 3,
            },
        ),
        (
            &[3, 0, 3, 1, 9, 9],
            DecodeError::IeTruncated {
                iei: 0,
                len: 3,
                available: 1,
            },
        ),
        (
            &[4, 0, 2, 1, 2],
            DecodeError::IeLength {
                iei: 0,
                len: 2,
                expected: 3,
            },
        ),
    ];
    for (bytes, err) in cases {
        assert_eq!(parse_udh(bytes), Err(err.clone()), "{bytes:?}");
        assert_eq!(
            decode_mo(0, true, bytes, DefaultAlphabet::Gsm7Unpacked),
            Err(err),
            "{bytes:?}"
        );
    }
    assert_eq!(
        parse_udh(&[1, 0x70]),
        Err(DecodeError::IeTruncated {
            iei: 0x70,
            len: 0,
            available: 0
        })
    );
}

#[test]
fn mo_with_a_turkish_shift_udh_decodes_with_the_turkish_tables() {
    // Locking Turkish: 0x1C is Ş, 0x07 is ı.
    let bytes = [3, 0x25, 1, 1, 0x1C, 0x07];
    let mo = decode_mo(0, true, &bytes, DefaultAlphabet::Gsm7Unpacked).unwrap();
    assert_eq!(mo.text, "Şı");
}

#[test]
fn unpacked_octets_above_0x7f_are_not_septets() {
    let mo = decode_mo(0, false, &[0x41, 0xC1], DefaultAlphabet::Gsm7Unpacked).unwrap();
    assert_eq!((mo.text.as_str(), mo.lossy), ("A\u{FFFD}", true));
}

#[test]
fn errors_display_their_facts() {
    assert_eq!(
        SegmentError::TooManyParts { parts: 11, max: 10 }.to_string(),
        "message needs 11 parts, more than the limit of 10"
    );
    assert_eq!(
        DecodeError::IeLength {
            iei: 0,
            len: 2,
            expected: 3
        }
        .to_string(),
        "UDH information element 0x00 has length 2, expected 3"
    );
}

mod props;
