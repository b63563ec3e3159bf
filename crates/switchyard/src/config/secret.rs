//! Serializers that keep secrets out of `check-config` output.
//!
//! `secrecy` refuses to serialize secrets at all; these `serialize_with` helpers print a
//! placeholder instead, or for URLs everything but the password, so an operator can still see
//! which host and database the service would use.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

/// What a redacted secret looks like in output.
pub const REDACTED: &str = "[redacted]";

pub fn serialize_redacted<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

pub fn serialize_opt_redacted<S: Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

pub fn serialize_url<S: Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url.expose_secret()))
}

pub fn serialize_opt_url<S: Serializer>(
    url: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serialize_url(url, s),
        None => s.serialize_none(),
    }
}

/// `scheme://user:password@host/…` → `scheme://user:[redacted]@host/…`; URLs without a
/// password come back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact_url("postgres://sy:hunter2@db:5432/sy?sslmode=require"),
            "postgres://sy:[redacted]@db:5432/sy?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:pw@cache/0"),
            "redis://:[redacted]@cache/0"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        for url in [
            "sqlite://switchyard.db?mode=rwc",
            "postgres://postgres@127.0.0.1/test",
            "not a url",
            "postgres://db/x?note=a@b",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
