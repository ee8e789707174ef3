//! Inbound short messages come from carriers and handsets: UDH parsing and MO decoding must
//! never panic or read out of bounds, whatever the bytes, data_coding and UDHI flag.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::segment::{DefaultAlphabet, decode_mo, parse_udh};

fuzz_target!(|data: &[u8]| {
    let [data_coding, flags, body @ ..] = data else {
        return;
    };
    if let Ok((_, consumed)) = parse_udh(body) {
        assert!(consumed <= body.len());
    }
    let alphabet = match flags & 0x03 {
        0 => DefaultAlphabet::Gsm7Unpacked,
        1 => DefaultAlphabet::Gsm7Packed,
        2 => DefaultAlphabet::Latin1,
        _ => DefaultAlphabet::Ascii,
    };
    let udhi = flags & 0x04 != 0;
    if let Ok(mo) = decode_mo(*data_coding, udhi, body, alphabet) {
        assert_eq!(mo.udh.is_some(), udhi);
        assert!(mo.binary.is_none() || mo.text.is_empty());
    }
});
