//! Short-lived SIP credentials: generation and the digest `A1` hash.
//!
//! # Scheme
//!
//! Every issued credential is its own SIP user: a random username (`sy` + 22 lowercase
//! alphanumerics) and a random password (32 alphanumerics, ~190 bits). The store keeps one row
//! per credential: username → user id, realm, `a1-hash` = MD5(`username:realm:password`) and
//! the expiry; the password itself is returned once and never stored.
//!
//! Why not a TURN-REST-style HMAC username (`<expiry>:<user>` + HMAC(server secret)):
//! - FreeSWITCH requires the To/From user to equal the digest username, and several tabs of one
//!   user hold credentials at once; a random username per credential gives every tab its own
//!   registration while the directory maps it back to the user id (`switchyard_user_id`).
//! - With HMAC, one server secret derives every password ever issued (a leak compromises all of
//!   them until rotation) and single credentials cannot be revoked. A leaked row here is one
//!   realm-bound hash that stops working at its expiry.
//! - Revocation is the same either way: the directory checks the user's `enabled` flag on every
//!   lookup, and deleting the user deletes its credentials (foreign key cascade).
//!
//! JsSIP can authenticate with `ha1` + `realm` instead of the password; the API returns both.

use md5::{Digest as _, Md5};
use rand::Rng as _;
use rand::distr::Alphanumeric;

/// Prefix of generated SIP usernames (keeps them apart from CppComet-style numeric ids).
pub const USERNAME_PREFIX: &str = "sy";
const USERNAME_RANDOM_LEN: usize = 22;
const PASSWORD_LEN: usize = 32;

/// A freshly generated credential; `password` exists only in this value.
#[derive(Debug, Clone)]
pub struct Generated {
    pub username: String,
    pub password: String,
    pub a1_hash: String,
}

/// Generates a credential for `realm` with the thread-local CSPRNG.
pub fn generate(realm: &str) -> Generated {
    let mut rng = rand::rng();
    let mut username = String::with_capacity(USERNAME_PREFIX.len() + USERNAME_RANDOM_LEN);
    username.push_str(USERNAME_PREFIX);
    // Lowercase only: FreeSWITCH matches user ids case-insensitively, the store exactly.
    username.extend(
        (&mut rng)
            .sample_iter(Alphanumeric)
            .take(USERNAME_RANDOM_LEN)
            .map(|b| char::from(b).to_ascii_lowercase()),
    );
    let password: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect();
    let a1_hash = a1_hash(&username, realm, &password);
    Generated {
        username,
        password,
        a1_hash,
    }
}

/// RFC 2617 `A1` for MD5: lowercase hex of MD5(`username:realm:password`), as FreeSWITCH wants
/// its `a1-hash` param.
pub fn a1_hash(username: &str, realm: &str, password: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    hex(&md5.finalize())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A short-lived credential just stored; `password` exists only here.
#[derive(Debug, Clone)]
pub struct Issued {
    pub username: String,
    pub password: String,
    pub a1_hash: String,
    pub realm: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Generates and stores a credential of `user_id` for `realm`, valid for `ttl`, after dropping
/// the user's expired ones (which keeps the table at about one live row per open tab). The
/// caller has checked that the user exists and is enabled.
pub async fn issue(
    store: &crate::store::Store,
    cache: &crate::freeswitch::cache::DirectoryCache,
    realm: &str,
    user_id: &str,
    ttl: std::time::Duration,
) -> Result<Issued, crate::store::StoreError> {
    let now = chrono::Utc::now();
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    store.delete_expired_sip_credentials(user_id, now).await?;
    let generated = generate(realm);
    store
        .insert_sip_credential(&crate::store::NewSipCredential {
            username: generated.username.clone(),
            user_id: user_id.to_owned(),
            realm: realm.to_owned(),
            a1_hash: generated.a1_hash.clone(),
            expires_at: Some(expires_at),
        })
        .await?;
    cache.invalidate_user(user_id);
    Ok(Issued {
        username: generated.username,
        password: generated.password,
        a1_hash: generated.a1_hash,
        realm: realm.to_owned(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::{a1_hash, generate};
    use crate::ids::valid_user_id;

    #[test]
    fn a1_matches_the_capture() {
        // tests/fixtures/freeswitch/xml-curl-responses.txt, user 1001.
        assert_eq!(
            a1_hash("1001", "127.0.0.1", "secret1001"),
            "1c13f0eb55501935b8c882b618f78401"
        );
    }

    #[test]
    fn generated_credentials_are_valid_and_distinct() {
        let a = generate("example.com");
        let b = generate("example.com");
        assert_ne!(a.username, b.username);
        assert_ne!(a.password, b.password);
        for c in [&a, &b] {
            assert!(valid_user_id(&c.username), "{}", c.username);
            assert_eq!(c.username, c.username.to_ascii_lowercase());
            assert_eq!(c.username.len(), 24);
            assert_eq!(c.password.len(), 32);
            assert_eq!(c.a1_hash, a1_hash(&c.username, "example.com", &c.password));
        }
    }
}
