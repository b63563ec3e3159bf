//! `section=directory`: which lookups are answered, and with what.
//!
//! | request | answer |
//! |---|---|
//! | `action` = `sip_auth`, `user_call`, `message-count`, `reverse-auth-lookup`, or none (plain lookup), with `user` and `domain` | the user, when a usable credential has that SIP username in our domain |
//! | `purpose=gateways` (profile start; empty key = domain `all`) or `purpose=network-list` (ACL load) for our domain | the domain without users (no gateways, no ACL entries) |
//! | everything else: other sections and actions, other domains, malformed forms, ids outside the strict charset, unknown / disabled / expired credentials | "not found" |
//!
//! Users are never listed (no enumeration through `network-list`). Known and unknown users cost
//! the same: one cache hit, or one indexed query.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use super::cache::{CachedEntry, DirectoryCache};
use super::form::{Form, FormError};
use super::xml::{DirectoryUser, Document};
use crate::config::SipConfig;
use crate::ids::{valid_domain, valid_user_id};
use crate::store::{DirectoryEntry, Store, StoreError};

/// What a directory request asks for, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// One user (SIP username, lowercased) in our domain.
    User { username: String },
    /// Our domain, without users.
    Domain,
    /// Answer "not found"; the reason is for the debug log.
    NotFound(&'static str),
}

/// The actions answered with the user.
const USER_ACTIONS: [&str; 4] = [
    "sip_auth",
    "user_call",
    "message-count",
    "reverse-auth-lookup",
];

/// Decides what `form` asks for. Pure: no IO, no clock.
pub fn classify(form: &Form, sip: &SipConfig) -> Lookup {
    match classify_inner(form, sip) {
        Ok(lookup) => lookup,
        Err(_) => Lookup::NotFound("repeated field"),
    }
}

fn classify_inner(form: &Form, sip: &SipConfig) -> Result<Lookup, FormError> {
    if form.get_or_empty("section")? != "directory" {
        return Ok(Lookup::NotFound("not the directory section"));
    }
    let ours = |domain: &str| valid_domain(domain) && domain.eq_ignore_ascii_case(&sip.domain);
    let tag = form.get_or_empty("tag_name")?;
    let key_name = form.get_or_empty("key_name")?;
    let key_value = form.get_or_empty("key_value")?;
    let keyed_domain = match (tag, key_name) {
        ("domain", "name") => Some(key_value),
        ("", "") if key_value.is_empty() => None,
        _ => return Ok(Lookup::NotFound("unexpected tag_name/key_name")),
    };

    if let Some(purpose) = form.get("purpose")? {
        return Ok(match purpose {
            // Profile start: `<domain name="all">` sends an empty key; a named domain sends it.
            "gateways" => match keyed_domain {
                None => Lookup::Domain,
                Some(d) if ours(d) => Lookup::Domain,
                Some(_) => Lookup::NotFound("gateways of another domain"),
            },
            "network-list" => match (keyed_domain, form.get("domain")?) {
                (Some(d), Some(d2)) if ours(d) && d.eq_ignore_ascii_case(d2) => Lookup::Domain,
                (Some(d), None) if ours(d) => Lookup::Domain,
                _ => Lookup::NotFound("network-list of another domain"),
            },
            _ => Lookup::NotFound("unknown purpose"),
        });
    }

    match form.get("action")? {
        Some(action) if USER_ACTIONS.contains(&action) => {}
        None => {}
        Some(_) => return Ok(Lookup::NotFound("unsupported action")),
    }
    if !matches!(form.get("key")?, None | Some("id")) {
        return Ok(Lookup::NotFound("lookup by something other than id"));
    }
    let Some(user) = form.get("user")? else {
        return Ok(Lookup::NotFound("no user"));
    };
    let domain = match (form.get("domain")?, keyed_domain) {
        (Some(d), Some(k)) if d.eq_ignore_ascii_case(k) => d,
        (Some(d), None) => d,
        (None, Some(k)) => k,
        _ => return Ok(Lookup::NotFound("no domain, or two different ones")),
    };
    if !ours(domain) {
        return Ok(Lookup::NotFound("not our domain"));
    }
    if !valid_user_id(user) {
        return Ok(Lookup::NotFound("user outside the charset"));
    }
    let auth_user = form.get("sip_auth_username")?;
    if auth_user.is_some_and(|a| !a.eq_ignore_ascii_case(user)) {
        return Ok(Lookup::NotFound("user differs from the digest username"));
    }
    Ok(Lookup::User {
        username: user.to_ascii_lowercase(),
    })
}

/// The variables FreeSWITCH copies to the registration / channel, in document order.
pub fn variables<'a>(entry: &'a DirectoryEntry, sip: &'a SipConfig) -> Vec<(&'a str, &'a str)> {
    let name = if entry.display_name.is_empty() {
        entry.user_id.as_str()
    } else {
        entry.display_name.as_str()
    };
    vec![
        ("user_context", sip.user_context.as_str()),
        ("effective_caller_id_name", name),
        ("effective_caller_id_number", entry.user_id.as_str()),
        ("switchyard_user_id", entry.user_id.as_str()),
    ]
}

/// The answer to `body` at time `now`, rendered. Store failures are returned (the HTTP layer
/// answers them with a 503, which FreeSWITCH logs); everything else is a document.
pub async fn answer(
    store: &Store,
    cache: &DirectoryCache,
    sip: &SipConfig,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Bytes, AnswerError> {
    let form = match Form::parse(body) {
        Ok(form) => form,
        Err(e) => {
            tracing::debug!(error = %e, "malformed directory request");
            return not_found();
        }
    };
    let username = match classify(&form, sip) {
        Lookup::NotFound(why) => {
            tracing::debug!(reason = why, "directory: not found");
            return not_found();
        }
        Lookup::Domain => {
            return Ok(Document::Domain {
                domain: &sip.domain,
            }
            .render()?
            .into());
        }
        Lookup::User { username } => username,
    };
    let cached = match cache.get(&username) {
        Some(hit) => hit,
        None => {
            let ticket = cache.ticket();
            let cached = match store.directory_entry(&username).await? {
                Some(entry) => Some(Arc::new(CachedEntry {
                    document: user_element(sip, &entry).render()?.into(),
                    entry,
                })),
                None => None,
            };
            cache.insert(ticket, &username, cached.clone());
            cached
        }
    };
    // The same checks as `user_document` on every request; only the rendering is cached.
    match cached {
        Some(c) if usable_entry(sip, Some(&c.entry), now).is_some() => Ok(c.document.clone()),
        _ => not_found(),
    }
}

/// The "not found" document, rendered once (it never changes).
fn not_found() -> Result<Bytes, AnswerError> {
    static NOT_FOUND: OnceLock<Bytes> = OnceLock::new();
    if let Some(text) = NOT_FOUND.get() {
        return Ok(text.clone());
    }
    let text = Bytes::from(Document::NotFound.render()?);
    Ok(NOT_FOUND.get_or_init(|| text).clone())
}

/// The answer to a [`Lookup::User`], given what the cache or store holds for that username
/// (`None`: no such credential) at time `now`. Pure: no IO, no clock.
pub fn user_document<'a>(
    sip: &'a SipConfig,
    entry: Option<&'a DirectoryEntry>,
    now: DateTime<Utc>,
) -> Document<'a> {
    match usable_entry(sip, entry, now) {
        Some(entry) => user_element(sip, entry),
        None => Document::NotFound,
    }
}

/// `entry` when it may be answered at `now`: a well-formed hash, enabled, not expired, our
/// realm. Pure: no IO, no clock.
fn usable_entry<'a>(
    sip: &SipConfig,
    entry: Option<&'a DirectoryEntry>,
    now: DateTime<Utc>,
) -> Option<&'a DirectoryEntry> {
    match entry {
        // Fail closed: FreeSWITCH lets a user without any credential register with any
        // password, so a malformed hash is answered "not found" like an unknown user.
        Some(entry) if !is_md5_hex(&entry.a1_hash) => {
            tracing::error!(username = %entry.username, "directory: stored a1-hash is not 32 lowercase hex digits; refusing");
            None
        }
        Some(entry) if entry.usable_at(now) && entry.realm.eq_ignore_ascii_case(&sip.domain) => {
            Some(entry)
        }
        Some(entry) => {
            tracing::debug!(username = %entry.username, "directory: credential disabled, expired or of another realm");
            None
        }
        None => None,
    }
}

/// The user document for `entry`, whether or not it is usable (see [`usable_entry`]).
fn user_element<'a>(sip: &'a SipConfig, entry: &'a DirectoryEntry) -> Document<'a> {
    Document::User {
        domain: &sip.domain,
        user: DirectoryUser {
            username: &entry.username,
            a1_hash: &entry.a1_hash,
            variables: variables(entry, sip),
        },
    }
}

/// An a1-hash as FreeSWITCH compares it: 32 lowercase hex digits.
fn is_md5_hex(hash: &str) -> bool {
    hash.len() == 32 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why no document could be produced.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render the directory document")]
    Render(#[from] std::io::Error),
}
