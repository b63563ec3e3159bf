//! The strict character sets of identifiers that reach FreeSWITCH.
//!
//! User ids, SIP usernames and domains end up in SIP URIs, in directory XML (which FreeSWITCH
//! runs through its pre-processor: `$${var}` expansion, `<X-PRE-PROCESS>`, line dropping) and
//! in logs. Only these characters are accepted anywhere; everything else is refused at the edge.

/// The user id charset, as written in API error messages.
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`: user ids, SIP usernames, dialplan contexts.
pub fn valid_user_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            bytes.len() <= 64
                && first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
        None => false,
    }
}

/// The conference name charset, as written in API error messages.
pub const CONFERENCE_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`: conference names. They reach the dialplan
/// (`conference <name>@<profile>`, where `@` would start the profile and `+` a PIN), `api`
/// commands and Redis keys, so the user id charset is used for them too.
pub fn valid_conference_name(name: &str) -> bool {
    valid_user_id(name)
}

/// A host name or IPv4 address: `[A-Za-z0-9]` first and last, `[A-Za-z0-9.-]` between, at most
/// 253 characters. (IPv6 literals are not SIP domains FreeSWITCH users register in.)
pub fn valid_domain(domain: &str) -> bool {
    let bytes = domain.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 253
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{valid_domain, valid_user_id};

    #[test]
    fn user_ids() {
        for ok in ["a", "1000123", "alice.b-c_d", "A9", &"a".repeat(64)] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a\"/><user id=\"admin",
            "a$${x}",
            "zoë",
            "a@b",
            "a/b",
            "a\n",
            &"a".repeat(65),
        ] {
            assert!(!valid_user_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn domains() {
        for ok in ["127.0.0.1", "example.com", "sip-1.example.com", "a"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in [
            "",
            ".example.com",
            "example.com.",
            "-a",
            "a_b",
            "a b",
            "::1",
            "a\"b",
            "$${domain}",
            &"a".repeat(254),
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
    }
}
