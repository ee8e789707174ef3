//! Encodings, segmentation and concatenation of outbound (MT) texts, and decoding of inbound (MO)
//! short messages. Pure functions over bytes and strings: no I/O, no allocation per character.
//!
//! - [`plan`] picks the cheapest encoding (fewest parts) and counts parts without producing
//!   bytes; the estimate API uses it.
//! - [`segment`] plans and then produces one [`Part`] per `submit_sm`.
//! - [`decode_mo`] and [`parse_udh`] turn an inbound `deliver_sm` body back into text.
//!
//! Files: `gsm7` (TS 23.038 tables, septet packing), `plan` (encoding choice, part layout),
//! `build` (part bytes), `udh` (user data header), `smart` (look-alike replacement), `mo`
//! (inbound decoding), `error`.

mod build;
mod error;
mod gsm7;
mod mo;
mod plan;
mod smart;
mod udh;

#[cfg(test)]
mod tests;

pub use build::segment;
pub use error::{DecodeError, SegmentError};
pub use mo::{DecodedMo, DefaultAlphabet, decode_mo};
pub use plan::plan;
pub use udh::{ConcatInfo, Udh, parse_udh};

use std::fmt;

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet (possibly with national shift tables, see [`Plan::national`]).
    Gsm7,
    /// UTF-16BE code units (surrogate pairs allowed, as every modern handset expects).
    Ucs2,
    /// ISO-8859-1, for carriers that accept `data_coding` 3.
    Latin1,
}

impl Encoding {
    /// The name used in the HTTP API and in metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
            Encoding::Latin1 => "latin1",
        }
    }

    /// The SMPP `data_coding` value: 0 (SMSC default alphabet, GSM-7), 8 (UCS-2), 3 (Latin-1).
    pub fn data_coding(&self) -> u8 {
        match self {
            Encoding::Gsm7 => 0,
            Encoding::Ucs2 => 8,
            Encoding::Latin1 => 3,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the parts of a multi-part message are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Concat {
    /// UDH IE 0x00 with an 8-bit reference (6 octets of UDH): 153 / 134 / 67 per part.
    #[default]
    Udh8,
    /// UDH IE 0x08 with a 16-bit reference (7 octets of UDH): 152 / 133 / 66 per part.
    Udh16,
    /// SAR TLVs (`sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`); the SMSC builds
    /// the UDH, so parts are sized as for [`Concat::Udh8`].
    Sar,
    /// One PDU whose `message_payload` TLV carries the whole text; the SMSC splits it.
    Payload,
}

/// National language shift tables of 3GPP TS 23.038 annex A that we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NationalLanguage {
    /// Locking and single shift tables.
    Turkish,
    /// Single shift table only (the standard defines no Spanish locking shift table).
    Spanish,
    /// Locking and single shift tables.
    Portuguese,
}

impl NationalLanguage {
    /// The national language identifier carried in UDH IEs 0x24 / 0x25.
    pub fn id(self) -> u8 {
        match self {
            NationalLanguage::Turkish => 1,
            NationalLanguage::Spanish => 2,
            NationalLanguage::Portuguese => 3,
        }
    }

    pub fn from_id(id: u8) -> Option<NationalLanguage> {
        match id {
            1 => Some(NationalLanguage::Turkish),
            2 => Some(NationalLanguage::Spanish),
            3 => Some(NationalLanguage::Portuguese),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NationalLanguage::Turkish => "turkish",
            NationalLanguage::Spanish => "spanish",
            NationalLanguage::Portuguese => "portuguese",
        }
    }
}

/// The national shift tables a GSM-7 message uses; each one costs a 3-octet UDH IE in every part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NationalShift {
    pub language: NationalLanguage,
    /// The language's single shift table replaces the extension table (IE 0x24).
    pub single: bool,
    /// The language's locking shift table replaces the default alphabet (IE 0x25).
    pub locking: bool,
}

impl NationalShift {
    /// Octets of UDH the shift IEs take.
    pub fn udh_octets(&self) -> usize {
        3 * (usize::from(self.single) + usize::from(self.locking))
    }
}

/// What the carrier supports and how we want texts cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Texts needing more parts than this are refused (default 10).
    pub max_parts: usize,
    /// How parts are marked (default [`Concat::Udh8`]).
    pub concat: Concat,
    /// National shift tables the carrier and its handsets support (default none).
    pub national: Vec<NationalLanguage>,
    /// The carrier accepts `data_coding` 3 (default false).
    pub latin1: bool,
    /// Replace look-alikes (curly quotes, dashes, ellipsis, odd spaces...) when that avoids UCS-2
    /// or saves parts (default false).
    pub smart_encoding: bool,
    /// Pack GSM-7 septets on the wire (default false: SMPP carriers take one septet per octet).
    pub gsm7_packed: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_parts: 10,
            concat: Concat::Udh8,
            national: Vec::new(),
            latin1: false,
            smart_encoding: false,
            gsm7_packed: false,
        }
    }
}

/// The outcome of planning: encoding and part layout, no bytes yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub encoding: Encoding,
    /// National shift tables in use (GSM-7 only).
    pub national: Option<NationalShift>,
    /// Parts on the air. With [`Concat::Payload`] this is the carrier's likely split (sized as
    /// [`Concat::Udh8`]) while [`Segmented::parts`] holds a single PDU.
    pub parts: usize,
    /// Septets (GSM-7), octets (Latin-1) or UTF-16 code units (UCS-2) in each part.
    pub units_per_part: Vec<usize>,
    /// Capacity of each part in the same units: 160/153, 140/134, 70/67 and so on.
    pub units_per_part_max: usize,
    /// When UCS-2 was chosen: the characters no enabled cheaper alphabet carries (deduplicated,
    /// in order of first appearance); if each one alone fits some alphabet but none fits them
    /// all, the characters outside the GSM-7 default alphabet. Empty otherwise.
    pub forcing_ucs2: Vec<char>,
    /// Smart encoding replaced look-alikes; [`Plan::text`] is the replaced text.
    pub replaced: bool,
    /// The text actually encoded.
    pub text: String,
}

/// One `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// UDH (if any) followed by the payload; with `payload` set, the whole encoded text.
    pub short_message: Vec<u8>,
    /// Set `esm_class` UDHI (0x40): `short_message` starts with a UDH.
    pub udhi: bool,
    /// SAR TLVs to attach ([`Concat::Sar`] with more than one part).
    pub sar: Option<Sar>,
    /// Put `short_message` in the `message_payload` TLV and send `sm_length` 0.
    pub payload: bool,
}

/// Values of the SAR TLVs of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sar {
    pub ref_num: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

/// A planned and encoded message, ready for `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    pub plan: Plan,
    pub data_coding: u8,
    pub parts: Vec<Part>,
}
