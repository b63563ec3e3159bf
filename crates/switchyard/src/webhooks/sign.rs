//! The signature header: `Switchyard-Webhook-Signature: v1=<hex>`, where `<hex>` is the
//! lowercase hex HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes), of
//! `<timestamp>.<body>`: the `Switchyard-Webhook-Timestamp` header (Unix seconds), a dot, and
//! the request body exactly as received.
//!
//! The timestamp is the time of the attempt, so a receiver can refuse replays of old requests
//! ([`verify`] takes a tolerance); the body carries the delivery id for de-duplication.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The version prefix of the signature scheme.
pub const SCHEME: &str = "v1";

/// `v1=<hex hmac-sha256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(secret, &[timestamp.to_string().as_bytes(), b".", body]);
    format!("{SCHEME}={}", hex(&mac))
}

/// Checks a request the way a receiver should: the signature header (one or more
/// comma-separated `v1=<hex>` values; any one matching is enough) against the secret, in
/// constant time, and the timestamp within `tolerance_secs` of `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(timestamp) = timestamp_header.trim().parse::<i64>() else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return false;
    }
    let expected = signature(secret, timestamp, body);
    signature_header
        .split(',')
        .map(str::trim)
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
}

/// HMAC-SHA256 of the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc_vector() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya ", b"want for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The example of docs/webhooks.md (also computed with Python's `hmac`).
    #[test]
    fn signature_matches_the_documented_example() {
        let body = r#"{"id":"wh_0123456789abcdef0123456789abcdef","type":"node.down","created_at":"2025-01-02T03:04:05.678Z","data":{"node":"fs1","previous":"up"}}"#;
        let sig = signature(b"whsec-test-0123456789", 1_735_787_045, body.as_bytes());
        assert_eq!(
            sig,
            "v1=7d01289baa24924ccb9f7f1c2bd3b130d2b6eae07d48d429806e4f589bfc4325"
        );
        let secret = b"whsec-test-0123456789";
        let now = 1_735_787_045;
        assert!(verify(
            secret,
            "1735787045",
            body.as_bytes(),
            &sig,
            now,
            300
        ));
        assert!(verify(
            secret,
            "1735787045",
            body.as_bytes(),
            &format!("v1=00, {sig}"),
            now + 299,
            300
        ));
        // Too old, wrong secret, altered body, altered timestamp, garbage.
        assert!(!verify(
            secret,
            "1735787045",
            body.as_bytes(),
            &sig,
            now + 301,
            300
        ));
        assert!(!verify(
            b"other-secret-0123",
            "1735787045",
            body.as_bytes(),
            &sig,
            now,
            300
        ));
        assert!(!verify(secret, "1735787045", b"{}", &sig, now, 300));
        assert!(!verify(
            secret,
            "1735787046",
            body.as_bytes(),
            &sig,
            now,
            300
        ));
        assert!(!verify(secret, "soon", body.as_bytes(), &sig, now, 300));
        assert!(!verify(secret, "1735787045", body.as_bytes(), "", now, 300));
    }
}
