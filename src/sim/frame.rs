//! Splitting the inbound byte stream into PDUs. No I/O.
//!
//! The simulator frames PDUs itself instead of using rusmpp's `CommandCodec` decoder so that a
//! body that fails to decode still leaves the stream framed (the bytes of that PDU are
//! consumed exactly) and its header is known, which lets the session answer `generic_nack`
//! with the right sequence number and carry on.

use bytes::{Buf, BytesMut};
use rusmpp::{Command, CommandId, CommandStatus, Pdu, decode::DecodeWithLength};

pub(crate) const HEADER_LEN: usize = 16;

/// The fixed 16-byte PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub command_length: usize,
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
}

impl Header {
    fn parse(bytes: &[u8]) -> Self {
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header {
            command_length: word(0) as usize,
            command_id: word(4),
            command_status: word(8),
            sequence_number: word(12),
        }
    }

    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a frame is handled as soon as it is cut, never stored; boxing would allocate per PDU"
)]
pub(crate) enum Frame {
    /// A request PDU that decoded.
    Request(Command),
    /// A response PDU. Only its header matters here, and peers often omit response bodies
    /// (a 16-byte `deliver_sm_resp`), so the body is not decoded.
    Response(Header),
    /// A request that did not decode: answer `generic_nack` with this status.
    Malformed {
        header: Header,
        status: CommandStatus,
    },
}

/// The stream can no longer be framed; the connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    #[error("command_length {command_length} is below the 16-byte header")]
    TooShort {
        command_length: usize,
        sequence_number: Option<u32>,
    },
    #[error("command_length {command_length} exceeds the maximum of {max}")]
    TooLong {
        command_length: usize,
        max: usize,
        sequence_number: Option<u32>,
    },
}

impl FramingError {
    pub fn sequence_number(&self) -> Option<u32> {
        match *self {
            FramingError::TooShort {
                sequence_number, ..
            }
            | FramingError::TooLong {
                sequence_number, ..
            } => sequence_number,
        }
    }
}

/// Takes the next complete PDU off the front of `buf`, or `Ok(None)` if more bytes are
/// needed (having reserved room for the rest of the PDU).
pub(crate) fn next_frame(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<Frame>, FramingError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let command_length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let sequence_number = (buf.len() >= HEADER_LEN).then(|| Header::parse(buf).sequence_number);
    if command_length < HEADER_LEN {
        return Err(FramingError::TooShort {
            command_length,
            sequence_number,
        });
    }
    if command_length > max_len {
        return Err(FramingError::TooLong {
            command_length,
            max: max_len,
            sequence_number,
        });
    }
    if buf.len() < command_length {
        buf.reserve(command_length - buf.len());
        return Ok(None);
    }
    let header = Header::parse(buf);
    let mut pdu = buf.split_to(command_length);
    if header.is_response() {
        return Ok(Some(Frame::Response(header)));
    }
    pdu.advance(4);
    let unknown_id = matches!(CommandId::from(header.command_id), CommandId::Other(_));
    let frame = match Command::decode(&mut pdu, command_length - 4) {
        Ok((command, _)) => match command.pdu() {
            Some(Pdu::Other { .. }) => Frame::Malformed {
                header,
                status: CommandStatus::EsmeRinvcmdid,
            },
            Some(_) => Frame::Request(command),
            None => Frame::Malformed {
                header,
                status: if unknown_id {
                    CommandStatus::EsmeRinvcmdid
                } else {
                    CommandStatus::EsmeRinvcmdlen
                },
            },
        },
        Err(_) => Frame::Malformed {
            header,
            status: if unknown_id {
                CommandStatus::EsmeRinvcmdid
            } else {
                // The body does not parse at the declared length.
                CommandStatus::EsmeRinvcmdlen
            },
        },
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use rusmpp::tokio_codec::CommandCodec;
    use tokio_util::codec::Encoder;

    fn encoded(command: Command) -> BytesMut {
        let mut buf = BytesMut::new();
        CommandCodec::new().encode(command, &mut buf).unwrap();
        buf
    }

    #[test]
    fn two_pdus_in_one_buffer_come_out_one_at_a_time() {
        let mut buf = encoded(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink));
        buf.extend_from_slice(&encoded(Command::new(
            CommandStatus::EsmeRok,
            8,
            Pdu::Unbind,
        )));
        let Some(Frame::Request(first)) = next_frame(&mut buf, 4096).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(first.sequence_number(), 7);
        let Some(Frame::Request(second)) = next_frame(&mut buf, 4096).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(second.id(), CommandId::Unbind);
        assert!(next_frame(&mut buf, 4096).unwrap().is_none());
    }

    #[test]
    fn partial_pdu_waits_for_more_bytes() {
        let full = encoded(Command::new(CommandStatus::EsmeRok, 1, Pdu::EnquireLink));
        let mut buf = BytesMut::from(&full[..10]);
        assert!(next_frame(&mut buf, 4096).unwrap().is_none());
        buf.extend_from_slice(&full[10..]);
        assert!(matches!(
            next_frame(&mut buf, 4096),
            Ok(Some(Frame::Request(_)))
        ));
    }

    #[test]
    fn oversized_and_undersized_lengths_cannot_be_framed() {
        let mut buf = BytesMut::new();
        buf.put_u32(5000);
        buf.put_u32(4);
        buf.put_u32(0);
        buf.put_u32(99);
        let err = next_frame(&mut buf, 4096).unwrap_err();
        assert_eq!(err.sequence_number(), Some(99));
        let mut short = BytesMut::from(&[0u8, 0, 0, 3][..]);
        assert!(matches!(
            next_frame(&mut short, 4096),
            Err(FramingError::TooShort {
                sequence_number: None,
                ..
            })
        ));
    }

    #[test]
    fn undecodable_body_is_malformed_but_the_stream_stays_framed() {
        // submit_sm whose body is 4 bytes of 0xFF: no NUL-terminated service_type.
        let mut buf = BytesMut::new();
        buf.put_u32(20);
        buf.put_u32(0x0000_0004);
        buf.put_u32(0);
        buf.put_u32(42);
        buf.put_u32(0xFFFF_FFFF);
        buf.extend_from_slice(&encoded(Command::new(
            CommandStatus::EsmeRok,
            43,
            Pdu::EnquireLink,
        )));
        match next_frame(&mut buf, 4096).unwrap() {
            Some(Frame::Malformed { header, status }) => {
                assert_eq!(header.sequence_number, 42);
                assert_eq!(status, CommandStatus::EsmeRinvcmdlen);
            }
            other => panic!("expected malformed, got {other:?}"),
        }
        assert!(matches!(
            next_frame(&mut buf, 4096),
            Ok(Some(Frame::Request(_)))
        ));
    }

    #[test]
    fn unknown_command_id_is_malformed_with_invalid_command_id() {
        let mut buf = BytesMut::new();
        buf.put_u32(20);
        buf.put_u32(0x0000_0099);
        buf.put_u32(0);
        buf.put_u32(5);
        buf.put_u32(0);
        let Some(Frame::Malformed { status, .. }) = next_frame(&mut buf, 4096).unwrap() else {
            panic!("expected malformed")
        };
        assert_eq!(status, CommandStatus::EsmeRinvcmdid);
    }

    #[test]
    fn response_without_a_body_is_taken_by_its_header() {
        let mut buf = BytesMut::new();
        buf.put_u32(16);
        buf.put_u32(0x8000_0005);
        buf.put_u32(0);
        buf.put_u32(12);
        let Some(Frame::Response(header)) = next_frame(&mut buf, 4096).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(header.sequence_number, 12);
    }

    #[test]
    fn random_bytes_never_panic_the_framer() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.random_range(16..200usize);
            let mut buf = BytesMut::new();
            buf.put_u32(len as u32);
            // Mostly real request ids, so the body decoders get exercised.
            let ids = [1u32, 2, 4, 5, 6, 9, 0x15, 0x103, 0x21, 0x80000005, 0x77];
            buf.put_u32(ids[rng.random_range(0..ids.len())]);
            buf.put_u32(0);
            buf.put_u32(rng.random());
            for _ in 16..len {
                buf.put_u8(if rng.random_bool(0.3) {
                    0
                } else {
                    rng.random()
                });
            }
            let _ = next_frame(&mut buf, 4096);
        }
    }
}
