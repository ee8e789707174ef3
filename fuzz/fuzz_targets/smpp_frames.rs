//! The carrier controls every byte we read: framing by `command_length` must never panic,
//! never buffer more than one maximal PDU, and only give up (`BadLength`) when the stream
//! cannot be framed any more. Frames must not depend on how the bytes were split into reads,
//! and a PDU we decoded must encode back into one whole frame with the same header.
//!
//! Input: two bytes seeding the read sizes, then the byte stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smsgate::smpp::codec::{Frame, FrameError, SmppCodec, encode_into};
use tokio_util::codec::Decoder;

const MAX: usize = 4096;

/// What one decode call gave, in a form two runs can be compared by.
#[derive(Debug, PartialEq)]
enum Seen {
    Command(Box<rusmpp::Command>),
    Malformed {
        command_id: u32,
        sequence_number: u32,
    },
    BadLength(usize),
    /// `decode_eof` with a partial frame left over.
    Leftover,
}

/// Feeds `stream` to a fresh codec in reads of the sizes `cut` gives; returns every frame (and
/// the error that ended the stream, if any).
fn run(stream: &[u8], mut cut: impl FnMut() -> usize) -> Vec<Seen> {
    let mut codec = SmppCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = cut().clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "a partial frame was consumed");
                    // Growth is amortised, so allow slack; a reservation sized by an
                    // unchecked command_length (up to 4 GiB) is what this catches.
                    assert!(
                        buf.capacity() <= 256 * 1024 + 4 * n,
                        "decoder reserved {} bytes for a {MAX}-byte maximum",
                        buf.capacity()
                    );
                    break;
                }
                Ok(Some(frame)) => {
                    let used = before - buf.len();
                    assert!((16..=MAX).contains(&used), "a frame of {used} bytes");
                    seen.push(check_frame(frame));
                }
                Err(FrameError::BadLength { length, max }) => {
                    assert_eq!(max, MAX);
                    assert!(
                        !(16..=MAX).contains(&length),
                        "refused a valid length {length}"
                    );
                    seen.push(Seen::BadLength(length));
                    return seen;
                }
                Err(e) => panic!("decode failed with {e:?} on an in-memory buffer"),
            }
        }
    }
    // The stream ends: what is left is at most one partial frame.
    match codec.decode_eof(&mut buf) {
        Ok(None) => assert!(buf.is_empty()),
        Ok(Some(_)) => panic!("decode_eof found a frame decode had not"),
        Err(FrameError::BadLength { .. }) => panic!("decode_eof refused a length decode took"),
        Err(FrameError::Io(_)) => {
            assert!(!buf.is_empty());
            seen.push(Seen::Leftover);
        }
        Err(e) => panic!("decode_eof failed with {e:?}"),
    }
    seen
}

fn check_frame(frame: Frame) -> Seen {
    match frame {
        Frame::Malformed {
            command_id,
            sequence_number,
            ..
        } => Seen::Malformed {
            command_id,
            sequence_number,
        },
        Frame::Command(c) => {
            // Whatever we can read, we can write back (no panic, a whole frame with the same
            // header). Not that it decodes the same: rusmpp reads some odd bodies leniently
            // (a body-less PDU with a body, a TLV whose length disagrees with its value) and
            // writes them back differently; smsgate never echoes a carrier's PDU.
            let mut out = BytesMut::new();
            encode_into(&c, &mut out);
            let mut codec = SmppCodec::new(usize::MAX >> 1);
            let header = match codec.decode(&mut out) {
                Ok(Some(Frame::Command(again))) => (u32::from(again.id()), again.sequence_number()),
                Ok(Some(Frame::Malformed {
                    command_id,
                    sequence_number,
                    ..
                })) => (command_id, sequence_number),
                other => panic!("re-encoded {c:?} reads back as {other:?}"),
            };
            assert_eq!(header, (u32::from(c.id()), c.sequence_number()));
            assert!(out.is_empty(), "re-encoding wrote trailing bytes");
            Seen::Command(Box::new(c))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    // xorshift over the seed: read sizes of 1..=64 bytes, and sometimes a big one.
    let mut x = u32::from(*a) << 8 | u32::from(*b) | 1 << 16;
    let chunked = run(stream, || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x % 8 == 0 {
            1 + (x >> 3) as usize % 4096
        } else {
            1 + (x >> 3) as usize % 64
        }
    });
    let whole = run(stream, || usize::MAX);
    assert_eq!(chunked, whole, "frames depend on how reads were split");
});
