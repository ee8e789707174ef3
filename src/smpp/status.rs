//! The one place that decides what a carrier's `command_status` means for a part:
//! back-pressure (wait and retry), temporary (retry with backoff), or permanent (fail).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Ok,
    /// The carrier is asking us to slow down; never a failure.
    Throttled,
    /// Worth trying again later.
    Temporary,
    /// Will never succeed as submitted.
    Permanent,
}

/// Classifies a `submit_sm_resp` / `generic_nack` status.
pub fn classify(status: u32) -> StatusClass {
    match status {
        0x0000_0000 => StatusClass::Ok,
        // ESME_RMSGQFUL, ESME_RTHROTTLED
        0x0000_0014 | 0x0000_0058 => StatusClass::Throttled,
        // ESME_RSYSERR, ESME_RSUBMITFAIL, ESME_RX_T_APPN, ESME_RDELIVERYFAILURE,
        // ESME_RINVBNDSTS (not bound yet), ESME_RUNKNOWNERR
        0x0000_0008 | 0x0000_0045 | 0x0000_0064 | 0x0000_00FE | 0x0000_0004 | 0x0000_00FF => {
            StatusClass::Temporary
        }
        _ => StatusClass::Permanent,
    }
}

/// Backoff before attempt `attempts + 1` of a temporarily refused part: 2 s doubling to 5 min.
pub fn retry_delay(class: StatusClass, attempts: u32) -> Duration {
    match class {
        StatusClass::Throttled => Duration::from_millis(500 * u64::from(attempts.min(6) + 1)),
        _ => Duration::from_secs((2u64 << attempts.min(8)).min(300)),
    }
}

/// The spec name of a status, for error codes shown to apps.
pub fn name(status: u32) -> String {
    let known = match status {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x14 => "ESME_RMSGQFUL",
        0x15 => "ESME_RINVSERTYP",
        0x33 => "ESME_RINVNUMDESTS",
        0x40 => "ESME_RINVDESTFLAG",
        0x42 => "ESME_RINVSUBREP",
        0x43 => "ESME_RINVESMCLASS",
        0x45 => "ESME_RSUBMITFAIL",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP",
        0x54 => "ESME_RINVREPFLAG",
        0x55 => "ESME_RINVNUMMSGS",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x63 => "ESME_RINVDFTMSGID",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0x67 => "ESME_RQUERYFAIL",
        0xC0 => "ESME_RINVTLVSTREAM",
        0xC1 => "ESME_RTLVNOTALLWD",
        0xC2 => "ESME_RINVTLVLEN",
        0xC3 => "ESME_RMISSINGTLV",
        0xC4 => "ESME_RINVTLVVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        _ => return format!("SMPP_0x{status:08X}"),
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_back_pressure_not_failures() {
        assert_eq!(classify(0x58), StatusClass::Throttled);
        assert_eq!(classify(0x14), StatusClass::Throttled);
    }

    #[test]
    fn bad_destinations_fail_and_system_errors_retry() {
        assert_eq!(classify(0x0B), StatusClass::Permanent);
        assert_eq!(classify(0x08), StatusClass::Temporary);
        assert_eq!(classify(0), StatusClass::Ok);
        assert_eq!(name(0x0B), "ESME_RINVDSTADR");
        assert_eq!(name(0x1234), "SMPP_0x00001234");
    }

    #[test]
    fn temporary_backoff_grows_and_is_capped() {
        let d: Vec<_> = (0..12)
            .map(|a| retry_delay(StatusClass::Temporary, a))
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(d[11], Duration::from_secs(300));
    }
}
