//! Framing for SMPP over a byte stream. Bytes stay here; the session sees typed commands.
//!
//! We frame by `command_length` ourselves and hand each whole frame to rusmpp's decoder, so a
//! PDU whose body does not decode becomes [`Frame::Malformed`] (answered with a generic_nack)
//! instead of ending the stream; only a length that makes framing impossible is fatal.

use bytes::{Buf, BufMut, BytesMut};
use rusmpp::{
    Command,
    decode::DecodeWithLength,
    encode::{Length, owned::Encode},
};
use tokio_util::codec::{Decoder, Encoder};

const HEADER_LEN: usize = 16;

// Frames are moved straight out of the decoder, so the size gap between a decoded command and
// the rare malformed header costs nothing worth an allocation per PDU.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Frame {
    Command(Command),
    /// A frame whose body rusmpp could not decode; the header fields let us answer it.
    Malformed {
        command_id: u32,
        sequence_number: u32,
        error: String,
    },
}

/// Errors that end a connection: after them the byte stream can no longer be framed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("command_length {length} is outside 16..={max}")]
    BadLength { length: usize, max: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct SmppCodec {
    max_length: usize,
}

impl SmppCodec {
    pub fn new(max_length: usize) -> Self {
        Self {
            max_length: max_length.max(HEADER_LEN),
        }
    }
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if !(HEADER_LEN..=self.max_length).contains(&length) {
            return Err(FrameError::BadLength {
                length,
                max: self.max_length,
            });
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(length);
        let command_id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let sequence_number = u32::from_be_bytes([frame[12], frame[13], frame[14], frame[15]]);
        frame.advance(4);
        match Command::decode(&mut frame, length - 4) {
            // Bytes command_length counts that the PDU does not: the length is wrong
            // (ESME_RINVCMDLEN), whatever the decoder made of the rest.
            Ok((_, used)) if used != length - 4 => Ok(Some(Frame::Malformed {
                command_id,
                sequence_number,
                error: format!("command_length {length} but the PDU is {} bytes", used + 4),
            })),
            Ok((command, _)) => Ok(Some(Frame::Command(command))),
            Err(e) => Ok(Some(Frame::Malformed {
                command_id,
                sequence_number,
                error: e.to_string(),
            })),
        }
    }

    /// At end of stream a PDU cut short is dropped: the peer closed the connection, which is
    /// what the session reports, rather than a framing error.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                if !src.is_empty() {
                    tracing::debug!(
                        bytes = src.len(),
                        "connection closed in the middle of a PDU"
                    );
                    src.clear();
                }
                Ok(None)
            }
        }
    }
}

impl Encoder<&Command> for SmppCodec {
    type Error = FrameError;

    fn encode(&mut self, command: &Command, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(command, dst);
        Ok(())
    }
}

/// Appends one PDU to a write buffer.
pub fn encode_into(command: &Command, dst: &mut BytesMut) {
    let length = 4 + command.length();
    dst.reserve(length);
    dst.put_u32(length as u32);
    command.encode(dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::{CommandStatus, Pdu};

    fn enquire(seq: u32) -> BytesMut {
        let mut b = BytesMut::new();
        encode_into(
            &Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink),
            &mut b,
        );
        b
    }

    #[test]
    fn bytes_beyond_the_pdu_make_it_malformed_and_the_stream_stays_framed() {
        // enquire_link (no body) whose command_length claims 4 more bytes, then a good one.
        let mut buf = BytesMut::new();
        buf.put_u32(20);
        buf.put_u32(0x0000_0015);
        buf.put_u32(0);
        buf.put_u32(5);
        buf.put_slice(&[1, 2, 3, 4]);
        buf.extend_from_slice(&enquire(6));
        let mut codec = SmppCodec::new(4096);
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Malformed {
                command_id: 0x15,
                sequence_number: 5,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 6),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_pdu_cut_short_by_the_end_of_the_stream_is_dropped_not_an_error() {
        let whole = enquire(7);
        let mut codec = SmppCodec::new(4096);
        let mut buf = BytesMut::from(&whole[..10]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
        // A whole frame still decodes at the end of the stream.
        let mut buf = whole.clone();
        assert!(matches!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(Frame::Command(_))
        ));
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let whole = enquire(7);
        let mut codec = SmppCodec::new(4096);
        let mut buf = BytesMut::from(&whole[..10]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&whole[10..]);
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 7),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_undecodable_body_is_reported_and_the_next_frame_still_decodes() {
        // submit_sm (0x4) whose body is 3 bytes of garbage, then a good enquire_link.
        let mut buf = BytesMut::new();
        buf.put_u32(19);
        buf.put_u32(0x0000_0004);
        buf.put_u32(0);
        buf.put_u32(42);
        buf.put_slice(&[0xff, 0xff, 0xff]);
        buf.extend_from_slice(&enquire(43));
        let mut codec = SmppCodec::new(4096);
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Malformed {
                command_id,
                sequence_number,
                ..
            }) => assert_eq!((command_id, sequence_number), (4, 42)),
            other => panic!("unexpected {other:?}"),
        }
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 43),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_oversized_command_length_is_refused_before_buffering() {
        let mut buf = BytesMut::new();
        buf.put_u32(1_000_000);
        buf.put_u32(4);
        let mut codec = SmppCodec::new(4096);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::BadLength {
                length: 1_000_000,
                ..
            })
        ));
        let mut tiny = BytesMut::from(&[0u8, 0, 0, 3, 0, 0, 0, 0][..]);
        assert!(codec.decode(&mut tiny).is_err());
    }
}
