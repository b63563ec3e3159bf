//! Conference placements (the `conferences` table, live and history) and who may join them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// The dialplan's verdict for one caller and conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Join `conference <name>@<profile>`.
    Join { profile: String },
    /// The conference has reached its participant limit (SIP 486).
    Full,
    /// The conference is locked, or the caller has no invitation to it (SIP 403).
    Forbidden,
    /// No such conference (SIP 404).
    Unknown,
}

impl Store {
    /// May `user_id` join conference `name`? An invitation admits (with the conference's
    /// profile once it is placed); an open conference admits anyone; a conference at its
    /// `max_members` admits nobody more.
    pub async fn conference_admission(
        &self,
        name: &str,
        user_id: &str,
    ) -> Result<Admission, StoreError> {
        let placement = self.live_conference(name).await?;
        let invitation = self.invitation(name, user_id).await?;
        if let Some(p) = &placement
            && p.options
                .max_members
                .is_some_and(|max| p.member_count >= max)
            && (invitation.is_some() || p.options.open)
        {
            return Ok(Admission::Full);
        }
        Ok(match (placement, invitation) {
            (Some(p), Some(_)) => Admission::Join { profile: p.profile },
            (None, Some(invitation)) => Admission::Join {
                profile: invitation.profile,
            },
            (Some(p), None) if p.options.open => Admission::Join { profile: p.profile },
            (Some(_), None) => Admission::Forbidden,
            (None, None) => Admission::Unknown,
        })
    }
}

/// Why a conference ended (stored in `conferences.end_reason`, shown in history and events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Ended through the API.
    Ended,
    /// Nobody was on it for `pool.idle_timeout_secs`.
    IdleTimeout,
    /// Its node was down for longer than `pool.node_down_grace_secs`.
    NodeDown,
    /// Its node restarted (new start time): FreeSWITCH lost it.
    NodeRestarted,
    /// Its node was removed from the pool with `force`.
    NodeRemoved,
    /// It reached its `max_duration_secs`.
    DurationExceeded,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ended => "ended",
            Self::IdleTimeout => "idle_timeout",
            Self::NodeDown => "node_down",
            Self::NodeRestarted => "node_restarted",
            Self::NodeRemoved => "node_removed",
            Self::DurationExceeded => "duration_exceeded",
        }
    }
}

/// How a conference came to be on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Switchyard chose the node.
    Placed,
    /// Found running on a node (started outside Switchyard) and taken over by reconciliation.
    Adopted,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Adopted => "adopted",
        }
    }
}

/// One placement of a conference, live (`ended_at` is `None`) or past.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConferenceRecord {
    pub id: String,
    pub name: String,
    pub node_id: String,
    pub profile: String,
    pub labels: BTreeMap<String, String>,
    pub origin: String,
    pub created_at: DateTime<Utc>,
    pub idle_since: Option<DateTime<Utc>>,
    pub peak_members: u32,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub options: ConferenceOptions,
    /// Members on the node now (kept by the node's owner).
    pub member_count: u32,
    /// When the first member joined (`max_duration_secs` counts from here).
    pub started_at: Option<DateTime<Utc>>,
}

/// Per-conference options, fixed when it is placed.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct ConferenceOptions {
    /// The dialplan refuses callers beyond this many members (SIP 486).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<u32>,
    /// Members are hung up (reason `duration_exceeded`) this long after the first joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u32>,
    /// Ends the conference (and its invitations) this long after the last member left;
    /// `pool.idle_timeout_secs` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u32>,
    /// Any user with SIP credentials may join, invited or not.
    #[serde(default)]
    pub open: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct ConferenceRow {
    id: String,
    name: String,
    node_id: String,
    profile: String,
    labels: String,
    origin: String,
    created_at: DateTime<Utc>,
    idle_since: Option<DateTime<Utc>>,
    peak_members: i32,
    ended_at: Option<DateTime<Utc>>,
    end_reason: Option<String>,
    max_members: Option<i32>,
    max_duration_secs: Option<i32>,
    idle_timeout_secs: Option<i32>,
    open: bool,
    member_count: i32,
    started_at: Option<DateTime<Utc>>,
}

fn opt_u32(v: Option<i32>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn opt_i32(v: Option<u32>) -> Option<i32> {
    v.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}

impl From<ConferenceRow> for ConferenceRecord {
    fn from(r: ConferenceRow) -> Self {
        ConferenceRecord {
            id: r.id,
            name: r.name,
            node_id: r.node_id,
            profile: r.profile,
            labels: serde_json::from_str(&r.labels).unwrap_or_default(),
            origin: r.origin,
            created_at: r.created_at,
            idle_since: r.idle_since,
            peak_members: u32::try_from(r.peak_members.max(0)).unwrap_or(u32::MAX),
            ended_at: r.ended_at,
            end_reason: r.end_reason,
            options: ConferenceOptions {
                max_members: opt_u32(r.max_members),
                max_duration_secs: opt_u32(r.max_duration_secs),
                idle_timeout_secs: opt_u32(r.idle_timeout_secs),
                open: r.open,
            },
            member_count: u32::try_from(r.member_count.max(0)).unwrap_or(u32::MAX),
            started_at: r.started_at,
        }
    }
}

pub(super) const CONFERENCE_COLUMNS: &str = "id, name, node_id, profile, labels, origin, created_at, \
     idle_since, peak_members, ended_at, end_reason, max_members, max_duration_secs, \
     idle_timeout_secs, open, member_count, started_at";

/// A placement to record.
#[derive(Debug, Clone)]
pub struct NewConference {
    pub name: String,
    pub node_id: String,
    pub profile: String,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
    pub options: ConferenceOptions,
}

/// The outcome of [`Store::claim_conference`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Our row is now the live placement.
    Claimed(ConferenceRecord),
    /// Another placement of the same name was live already (placed by another request or
    /// replica); nothing was written.
    Existing(ConferenceRecord),
}

/// Live conferences of one node, for placement's load figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeConferenceCounts {
    /// Live placements.
    pub live: u32,
    /// Of those, placements with nobody on the node yet (or any more).
    pub idle: u32,
}

impl Store {
    /// Records `new` as the live placement of its name, unless one exists: the unique index on
    /// live names makes this the atomic claim shared by every replica.
    pub async fn claim_conference(&self, new: &NewConference) -> Result<Claim, StoreError> {
        let sql = format!(
            "INSERT INTO conferences (id, name, node_id, profile, labels, origin, created_at, \
             idle_since, peak_members, max_members, max_duration_secs, idle_timeout_secs, open) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, $8, $9, $10, $11) \
             RETURNING {CONFERENCE_COLUMNS}"
        );
        let id = new_conference_id();
        let labels = serde_json::to_string(&new.labels).unwrap_or_else(|_| "{}".to_owned());
        let now = now();
        let inserted: Result<ConferenceRow, sqlx::Error> = with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(&id)
                .bind(&new.name)
                .bind(&new.node_id)
                .bind(&new.profile)
                .bind(&labels)
                .bind(new.origin.as_str())
                .bind(now)
                .bind(opt_i32(new.options.max_members))
                .bind(opt_i32(new.options.max_duration_secs))
                .bind(opt_i32(new.options.idle_timeout_secs))
                .bind(new.options.open)
                .fetch_one(pool)
                .await
        });
        match inserted {
            Ok(row) => Ok(Claim::Claimed(row.into())),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                match self.live_conference(&new.name).await? {
                    Some(existing) => Ok(Claim::Existing(existing)),
                    // Ended between our insert and this read: the name is free again.
                    None => Box::pin(self.claim_conference(new)).await,
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The live placement of `name`, if any.
    pub async fn live_conference(
        &self,
        name: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE name = $1 AND ended_at IS NULL"
        );
        let row: Option<ConferenceRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?);
        Ok(row.map(Into::into))
    }

    /// Live placements on `node_id`, oldest first.
    pub async fn live_conferences_on(
        &self,
        node_id: &str,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONFERENCE_COLUMNS} FROM conferences \
             WHERE node_id = $1 AND ended_at IS NULL ORDER BY created_at, id"
        );
        let rows: Vec<ConferenceRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(node_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Live and idle placement counts of every node that has any.
    pub async fn live_conference_counts(
        &self,
    ) -> Result<HashMap<String, NodeConferenceCounts>, StoreError> {
        const SQL: &str = "SELECT node_id, COUNT(*), \
             SUM(CASE WHEN idle_since IS NULL THEN 0 ELSE 1 END) \
             FROM conferences WHERE ended_at IS NULL GROUP BY node_id";
        let rows: Vec<(String, i64, i64)> =
            with_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?);
        let clamp = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Ok(rows
            .into_iter()
            .map(|(node, live, idle)| {
                let counts = NodeConferenceCounts {
                    live: clamp(live),
                    idle: clamp(idle),
                };
                (node, counts)
            })
            .collect())
    }

    /// Ends the live placement `id` (no-op if it already ended) and deletes the invitations of
    /// its name. `true` if this call ended it.
    pub async fn end_conference(&self, id: &str, reason: EndReason) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE conferences SET ended_at = $2, end_reason = $3 \
                           WHERE id = $1 AND ended_at IS NULL";
        let now = now();
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(id)
                .bind(now)
                .bind(reason.as_str())
                .execute(pool)
                .await?
                .rows_affected());
        if affected > 0 {
            // Invitations live as long as their conference.
            const INVITATIONS: &str =
                "DELETE FROM invitations WHERE name = (SELECT name FROM conferences WHERE id = $1)";
            with_pool!(self, pool => sqlx::query(INVITATIONS)
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop)?)
        }
        Ok(affected > 0)
    }

    /// Marks the live placement of `name` on `node_id` busy (`members > 0`: clears
    /// `idle_since`, raises `peak_members`) or idle (sets `idle_since` if unset).
    pub async fn set_conference_occupancy(
        &self,
        name: &str,
        node_id: &str,
        members: u32,
    ) -> Result<(), StoreError> {
        const BUSY_SQLITE: &str = "UPDATE conferences SET idle_since = NULL, \
             peak_members = MAX(peak_members, $3), member_count = $3, \
             started_at = COALESCE(started_at, $4) \
             WHERE name = $1 AND node_id = $2 AND ended_at IS NULL";
        const BUSY_POSTGRES: &str = "UPDATE conferences SET idle_since = NULL, \
             peak_members = GREATEST(peak_members, $3), member_count = $3, \
             started_at = COALESCE(started_at, $4) \
             WHERE name = $1 AND node_id = $2 AND ended_at IS NULL";
        const IDLE: &str = "UPDATE conferences SET idle_since = COALESCE(idle_since, $3), \
             member_count = 0 WHERE name = $1 AND node_id = $2 AND ended_at IS NULL";
        let members = i32::try_from(members).unwrap_or(i32::MAX);
        let now = now();
        match self {
            Self::Sqlite(pool) => {
                let q = if members > 0 {
                    sqlx::query(BUSY_SQLITE)
                        .bind(name)
                        .bind(node_id)
                        .bind(members)
                        .bind(now)
                } else {
                    sqlx::query(IDLE).bind(name).bind(node_id).bind(now)
                };
                q.execute(pool).await?;
            }
            Self::Postgres(pool) => {
                let q = if members > 0 {
                    sqlx::query(BUSY_POSTGRES)
                        .bind(name)
                        .bind(node_id)
                        .bind(members)
                        .bind(now)
                } else {
                    sqlx::query(IDLE).bind(name).bind(node_id).bind(now)
                };
                q.execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Ends the placements on `node_id` idle for longer than their `idle_timeout_secs` (or
    /// `default_timeout`) at `now`; returns them.
    pub async fn end_idle_conferences(
        &self,
        node_id: &str,
        now: DateTime<Utc>,
        default_timeout: std::time::Duration,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        let stale: Vec<ConferenceRecord> = self
            .live_conferences_on(node_id)
            .await?
            .into_iter()
            .filter(|c| {
                let timeout = c.options.idle_timeout_secs.map_or(default_timeout, |s| {
                    std::time::Duration::from_secs(s.into())
                });
                let timeout =
                    chrono::TimeDelta::from_std(timeout).unwrap_or(chrono::TimeDelta::MAX);
                c.idle_since
                    .is_some_and(|t| now.signed_duration_since(t) >= timeout)
            })
            .collect();
        let mut ended = Vec::with_capacity(stale.len());
        for conference in stale {
            if self
                .end_conference(&conference.id, EndReason::IdleTimeout)
                .await?
            {
                ended.push(conference);
            }
        }
        Ok(ended)
    }
}

/// A random, URL-safe conference placement id (`cf_` + 20 hex digits).
fn new_conference_id() -> String {
    use rand::Rng as _;
    let bits: u128 = rand::rng().random();
    format!("cf_{:020x}", bits >> 48)
}
