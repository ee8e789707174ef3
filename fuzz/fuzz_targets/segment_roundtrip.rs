//! Any text that plans must segment into parts that fit one SMS and decode back to the planned
//! text (packed GSM-7 aside, whose octet length can hide a final CR; see the property tests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::segment::{Concat, DefaultAlphabet, NationalLanguage, Options, decode_mo, segment};

fuzz_target!(|data: &[u8]| {
    let [flags, text @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let all = [
        NationalLanguage::Turkish,
        NationalLanguage::Spanish,
        NationalLanguage::Portuguese,
    ];
    let opts = Options {
        max_parts: 255,
        concat: [Concat::Udh8, Concat::Udh16, Concat::Sar, Concat::Payload][usize::from(flags & 3)],
        national: all.into_iter().filter(|_| flags & 0x04 != 0).collect(),
        latin1: flags & 0x08 != 0,
        smart_encoding: flags & 0x10 != 0,
        gsm7_packed: false,
    };
    let Ok(seg) = segment(text, &opts, u16::from(*flags)) else {
        return;
    };
    let mut joined = String::new();
    for part in &seg.parts {
        if !part.payload {
            assert!(part.short_message.len() <= 160);
        }
        let mo = decode_mo(
            seg.data_coding,
            part.udhi,
            &part.short_message,
            DefaultAlphabet::Gsm7Unpacked,
        )
        .expect("our own parts decode");
        joined.push_str(&mo.text);
    }
    assert_eq!(joined, seg.plan.text);
});
