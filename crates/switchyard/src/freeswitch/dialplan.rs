//! `section=dialplan`: conference extensions.
//!
//! Destination format: `conf*<name>` (`*` is dialable from any SIP phone and not URL-escaped
//! by FreeSWITCH; the conference name follows the user id charset, so it can carry none of
//! mod_conference's `@`, `+`, `{` syntax). The profile comes from the store (the invitation),
//! never from the dialer.
//!
//! The caller is the channel variable `switchyard_user_id`, which only our directory sets (after
//! digest authentication). Then:
//!
//! | store verdict | answer |
//! |---|---|
//! | join | `answer`, then `conference <name>@<profile>` |
//! | full | `respond 486 Busy Here` |
//! | locked / not invited | `respond 403 Forbidden` |
//! | unknown conference, or no authenticated caller | `respond 404 Not Found` / `403` |
//! | the store cannot be asked | `respond 503 Service Unavailable` (an HTTP error would make FreeSWITCH fall back to its static dialplan) |
//! | join, but the conference is placed on another node | `respond 404 Not Found` (it is not here; a conference never runs on two nodes) |
//!
//! The asking node is the form's `hostname` (FreeSWITCH's switchname; `freeswitch-conf/` sets it
//! to the node id). When it names a node of the pool, a join is checked against the placement
//! and, for a conference not placed yet, claims it for that node. A hostname that names no node
//! cannot be checked: the join is admitted and the conference adopted when it starts.
//!
//! Anything that is not a `conf*` destination, another section, or a malformed form: "not
//! found" (FreeSWITCH then tries the next binding or its static dialplan).

use super::form::{Form, FormError};
use super::xml::{DialplanAction, Document};
use crate::ids::valid_user_id;
use crate::store::{Admission, Claim, NewConference, Origin, Store};

/// The destination prefix of conference extensions.
pub const CONFERENCE_PREFIX: &str = "conf*";

/// What a dialplan request asks for, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialplanLookup {
    /// A conference destination.
    Conference {
        context: String,
        destination: String,
        name: String,
        /// `None` when the channel carries no (valid) `switchyard_user_id`.
        caller: Option<String>,
    },
    NotFound(&'static str),
}

/// Decides what `form` asks for. Pure.
pub fn classify(form: &Form) -> DialplanLookup {
    classify_inner(form).unwrap_or(DialplanLookup::NotFound("repeated field"))
}

fn first<'a>(form: &'a Form, names: &[&str]) -> Result<Option<&'a str>, FormError> {
    for name in names {
        if let Some(value) = form.get(name)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn classify_inner(form: &Form) -> Result<DialplanLookup, FormError> {
    if form.get_or_empty("section")? != "dialplan" {
        return Ok(DialplanLookup::NotFound("not the dialplan section"));
    }
    let Some(destination) = first(
        form,
        &["Hunt-Destination-Number", "Caller-Destination-Number"],
    )?
    else {
        return Ok(DialplanLookup::NotFound("no destination"));
    };
    let Some(context) = first(form, &["Hunt-Context", "Caller-Context"])? else {
        return Ok(DialplanLookup::NotFound("no context"));
    };
    if !valid_user_id(context) {
        return Ok(DialplanLookup::NotFound("context outside the charset"));
    }
    let Some(name) = destination.strip_prefix(CONFERENCE_PREFIX) else {
        return Ok(DialplanLookup::NotFound("not a conference destination"));
    };
    if !valid_user_id(name) {
        return Ok(DialplanLookup::NotFound(
            "conference name outside the charset",
        ));
    }
    let caller = form
        .get("variable_switchyard_user_id")?
        .filter(|id| valid_user_id(id))
        .map(str::to_owned);
    Ok(DialplanLookup::Conference {
        context: context.to_owned(),
        destination: destination.to_owned(),
        name: name.to_owned(),
        caller,
    })
}

/// The answer to a dialplan request body, rendered.
/// `pool_nodes`: the ids of the nodes in the pool, to recognise the asking node.
pub async fn answer(
    store: &Store,
    body: &[u8],
    pool_nodes: &[String],
    profiles: &crate::config::ConferencesConfig,
) -> Result<String, super::directory::AnswerError> {
    let form = match Form::parse(body) {
        Ok(form) => form,
        Err(e) => {
            tracing::debug!(error = %e, "malformed dialplan request");
            return Ok(Document::NotFound.render()?);
        }
    };
    let asking_node = form
        .get("hostname")
        .ok()
        .flatten()
        .filter(|h| pool_nodes.iter().any(|n| n == h))
        .map(str::to_owned);
    let (context, destination, name, caller) = match classify(&form) {
        DialplanLookup::NotFound(why) => {
            tracing::debug!(reason = why, "dialplan: not found");
            return Ok(Document::NotFound.render()?);
        }
        DialplanLookup::Conference {
            context,
            destination,
            name,
            caller,
        } => (context, destination, name, caller),
    };
    let action = match &caller {
        None => DialplanAction::Respond("403 Forbidden"),
        // A store failure must not become an HTTP error: FreeSWITCH would fall back to its
        // static dialplan. The conference call is refused with a retryable code instead.
        Some(user_id) => match store.conference_admission(&name, user_id).await {
            Ok(Admission::Join { profile }) => match &asking_node {
                Some(node) => match placed_here(store, &name, node, &profile).await {
                    Ok(true) => admission_action(
                        &name,
                        Admission::Join {
                            profile: profiles.node_profile(&profile).to_owned(),
                        },
                    ),
                    Ok(false) => DialplanAction::Respond("404 Not Found"),
                    Err(e) => {
                        tracing::error!(conference = %name, error = %e, "store unavailable: refusing the join with 503");
                        DialplanAction::Respond("503 Service Unavailable")
                    }
                },
                None => admission_action(
                    &name,
                    Admission::Join {
                        profile: profiles.node_profile(&profile).to_owned(),
                    },
                ),
            },
            Ok(admission) => admission_action(&name, admission),
            Err(e) => {
                tracing::error!(conference = %name, error = %e, "store unavailable: refusing the join with 503");
                DialplanAction::Respond("503 Service Unavailable")
            }
        },
    };
    tracing::debug!(conference = %name, caller = ?caller, ?action, "dialplan answer");
    Ok(Document::Extension {
        context: &context,
        destination: &destination,
        action,
    }
    .render()?)
}

/// Whether conference `name` may run on `node`: it is placed there, or was placed nowhere and
/// is now claimed for it.
async fn placed_here(
    store: &Store,
    name: &str,
    node: &str,
    profile: &str,
) -> Result<bool, crate::store::StoreError> {
    let new = NewConference {
        name: name.to_owned(),
        node_id: node.to_owned(),
        profile: profile.to_owned(),
        labels: Default::default(),
        origin: Origin::Placed,
        options: Default::default(),
    };
    let placement = match store.claim_conference(&new).await? {
        Claim::Claimed(c) => {
            tracing::info!(conference = %name, node = %node, "conference placed by its first caller's node");
            c
        }
        Claim::Existing(c) => c,
    };
    if placement.node_id == node {
        Ok(true)
    } else {
        tracing::warn!(
            conference = %name,
            asking_node = %node,
            placed_on = %placement.node_id,
            "caller dialled a node other than the conference's: refused"
        );
        Ok(false)
    }
}

/// What the extension for conference `name` does, given the store's verdict for the caller.
/// Pure. (A request without an authenticated caller is answered `403` without asking the store.)
pub fn admission_action(name: &str, admission: Admission) -> DialplanAction {
    match admission {
        Admission::Join { profile } if valid_user_id(&profile) => {
            DialplanAction::Conference(format!("{name}@{profile}"))
        }
        Admission::Join { .. } => {
            tracing::warn!(conference = %name, "invitation with an unusable profile name");
            DialplanAction::Respond("404 Not Found")
        }
        Admission::Full => DialplanAction::Respond("486 Busy Here"),
        Admission::Forbidden => DialplanAction::Respond("403 Forbidden"),
        Admission::Unknown => DialplanAction::Respond("404 Not Found"),
    }
}

/// Regex for exactly `s` (conference destinations use `[A-Za-z0-9_.*-]` only).
pub fn exact_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    out.push('^');
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}
