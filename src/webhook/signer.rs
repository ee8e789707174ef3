//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): the receiver checks
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. Several keys
//! give several space-separated signatures, so an app can rotate its secret without downtime
//! (configure old and new, switch the receiver, drop the old). Pure: no I/O, no clock.

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix Standard Webhooks secrets carry.
pub const SECRET_PREFIX: &str = "whsec_";

/// Shortest key accepted (bytes after base64 decoding).
pub const MIN_KEY_BYTES: usize = 16;

/// Secrets are written padded or unpadded; both decode.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a configured webhook secret was refused. Returned by [`parse_secret`] (config
/// validation); the messages never repeat the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error(
        "webhook secret must look like \"whsec_<base64 key>\" (generate one with: \
         echo whsec_$(head -c 32 /dev/urandom | base64))"
    )]
    MissingPrefix,
    #[error("webhook secret has nothing after \"whsec_\"")]
    Empty,
    #[error("webhook secret is not valid base64 after \"whsec_\" (problem at character {offset})")]
    InvalidBase64 { offset: usize },
    #[error(
        "webhook secret key is {len} bytes; at least {MIN_KEY_BYTES} are required (32 recommended)"
    )]
    TooShort { len: usize },
}

/// Parses a `whsec_<base64>` secret into its key bytes. Surrounding whitespace (a trailing
/// newline from an env file) is ignored.
pub fn parse_secret(s: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = s
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::MissingPrefix)?;
    if b64.is_empty() {
        return Err(SecretError::Empty);
    }
    let key = SECRET_BASE64.decode(b64).map_err(|e| {
        use base64::DecodeError::*;
        let offset = match e {
            InvalidByte(o, _) | InvalidLastSymbol(o, _) => o,
            InvalidLength(_) | InvalidPadding => b64.len(),
        };
        SecretError::InvalidBase64 { offset }
    })?;
    if key.len() < MIN_KEY_BYTES {
        return Err(SecretError::TooShort { len: key.len() });
    }
    Ok(key)
}

/// Keys prepared once (HMAC pads hashed) and reused for every message.
#[derive(Clone)]
pub struct Signer {
    macs: Vec<HmacSha256>,
}

impl Signer {
    pub fn new(keys: &[Vec<u8>]) -> Self {
        Self {
            macs: keys
                .iter()
                .map(|k| HmacSha256::new_from_slice(k).expect("HMAC takes keys of any length"))
                .collect(),
        }
    }

    /// True when there is no key (nothing can be signed).
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// The `webhook-signature` header value: `v1,<sig>` per key, space-separated.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut ts = itoa_buf();
        let ts = format_i64(&mut ts, timestamp);
        let mut out = String::with_capacity(self.macs.len() * 48);
        for mac in &self.macs {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            let tag = digest(mac.clone(), msg_id, ts, body);
            STANDARD.encode_string(tag, &mut out);
        }
        out
    }
}

fn digest(mut mac: HmacSha256, msg_id: &str, ts: &[u8], body: &[u8]) -> [u8; 32] {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts);
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `v` in `buf` (no allocation; i64 needs at most 20 bytes with the sign).
fn format_i64(buf: &mut [u8; 20], v: i64) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// The `webhook-signature` header value for `body`, one `v1,` signature per key.
pub fn sign(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    Signer::new(keys).sign(msg_id, timestamp, body)
}

/// True when any `v1` signature in `header` matches `body` under any of `keys` (constant-time
/// comparison). Checking the timestamp's freshness is the caller's business.
pub fn verify(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mut ts = itoa_buf();
    let ts = format_i64(&mut ts, timestamp);
    let expected: Vec<[u8; 32]> = Signer::new(keys)
        .macs
        .into_iter()
        .map(|mac| digest(mac, msg_id, ts, body))
        .collect();
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|given| expected.iter().any(|e| bool::from(e[..].ct_eq(&given))))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference vector (also produced by python's `standardwebhooks`:
    // Webhook(SECRET).sign(ID, datetime.fromtimestamp(TS, tz=timezone.utc), BODY)).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // A second key ("smsgate-rotated-key-0002"), its signature computed with python the same way.
    const SECRET2: &str = "whsec_c21zZ2F0ZS1yb3RhdGVkLWtleS0wMDAy";
    const ID2: &str = "evt_01J0000000000000000000TEST";
    const TS2: i64 = 1700000000;
    const BODY2: &str = r#"{"id":"evt_01J0000000000000000000TEST","type":"message.status"}"#;
    const EXPECTED2: &str = "v1,hy7sxyckT+jalz+w1RlB8Un2oC67ETMnzgsDU86YKDM=";

    fn key(s: &str) -> Vec<u8> {
        parse_secret(s).unwrap()
    }

    #[test]
    fn sign_should_match_the_reference_vectors() {
        assert_eq!(sign(&[key(SECRET)], ID, TS, BODY.as_bytes()), EXPECTED);
        assert_eq!(sign(&[key(SECRET2)], ID2, TS2, BODY2.as_bytes()), EXPECTED2);
    }

    #[test]
    fn two_keys_should_give_two_space_separated_signatures_each_verifying_alone() {
        let header = sign(&[key(SECRET), key(SECRET2)], ID, TS, BODY.as_bytes());
        let (first, second) = header.split_once(' ').unwrap();
        assert_eq!(first, EXPECTED);
        assert!(second.starts_with("v1,"));
        assert!(verify(&[key(SECRET)], ID, TS, BODY.as_bytes(), &header));
        assert!(verify(&[key(SECRET2)], ID, TS, BODY.as_bytes(), &header));
    }

    #[test]
    fn verify_should_refuse_a_changed_body_id_timestamp_or_key() {
        let k = vec![key(SECRET)];
        assert!(verify(&k, ID, TS, BODY.as_bytes(), EXPECTED));
        assert!(!verify(&k, ID, TS, br#"{"test": 2432232315}"#, EXPECTED));
        assert!(!verify(&k, "msg_other", TS, BODY.as_bytes(), EXPECTED));
        assert!(!verify(&k, ID, TS + 1, BODY.as_bytes(), EXPECTED));
        assert!(!verify(&[key(SECRET2)], ID, TS, BODY.as_bytes(), EXPECTED));
    }

    #[test]
    fn verify_should_skip_unknown_versions_and_garbage() {
        let k = vec![key(SECRET)];
        let sig = EXPECTED.strip_prefix("v1,").unwrap();
        assert!(!verify(&k, ID, TS, BODY.as_bytes(), &format!("v2,{sig}")));
        assert!(!verify(&k, ID, TS, BODY.as_bytes(), "v1,!!!"));
        assert!(!verify(&k, ID, TS, BODY.as_bytes(), ""));
        assert!(verify(
            &k,
            ID,
            TS,
            BODY.as_bytes(),
            &format!("v1a,xyz v1,{sig}")
        ));
    }

    #[test]
    fn parse_secret_should_decode_padded_and_unpadded_base64() {
        // 24 bytes: base64 without padding either way; 17 bytes needs padding.
        assert_eq!(key(SECRET2), b"smsgate-rotated-key-0002");
        assert_eq!(key("whsec_MDEyMzQ1Njc4OWFiY2RlZmc="), b"0123456789abcdefg");
        assert_eq!(key("whsec_MDEyMzQ1Njc4OWFiY2RlZmc"), b"0123456789abcdefg");
        assert_eq!(
            key(" whsec_MDEyMzQ1Njc4OWFiY2RlZmc=\n"),
            b"0123456789abcdefg"
        );
    }

    #[test]
    fn parse_secret_should_refuse_bad_secrets_without_echoing_them() {
        assert_eq!(
            parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(parse_secret("whsec_"), Err(SecretError::Empty));
        assert_eq!(parse_secret(""), Err(SecretError::MissingPrefix));
        let e = parse_secret("whsec_not*base64*at-all").unwrap_err();
        assert_eq!(e, SecretError::InvalidBase64 { offset: 3 });
        assert!(!e.to_string().contains("not*base64"));
        // "short-key" is 9 bytes.
        assert_eq!(
            parse_secret("whsec_c2hvcnQta2V5"),
            Err(SecretError::TooShort { len: 9 })
        );
    }

    #[test]
    fn format_i64_should_write_every_digit() {
        let mut b = itoa_buf();
        for v in [0, 7, 10, 1614265330, -42, i64::MAX, i64::MIN] {
            assert_eq!(format_i64(&mut b, v), v.to_string().as_bytes());
        }
    }
}
