//! Digest authentication headers (RFC 2617 / RFC 3261 §22): sofia's challenges and the
//! parsing of `Authorization` / `Proxy-Authorization`. Verification lives in
//! [`crate::directory`], against the user mod_xml_curl returns.

use super::message::split_list;
use crate::directory::DigestCredentials;

/// Why an `Authorization` header is unusable (sofia answers with a fresh, stale challenge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("not a Digest authorization")]
    NotDigest,
    #[error("digest parameter {0} missing")]
    Missing(&'static str),
}

/// The `WWW-Authenticate` / `Proxy-Authenticate` value sofia sends (capture:
/// sip-ws-register-1002.txt); `stale=true` for an expired or unknown nonce.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let mut v = format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"");
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// Parses a `Digest k=v, k="v"` credentials value for a request of `method`.
pub fn parse_credentials(value: &str, method: &str) -> Result<DigestCredentials, CredentialsError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(CredentialsError::NotDigest);
    }
    let mut c = DigestCredentials {
        method: method.to_owned(),
        ..DigestCredentials::default()
    };
    for item in split_list(rest) {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "username" => c.username = v,
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "uri" => c.uri = v,
            "response" => c.response = v,
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "cnonce" => c.cnonce = Some(v),
            _ => {}
        }
    }
    for (name, v) in [
        ("username", &c.username),
        ("realm", &c.realm),
        ("nonce", &c.nonce),
        ("uri", &c.uri),
        ("response", &c.response),
    ] {
        if v.is_empty() {
            return Err(CredentialsError::Missing(name));
        }
    }
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::directory::{a1_hash, digest_response};

    #[test]
    fn parses_the_captured_ws_authorization() {
        let v = r#"Digest username="1002", realm="127.0.0.1", nonce="506c2eb8-63f1-4389-b9bf-0203d14598c9", uri="sip:127.0.0.1", response="144a3bd28735ac4e1d6aef1a7b4ded8d", algorithm=MD5, cnonce="deadbeef", qop=auth, nc=00000001"#;
        let c = parse_credentials(v, "REGISTER").unwrap();
        assert_eq!(c.username, "1002");
        assert_eq!(c.uri, "sip:127.0.0.1");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        let ha1 = a1_hash("1002", "127.0.0.1", "secret1002");
        let expected = digest_response(
            &ha1,
            &c.nonce,
            Some(("00000001", "deadbeef", "auth")),
            "REGISTER",
            &c.uri,
        );
        assert_eq!(expected, c.response);
    }

    #[test]
    fn sipp_style_without_spaces_and_bad_values() {
        let v = r#"Digest username="1001",realm="127.0.0.1",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="c9",response="1b",algorithm=MD5"#;
        let c = parse_credentials(v, "INVITE").unwrap();
        assert_eq!(
            (c.realm.as_str(), c.method.as_str()),
            ("127.0.0.1", "INVITE")
        );
        assert_eq!(
            parse_credentials("Basic abc", "X"),
            Err(CredentialsError::NotDigest)
        );
        assert_eq!(
            parse_credentials(r#"Digest username="a""#, "X"),
            Err(CredentialsError::Missing("realm"))
        );
        assert!(parse_credentials("", "X").is_err());
        assert_eq!(
            challenge("r", "n", true),
            r#"Digest realm="r", nonce="n", algorithm=MD5, qop="auth", stale=true"#
        );
    }
}
