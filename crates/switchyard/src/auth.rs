//! Who may call: API keys for `/v1`, basic auth + address allow-list for `/freeswitch`.
//!
//! Secrets are kept only as SHA-256 digests and compared in constant time ([`subtle`]): the
//! presented secret is hashed and compared with every configured digest, without stopping at
//! the first match, so timing says nothing about which key (or how much of it) matched.
//! Nothing here logs or formats a secret; `Debug` shows key ids only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::config::{ApiConfig, FreeswitchConfig, Scope};

type Digest = [u8; 32];

fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// One configured API key, as a digest.
#[derive(Clone)]
pub struct ApiKey {
    pub id: String,
    pub scopes: Vec<Scope>,
    digest: Digest,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Every configured API key.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    pub fn from_config(config: &ApiConfig) -> Self {
        Self {
            keys: config
                .keys
                .iter()
                .map(|k| ApiKey {
                    id: k.id.clone(),
                    scopes: k.scopes.clone(),
                    digest: sha256(k.key.expose_secret().as_bytes()),
                })
                .collect(),
        }
    }

    /// The key whose secret is `presented`, if any (constant time over all keys).
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for key in &self.keys {
            let equal: Choice = key.digest.ct_eq(&digest);
            if bool::from(equal) && found.is_none() {
                found = Some(key);
            }
        }
        found
    }

    /// `Authorization` header value → key: `Bearer <key>` (scheme case-insensitive).
    pub fn authenticate_header(&self, authorization: &[u8]) -> Option<&ApiKey> {
        let value = std::str::from_utf8(authorization).ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.authenticate(token.trim())
    }
}

/// Why a node request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRefusal {
    /// The peer address is outside `freeswitch.allow_from` (403).
    AddressNotAllowed,
    /// Missing or wrong basic-auth credentials, or no password configured (401).
    BadCredentials,
}

/// Which configured password a node presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePassword {
    /// `freeswitch.password`.
    Current,
    /// `freeswitch.previous_password` (a rotation is under way).
    Previous,
}

/// The `[freeswitch]` access rules, prepared.
#[derive(Clone)]
pub struct NodeAccess {
    allow_from: Vec<IpNet>,
    /// SHA-256 of `username:password`; `None` when no password is configured.
    credentials: Option<Digest>,
    /// SHA-256 of `username:previous_password`, during a rotation.
    previous: Option<Digest>,
    /// When each node was last logged as using the previous password (allow-listed peers
    /// only, so bounded by the fleet).
    previous_logged: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// A node still on the previous password is logged at most this often.
const PREVIOUS_LOG_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for NodeAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAccess")
            .field("allow_from", &self.allow_from)
            .field("credentials_configured", &self.credentials.is_some())
            .field("previous_configured", &self.previous.is_some())
            .finish()
    }
}

impl NodeAccess {
    /// Invalid CIDRs are skipped here; config validation refuses them before startup.
    pub fn from_config(config: &FreeswitchConfig) -> Self {
        Self {
            allow_from: config
                .allow_from
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            credentials: config.password.as_ref().map(|p| user_password(config, p)),
            // Only alongside a current password (config validation insists on it).
            previous: config
                .previous_password
                .as_ref()
                .filter(|_| config.password.is_some())
                .map(|p| user_password(config, p)),
            previous_logged: Arc::default(),
        }
    }

    /// Whether to log now that `peer` used the previous password (once a minute per node).
    pub fn log_previous_use(&self, peer: IpAddr) -> bool {
        let mut logged = self
            .previous_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match logged.get(&peer) {
            Some(at) if now.duration_since(*at) < PREVIOUS_LOG_EVERY => false,
            _ => {
                logged.insert(peer, now);
                true
            }
        }
    }

    /// Checks the peer address first, then the `Authorization` header; which password matched.
    pub fn check(
        &self,
        peer: IpAddr,
        authorization: Option<&[u8]>,
    ) -> Result<NodePassword, NodeRefusal> {
        let peer = peer.to_canonical();
        if !self.allow_from.iter().any(|net| net.contains(&peer)) {
            return Err(NodeRefusal::AddressNotAllowed);
        }
        let expected = self.credentials.ok_or(NodeRefusal::BadCredentials)?;
        let presented = authorization
            .and_then(basic_credentials)
            .ok_or(NodeRefusal::BadCredentials)?;
        let presented = sha256(&presented);
        // Both compared, in constant time, whichever matches.
        let current = bool::from(expected.ct_eq(&presented));
        let previous = self
            .previous
            .is_some_and(|previous| bool::from(previous.ct_eq(&presented)));
        match (current, previous) {
            (true, _) => Ok(NodePassword::Current),
            (false, true) => Ok(NodePassword::Previous),
            (false, false) => Err(NodeRefusal::BadCredentials),
        }
    }
}

fn user_password(config: &FreeswitchConfig, password: &SecretString) -> Digest {
    sha256(format!("{}:{}", config.username, password.expose_secret()).as_bytes())
}

/// `Basic <base64(user:pass)>` → the decoded `user:pass` bytes.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use secrecy::SecretString;

    use super::{ApiKeys, NodeAccess, NodePassword, NodeRefusal};
    use crate::config::{ApiConfig, ApiKeyConfig, FreeswitchConfig, Scope};

    fn keys() -> ApiKeys {
        ApiKeys::from_config(&ApiConfig {
            keys: vec![
                ApiKeyConfig {
                    id: "reader".to_owned(),
                    key: SecretString::from("r".repeat(30)),
                    scopes: vec![Scope::UsersRead],
                },
                ApiKeyConfig {
                    id: "writer".to_owned(),
                    key: SecretString::from("w".repeat(30)),
                    scopes: vec![Scope::UsersWrite, Scope::CredentialsIssue],
                },
            ],
        })
    }

    #[test]
    fn api_keys() {
        let keys = keys();
        let bearer = |k: &str| format!("Bearer {k}");
        let reader = keys.authenticate_header(bearer(&"r".repeat(30)).as_bytes());
        assert_eq!(reader.map(|k| k.id.as_str()), Some("reader"));
        assert!(reader.is_some_and(|k| k.allows(Scope::UsersRead)));
        assert!(reader.is_some_and(|k| !k.allows(Scope::UsersWrite)));
        let writer = keys.authenticate_header(format!("bearer {}", "w".repeat(30)).as_bytes());
        assert_eq!(writer.map(|k| k.id.as_str()), Some("writer"));
        for bad in [
            bearer(&"r".repeat(29)),
            bearer(""),
            "r".repeat(30),
            format!("Basic {}", "r".repeat(30)),
        ] {
            assert!(keys.authenticate_header(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(keys.authenticate_header(b"Bearer \xff").is_none());
        let debug = format!("{keys:?}");
        assert!(
            !debug.contains("rrrr") && !debug.contains("wwww"),
            "{debug}"
        );
    }

    #[test]
    fn node_access() {
        let config = FreeswitchConfig {
            password: Some(SecretString::from("s3cret")),
            ..FreeswitchConfig::default()
        };
        let access = NodeAccess::from_config(&config);
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        let local = "127.0.0.1"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let good = basic("freeswitch:s3cret");
        assert_eq!(
            access.check(local, Some(good.as_bytes())),
            Ok(NodePassword::Current)
        );
        let mapped = "::ffff:127.0.0.1".parse().unwrap_or(local);
        assert_eq!(
            access.check(mapped, Some(good.as_bytes())),
            Ok(NodePassword::Current)
        );
        let remote = "192.0.2.9".parse().unwrap_or(local);
        assert_eq!(
            access.check(remote, Some(good.as_bytes())),
            Err(NodeRefusal::AddressNotAllowed)
        );
        for bad in [
            basic("freeswitch:wrong"),
            basic("other:s3cret"),
            basic("freeswitch:s3cret\n"),
            "Basic !!!".to_owned(),
            "Bearer x".to_owned(),
        ] {
            assert_eq!(
                access.check(local, Some(bad.as_bytes())),
                Err(NodeRefusal::BadCredentials),
                "{bad}"
            );
        }
        assert_eq!(access.check(local, None), Err(NodeRefusal::BadCredentials));
        let unset = NodeAccess::from_config(&FreeswitchConfig::default());
        assert_eq!(
            unset.check(local, Some(basic("freeswitch:").as_bytes())),
            Err(NodeRefusal::BadCredentials),
            "no password configured: nothing gets in"
        );
    }

    #[test]
    fn previous_password_is_accepted_during_a_rotation() {
        let basic = |up: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(up)
            )
        };
        let local = std::net::Ipv4Addr::LOCALHOST.into();
        let rotating = NodeAccess::from_config(&FreeswitchConfig {
            password: Some(SecretString::from("new-one")),
            previous_password: Some(SecretString::from("old-one")),
            ..FreeswitchConfig::default()
        });
        for (presented, expected) in [
            ("freeswitch:new-one", Ok(NodePassword::Current)),
            ("freeswitch:old-one", Ok(NodePassword::Previous)),
            ("freeswitch:other", Err(NodeRefusal::BadCredentials)),
            ("other:old-one", Err(NodeRefusal::BadCredentials)),
        ] {
            assert_eq!(
                rotating.check(local, Some(basic(presented).as_bytes())),
                expected,
                "{presented}"
            );
        }
        // A previous password alone (refused by validation) lets nobody in.
        let orphan = NodeAccess::from_config(&FreeswitchConfig {
            previous_password: Some(SecretString::from("old-one")),
            ..FreeswitchConfig::default()
        });
        assert_eq!(
            orphan.check(local, Some(basic("freeswitch:old-one").as_bytes())),
            Err(NodeRefusal::BadCredentials)
        );
        assert!(!format!("{rotating:?}").contains("old-one"));
    }
}
