//! User data header (TS 23.040 9.2.3.24): writing it for MT parts, parsing it from MO messages.

use super::{Concat, DecodeError, NationalShift};

const IEI_CONCAT_8: u8 = 0x00;
const IEI_PORTS_8: u8 = 0x04;
const IEI_PORTS_16: u8 = 0x05;
const IEI_CONCAT_16: u8 = 0x08;
const IEI_SINGLE_SHIFT: u8 = 0x24;
const IEI_LOCKING_SHIFT: u8 = 0x25;

/// The information elements of a UDH that we act on; others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Udh {
    /// Concatenation (IE 0x00 or 0x08); `None` if absent or invalid (seq 0, seq > total).
    pub concat: Option<ConcatInfo>,
    /// Application port addressing (IE 0x04 or 0x05): (destination, originator).
    pub ports: Option<(u16, u16)>,
    /// National language single shift (IE 0x24): the raw language identifier.
    pub national_single: Option<u8>,
    /// National language locking shift (IE 0x25): the raw language identifier.
    pub national_locking: Option<u8>,
}

/// Where a part belongs in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// 8-bit references are widened; reassembly keys must also include the sender.
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

fn expect_len(iei: u8, data: &[u8], expected: usize) -> Result<(), DecodeError> {
    if data.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::IeLength {
            iei,
            len: data.len(),
            expected,
        })
    }
}

/// TS 23.040 9.2.3.24.1: a receiver ignores a concatenation IE whose numbers make no sense.
fn concat_info(reference: u16, total: u8, seq: u8) -> Option<ConcatInfo> {
    (total > 0 && seq > 0 && seq <= total).then_some(ConcatInfo {
        reference,
        total,
        seq,
    })
}

/// Parses the UDH at the start of `bytes`, returning it and the octets it took (UDHL included).
///
/// A repeated IE overrides the earlier one, as TS 23.040 asks of receivers.
pub fn parse_udh(bytes: &[u8]) -> Result<(Udh, usize), DecodeError> {
    let (&udhl, rest) = bytes.split_first().ok_or(DecodeError::MissingUdh)?;
    let udhl = usize::from(udhl);
    let mut ies = rest.get(..udhl).ok_or(DecodeError::UdhTruncated {
        udhl,
        available: rest.len(),
    })?;
    let mut udh = Udh::default();
    while let [iei, rest @ ..] = ies {
        let iei = *iei;
        let Some((&len, rest)) = rest.split_first() else {
            return Err(DecodeError::IeTruncated {
                iei,
                len: 0,
                available: 0,
            });
        };
        let len = usize::from(len);
        if len > rest.len() {
            return Err(DecodeError::IeTruncated {
                iei,
                len,
                available: rest.len(),
            });
        }
        let (data, after) = rest.split_at(len);
        match iei {
            IEI_CONCAT_8 => {
                expect_len(iei, data, 3)?;
                udh.concat = concat_info(u16::from(data[0]), data[1], data[2]);
            }
            IEI_CONCAT_16 => {
                expect_len(iei, data, 4)?;
                udh.concat = concat_info(u16::from_be_bytes([data[0], data[1]]), data[2], data[3]);
            }
            IEI_PORTS_8 => {
                expect_len(iei, data, 2)?;
                udh.ports = Some((u16::from(data[0]), u16::from(data[1])));
            }
            IEI_PORTS_16 => {
                expect_len(iei, data, 4)?;
                udh.ports = Some((
                    u16::from_be_bytes([data[0], data[1]]),
                    u16::from_be_bytes([data[2], data[3]]),
                ));
            }
            IEI_SINGLE_SHIFT => {
                expect_len(iei, data, 1)?;
                udh.national_single = Some(data[0]);
            }
            IEI_LOCKING_SHIFT => {
                expect_len(iei, data, 1)?;
                udh.national_locking = Some(data[0]);
            }
            _ => {}
        }
        ies = after;
    }
    Ok((udh, 1 + udhl))
}

/// Concatenation fields to write into a part's UDH.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConcatIe {
    pub(crate) sixteen_bit: bool,
    pub(crate) reference: u16,
    pub(crate) total: u8,
    pub(crate) seq: u8,
}

/// Octets of UDH (UDHL included) for the given IEs, 0 when there are none.
pub(crate) fn udh_len(concat: Option<Concat>, shift: Option<NationalShift>) -> usize {
    let concat = match concat {
        None => 0,
        Some(Concat::Udh16) => 6,
        // SAR and payload parts are sized as if the SMSC adds an 8-bit concatenation IE.
        Some(Concat::Udh8 | Concat::Sar | Concat::Payload) => 5,
    };
    let ies = concat + shift.map_or(0, |s| s.udh_octets());
    if ies == 0 { 0 } else { 1 + ies }
}

/// Appends a UDH with the given IEs (nothing when there are none).
pub(crate) fn write_udh(out: &mut Vec<u8>, concat: Option<ConcatIe>, shift: Option<NationalShift>) {
    let start = out.len();
    out.push(0); // UDHL, patched below
    if let Some(c) = concat {
        if c.sixteen_bit {
            let [hi, lo] = c.reference.to_be_bytes();
            out.extend_from_slice(&[IEI_CONCAT_16, 4, hi, lo, c.total, c.seq]);
        } else {
            // The 8-bit reference is the low byte; the caller rotates the full 16 bits.
            let [_, lo] = c.reference.to_be_bytes();
            out.extend_from_slice(&[IEI_CONCAT_8, 3, lo, c.total, c.seq]);
        }
    }
    if let Some(s) = shift {
        if s.single {
            out.extend_from_slice(&[IEI_SINGLE_SHIFT, 1, s.language.id()]);
        }
        if s.locking {
            out.extend_from_slice(&[IEI_LOCKING_SHIFT, 1, s.language.id()]);
        }
    }
    let ies = out.len() - start - 1;
    if ies == 0 {
        out.truncate(start);
    } else {
        // At most 6 + 6 octets of IEs, so this never truncates.
        out[start] = ies as u8;
    }
}
