//! Typed errors of segmentation (returned by `plan` / `segment`) and of MO decoding (returned by
//! `decode_mo` / `parse_udh`). Display and Error are written by hand to keep the module std-only.

use std::fmt;

/// Why an outbound text cannot be sent. Both are the caller's fault (HTTP 4xx).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentError {
    /// The text is empty (or smart encoding left nothing, which it never chooses to do).
    Empty,
    /// The cheapest encoding still needs `parts` parts; the limit is `max`
    /// (`Options::max_parts`, and never more than 255 since the part count is one octet).
    TooManyParts { parts: usize, max: usize },
    /// [`super::Concat::Payload`]: the encoded text exceeds the 16-bit TLV length.
    PayloadTooLong { octets: usize, max: usize },
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Empty => f.write_str("message text is empty"),
            SegmentError::TooManyParts { parts, max } => {
                write!(
                    f,
                    "message needs {parts} parts, more than the limit of {max}"
                )
            }
            SegmentError::PayloadTooLong { octets, max } => {
                write!(f, "message payload is {octets} octets, more than {max}")
            }
        }
    }
}

impl std::error::Error for SegmentError {}

/// Why an inbound short message could not be decoded. The bytes came from a carrier and may be
/// anything: these are data errors, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// UDHI was set but the message has no octet for the UDH length.
    MissingUdh,
    /// The UDH length octet claims more octets than the message holds.
    UdhTruncated { udhl: usize, available: usize },
    /// An information element runs past the end of the UDH.
    IeTruncated {
        iei: u8,
        len: usize,
        available: usize,
    },
    /// A known information element has the wrong length.
    IeLength {
        iei: u8,
        len: usize,
        expected: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::MissingUdh => f.write_str("UDHI set but the short message is empty"),
            DecodeError::UdhTruncated { udhl, available } => write!(
                f,
                "UDH length {udhl} exceeds the {available} octets that follow it"
            ),
            DecodeError::IeTruncated {
                iei,
                len,
                available,
            } => write!(
                f,
                "UDH information element {iei:#04x} of length {len} exceeds the {available} octets left"
            ),
            DecodeError::IeLength { iei, len, expected } => write!(
                f,
                "UDH information element {iei:#04x} has length {len}, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
