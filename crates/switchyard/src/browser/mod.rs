//! The browser event channel (`GET /v1/events`, `docs/events.md`).
//!
//! - `protocol`: frames, events and close codes (pure).
//! - `hub`: per-user sequence numbers, replay buffers and fan-out (memory or Redis).
//! - `channel`: one open WebSocket: hello, resume, heartbeats, browser requests.
//! - here: [`Browser`] (the hub plus who hears what) and the router, which turns this
//!   replica's bus announcements into browser events. Each fact is announced on one replica
//!   only (see `crate::events`), so each browser event is published once.

pub mod channel;
pub mod hub;
pub mod protocol;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest as _, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use self::hub::{Hub, HubError};
use self::protocol::{BrowserEvent, CancelReason, MemberView};
use crate::app::App;
use crate::events::Event;
use crate::live::{Change, LiveError, Member};
use crate::store::StoreError;

/// A conference's audience is re-read from the store after this long (talking events come
/// in bursts; invitations change through this replica's router or the API).
const AUDIENCE_TTL: Duration = Duration::from_secs(2);
/// Audiences of ended conferences are remembered this long, so that the `ended` and
/// `member_left` events of a conference whose invitations were just deleted still find it.
const AUDIENCE_MEMORY: Duration = Duration::from_secs(600);
/// Prefix of session tokens (recognisable in leaked-secret scanners).
pub const TOKEN_PREFIX: &str = "sy_st_";

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("live state: {0}")]
    Live(#[from] LiveError),
}

/// The hub and the audience cache; part of [`App`].
#[derive(Debug)]
pub struct Browser {
    pub hub: Hub,
    audiences: Mutex<HashMap<String, CachedAudience>>,
}

#[derive(Debug)]
struct CachedAudience {
    read_at: Instant,
    /// Invited or present when last read.
    users: BTreeSet<String>,
    /// `users`, and once the conference has ended also whoever was in it at a read within
    /// [`AUDIENCE_MEMORY`] before the end.
    known: BTreeSet<String>,
}

impl Browser {
    pub fn new(hub: Hub) -> Self {
        Self {
            hub,
            audiences: Mutex::default(),
        }
    }

    /// Publishes `event` to `users` (sorted, deduplicated).
    pub async fn publish(
        &self,
        users: impl IntoIterator<Item = String>,
        event: &BrowserEvent,
    ) -> Result<(), HubError> {
        let users: BTreeSet<String> = users.into_iter().collect();
        let users: Vec<String> = users.into_iter().collect();
        self.hub.publish(&users, &event.to_json(Utc::now())).await
    }

    /// Everyone invited to conference `name` or in it now (on `node`, when known). With
    /// `remember`, and once the conference has ended, also whoever was in it before the end:
    /// the end deletes the invitations before its news is routed. While it runs, each read
    /// starts afresh, so an uninvited or declining user drops out at the next read on every
    /// replica.
    pub async fn audience(
        &self,
        app: &App,
        name: &str,
        node: Option<&str>,
        remember: bool,
    ) -> Result<BTreeSet<String>, BrowserError> {
        {
            let cache = self.cache();
            if let Some(cached) = cache.get(name)
                && cached.read_at.elapsed() < AUDIENCE_TTL
            {
                return Ok(if remember {
                    cached.known.clone()
                } else {
                    cached.users.clone()
                });
            }
        }
        let mut users: BTreeSet<String> = app
            .store
            .invitations(name)
            .await?
            .into_iter()
            .map(|i| i.user_id)
            .collect();
        // Read after the invitations: an end marks the conference ended before it deletes
        // them, so invitations gone because of an end are always seen together with the end.
        let live = app.store.live_conference(name).await?;
        let node = match node {
            Some(node) => Some(node.to_owned()),
            None => live.as_ref().map(|c| c.node_id.clone()),
        };
        if let Some(node) = node {
            users.extend(
                app.live
                    .conference_members(&node, name)
                    .await?
                    .into_iter()
                    .filter_map(|m| m.user_id),
            );
        }
        let mut cache = self.cache();
        let mut known = users.clone();
        if live.is_none()
            && let Some(previous) = cache.get(name)
            && previous.read_at.elapsed() < AUDIENCE_MEMORY
        {
            known.extend(previous.known.iter().cloned());
        }
        cache.retain(|_, c| c.read_at.elapsed() < AUDIENCE_MEMORY);
        cache.insert(
            name.to_owned(),
            CachedAudience {
                read_at: Instant::now(),
                users: users.clone(),
                known: known.clone(),
            },
        );
        Ok(if remember { known } else { users })
    }

    /// Adds `user` to the cached audience of `name` at once (an invitation through this
    /// replica must not wait for the cache to expire).
    fn hear(&self, name: &str, user: &str) {
        if let Some(cached) = self.cache().get_mut(name) {
            cached.users.insert(user.to_owned());
            cached.known.insert(user.to_owned());
        }
    }

    /// Drops `user` from the cached audience of `name`, remembered ones included: an uninvited
    /// or declining user must not keep hearing of the conference.
    fn forget(&self, name: &str, user: &str) {
        if let Some(cached) = self.cache().get_mut(name) {
            cached.users.remove(user);
            cached.known.remove(user);
        }
    }

    /// Whether `user` is invited to `name` or is a member of it: who may send it messages.
    pub async fn in_audience(
        &self,
        app: &App,
        name: &str,
        user: &str,
    ) -> Result<bool, BrowserError> {
        if app.store.invitation(name, user).await?.is_some() {
            return Ok(true);
        }
        Ok(app
            .live
            .user_members(user)
            .await?
            .iter()
            .any(|m| m.conference == name))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedAudience>> {
        self.audiences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A new session token: `sy_st_` + 43 base64url characters (256 random bits).
pub fn new_token() -> String {
    use base64::Engine as _;
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What the store keeps of a token.
pub fn token_digest(token: &str) -> String {
    crate::credentials::hex(&Sha256::digest(token.as_bytes()))
}

/// Starts the router and the hub's background work.
/// `rx` is subscribed before the node tasks start, so that their first announcements reach
/// browsers.
pub fn start(app: &std::sync::Arc<App>, rx: tokio::sync::broadcast::Receiver<Event>) {
    let router_app = app.clone();
    app.tasks.spawn(async move { route(router_app, rx).await });
    let hub = app.browser.hub.clone();
    let shutdown = app.shutdown.clone();
    app.tasks.spawn(async move { hub.run(shutdown).await });
}

/// Member flags last announced, to tell talking changes from other updates.
type Flags = (bool, bool, bool, bool, bool);

fn flags(m: &Member) -> Flags {
    (m.talking, m.muted, m.deaf, m.video, m.floor)
}

async fn route(app: std::sync::Arc<App>, mut rx: tokio::sync::broadcast::Receiver<Event>) {
    let mut last: HashMap<(String, u32), Flags> = HashMap::new();
    loop {
        let event = tokio::select! {
            () = app.shutdown.cancelled() => return,
            received = rx.recv() => match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::error!(missed, "browser events fell behind the event bus; these were not sent");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if let Err(e) = route_one(&app, &mut last, &event).await {
            app.metrics.browser_events_failed.inc();
            tracing::warn!(error = %e, "browser event not published");
        }
    }
}

async fn route_one(
    app: &App,
    last: &mut HashMap<(String, u32), Flags>,
    event: &Event,
) -> Result<(), BrowserError> {
    let browser = &app.browser;
    match event {
        Event::Invited {
            invitation,
            node,
            wss_url,
            dial_uri,
        } => {
            browser.hear(&invitation.name, &invitation.user_id);
            let event = BrowserEvent::Invited {
                conference: invitation.name.clone(),
                caller_id: invitation.caller_id.clone(),
                message: invitation.message.clone(),
                profile: invitation.profile.clone(),
                node: node.clone(),
                wss_url: wss_url.clone(),
                dial_uri: dial_uri.clone(),
            };
            browser
                .publish([invitation.user_id.clone()], &event)
                .await?;
        }
        Event::InvitationCancelled {
            name,
            user_id,
            reason,
        } => {
            let cancelled = BrowserEvent::InvitationCancelled {
                conference: name.clone(),
                reason: *reason,
            };
            browser.publish([user_id.clone()], &cancelled).await?;
            let answer = match reason {
                CancelReason::Declined => Some(BrowserEvent::Declined {
                    conference: name.clone(),
                    user_id: user_id.clone(),
                }),
                CancelReason::Busy => Some(BrowserEvent::Busy {
                    conference: name.clone(),
                    user_id: user_id.clone(),
                }),
                CancelReason::Cancelled | CancelReason::Answered => None,
            };
            if let Some(answer) = answer {
                let mut audience = browser.audience(app, name, None, true).await?;
                // Their tabs were told above.
                audience.remove(user_id);
                browser.publish(audience, &answer).await?;
            }
            // At once on this replica (other replicas drop them at their next read). A tab that
            // declines while another tab of the same user is in the call changes nothing.
            let still_member = matches!(reason, CancelReason::Declined | CancelReason::Busy)
                && app
                    .live
                    .user_members(user_id)
                    .await?
                    .iter()
                    .any(|m| m.conference == *name);
            if *reason != CancelReason::Answered && !still_member {
                browser.forget(name, user_id);
            }
        }
        Event::Live { change } => match change {
            Change::MemberJoined { member, .. } => {
                last.insert((member.conference.clone(), member.member_id), flags(member));
                let audience = member_audience(app, member, false).await?;
                let joined = BrowserEvent::MemberJoined {
                    conference: member.conference.clone(),
                    member: MemberView::from(member),
                };
                browser.publish(audience, &joined).await?;
                // The user's other tabs stop ringing.
                if let Some(user) = &member.user_id
                    && app
                        .store
                        .invitation(&member.conference, user)
                        .await?
                        .is_some()
                {
                    let answered = BrowserEvent::InvitationCancelled {
                        conference: member.conference.clone(),
                        reason: CancelReason::Answered,
                    };
                    browser.publish([user.clone()], &answered).await?;
                }
            }
            Change::MemberUpdated(member) => {
                let key = (member.conference.clone(), member.member_id);
                let now = flags(member);
                let before = last.insert(key, now);
                let audience = member_audience(app, member, false).await?;
                if before.is_none_or(|b| b.0 != now.0) {
                    let talking = BrowserEvent::Talking {
                        conference: member.conference.clone(),
                        member_id: member.member_id,
                        user_id: member.user_id.clone(),
                        talking: member.talking,
                    };
                    browser.publish(audience.clone(), &talking).await?;
                }
                if before.is_none_or(|b| (b.1, b.2, b.3, b.4) != (now.1, now.2, now.3, now.4)) {
                    let updated = BrowserEvent::MemberUpdated {
                        conference: member.conference.clone(),
                        member: MemberView::from(member),
                    };
                    browser.publish(audience, &updated).await?;
                }
            }
            Change::MemberLeft { member, reason } => {
                last.remove(&(member.conference.clone(), member.member_id));
                let audience = member_audience(app, member, true).await?;
                let left = BrowserEvent::MemberLeft {
                    conference: member.conference.clone(),
                    member: MemberView::from(member),
                    reason: *reason,
                };
                browser.publish(audience, &left).await?;
            }
            Change::ConferenceStarted { .. }
            | Change::ConferenceEnded { .. }
            | Change::RecordingStarted { .. }
            | Change::RecordingStopped { .. } => {}
        },
        Event::ConferenceEnded { conference, reason } => {
            last.retain(|(name, _), _| *name != conference.name);
            let audience = browser
                .audience(app, &conference.name, Some(&conference.node_id), true)
                .await?;
            let ended = BrowserEvent::Ended {
                conference: conference.name.clone(),
                reason: *reason,
            };
            browser.publish(audience, &ended).await?;
        }
        Event::ConferencePlaced { .. } | Event::NodeHealth { .. } => {}
    }
    Ok(())
}

/// The audience of a member's conference, the member included.
async fn member_audience(
    app: &App,
    member: &Member,
    remember: bool,
) -> Result<BTreeSet<String>, BrowserError> {
    let mut audience = app
        .browser
        .audience(app, &member.conference, Some(&member.node), remember)
        .await?;
    if let Some(user) = &member.user_id {
        audience.insert(user.clone());
        // One who leaves is told, not remembered (an uninvited user was just forgotten).
        if !remember {
            app.browser.hear(&member.conference, user);
        }
    }
    Ok(audience)
}
