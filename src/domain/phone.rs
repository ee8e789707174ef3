//! E.164 phone numbers. Apps may send E.164 (`+12125551234`) or 10/11-digit NANP numbers;
//! everything inside smsgate is E.164. `Display` redacts to the last 4 digits because numbers
//! are patients' data: use [`PhoneNumber::as_str`] only where the full number must go out
//! (SMPP, the store, API responses to the owning app).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a number was refused; the API maps every variant to `invalid_number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    #[error("a phone number must be E.164 (+ and 8 to 15 digits) or a 10/11-digit NANP number")]
    Format,
    #[error("{0} is not a valid NANP area code")]
    AreaCode(String),
    #[error("{0} is not a valid NANP exchange")]
    Exchange(String),
    #[error("555-01xx numbers are reserved for fiction")]
    Fictional,
}

impl PhoneNumber {
    /// Parses and normalises a number given by an app, a phone system or a config file.
    /// Formatting characters (spaces, dashes, dots, parentheses) are ignored.
    pub fn parse(input: &str) -> Result<Self, NumberError> {
        let trimmed = input.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(NumberError::Format),
            }
        }
        let e164 = if plus {
            digits
        } else if digits.len() == 10 {
            format!("1{digits}")
        } else if digits.len() == 11 && digits.starts_with('1') {
            digits
        } else {
            return Err(NumberError::Format);
        };
        if !(8..=15).contains(&e164.len()) || e164.starts_with('0') {
            return Err(NumberError::Format);
        }
        if let Some(national) = e164.strip_prefix('1') {
            check_nanp(national)?;
        }
        Ok(Self(format!("+{e164}")))
    }

    /// Wraps a number read back from our own store (already validated when it went in).
    pub fn from_store(s: String) -> Self {
        Self(s)
    }

    /// The full E.164 form. Never log this above debug level.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits only (no `+`), the usual SMPP address form with TON international.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The last four digits, the only part of a number that logs show.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len().saturating_sub(4)..]
    }
}

/// `…0123`: how a number appears in logs and metrics-free diagnostics.
impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "…{}", self.last4())
    }
}

/// Redacts any string that may be a phone number to its last 4 characters.
pub fn redact(s: &str) -> String {
    let tail: String = s
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn check_nanp(national: &str) -> Result<(), NumberError> {
    if national.len() != 10 {
        return Err(NumberError::Format);
    }
    let b = national.as_bytes();
    let area = &national[0..3];
    // NXX: N is 2-9; N11 codes are service codes (411, 911), never area codes.
    if !(b'2'..=b'9').contains(&b[0]) || (b[1] == b'1' && b[2] == b'1') || b[1] == b'9' {
        return Err(NumberError::AreaCode(area.to_owned()));
    }
    let exchange = &national[3..6];
    if !(b'2'..=b'9').contains(&b[3]) || (b[4] == b'1' && b[5] == b'1') {
        return Err(NumberError::Exchange(exchange.to_owned()));
    }
    if exchange == "555" && &national[6..8] == "01" {
        return Err(NumberError::Fictional);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanp_forms_normalise_to_e164() {
        for input in [
            "+12125551234",
            "12125551234",
            "2125551234",
            "(212) 555-1234",
            " 212.555.1234 ",
        ] {
            assert_eq!(PhoneNumber::parse(input).unwrap().as_str(), "+12125551234");
        }
        assert_eq!(
            PhoneNumber::parse("+447911123456").unwrap().as_str(),
            "+447911123456"
        );
    }

    #[test]
    fn impossible_numbers_are_refused_with_a_reason() {
        let cases = [
            ("212555012", NumberError::Format),
            ("+1212555123445678", NumberError::Format),
            ("22125551234", NumberError::Format),
            ("abc", NumberError::Format),
            ("+", NumberError::Format),
            ("1125550123", NumberError::AreaCode("112".into())),
            ("9115550123", NumberError::AreaCode("911".into())),
            ("2121550123", NumberError::Exchange("155".into())),
            ("2124110123", NumberError::Exchange("411".into())),
            ("2125550199", NumberError::Fictional),
        ];
        for (input, want) in cases {
            assert_eq!(PhoneNumber::parse(input), Err(want), "{input}");
        }
    }

    #[test]
    fn display_shows_only_the_last_four_digits() {
        let n = PhoneNumber::parse("+12125551234").unwrap();
        assert_eq!(n.to_string(), "…1234");
        assert!(!format!("{n}").contains("212"));
        assert_eq!(redact("+12125551234"), "…1234");
    }
}
