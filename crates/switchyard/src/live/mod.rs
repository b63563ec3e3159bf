//! Live state: which members are in which conference on which node, right now.
//!
//! The replica that owns a node (see `coord::lease`) keeps a [`NodeLive`] for it from the
//! node's `conference::maintenance` events and `json_list` snapshots, and writes every
//! [`Change`] to the [`LiveStore`], which every replica reads:
//!
//! - **Memory** (no Redis, one replica, the embedded default): a map in this process. A restart
//!   loses it; reconciliation rebuilds it from the nodes (members come back as `reconciled`
//!   joins).
//! - **Redis** (`redis.url` set): hashes and sets under `redis.key_prefix`. Every write runs as
//!   one Lua script that first checks that the writer still holds the node's lease, so a replica
//!   that lost its lease (paused, partitioned) cannot overwrite its successor's state, and a
//!   change that was not written is not announced: no event produces two webhooks.
//!
//! Durable facts (placements, history) are the database's; this is the fast, shared view.

mod memory;
mod node;
mod redis_store;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use memory::MemoryLive;
pub use node::{LiveConference, NodeLive};
pub use redis_store::RedisLive;

/// A member of a live conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub conference: String,
    pub node: String,
    /// FreeSWITCH's member id, unique within the conference.
    pub member_id: u32,
    /// The Switchyard user (the caller id number the directory gave the SIP user); `None` for
    /// callers that did not come through Switchyard's directory.
    pub user_id: Option<String>,
    pub caller_id_name: String,
    /// The member's channel (`Unique-ID`).
    pub channel_uuid: Option<String>,
    pub joined_at: DateTime<Utc>,
    pub last_talking_at: Option<DateTime<Utc>>,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub video: bool,
    /// Holds the audio floor (the loudest speaker).
    pub floor: bool,
}

/// Why a member left a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member hung up (or the conference was destroyed around it).
    Hangup,
    /// Kicked (`conference kick`).
    Kicked,
    /// Gone when the node was read back after a reconnect or takeover.
    Reconciled,
    /// The node was down for longer than the grace period.
    NodeDown,
    /// The node restarted.
    NodeRestarted,
    /// The node was removed from the pool with `force`.
    NodeRemoved,
    /// Its invitation was cancelled (`DELETE …/invitations/{user_id}`).
    Uninvited,
    /// The conference was ended through the API.
    Ended,
    /// The conference reached its `max_duration_secs`.
    DurationExceeded,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Kicked => "kicked",
            Self::Reconciled => "reconciled",
            Self::NodeDown => "node_down",
            Self::NodeRestarted => "node_restarted",
            Self::NodeRemoved => "node_removed",
            Self::Uninvited => "uninvited",
            Self::Ended => "ended",
            Self::DurationExceeded => "duration_exceeded",
        }
    }
}

/// One change of the live state, as persisted and announced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    ConferenceStarted {
        node: String,
        name: String,
        uuid: Option<String>,
    },
    MemberJoined {
        member: Member,
        /// Found by reconciliation rather than announced by an event.
        reconciled: bool,
    },
    MemberUpdated(Member),
    MemberLeft {
        member: Member,
        reason: LeaveReason,
    },
    /// The node started recording the conference (or streaming it: an `rtmp://` path).
    RecordingStarted {
        node: String,
        name: String,
        path: String,
        /// The node's error text when the recording could not start.
        error: Option<String>,
    },
    /// A recording of the conference ended (`milliseconds`: its length, when the node says).
    RecordingStopped {
        node: String,
        name: String,
        path: String,
        milliseconds: Option<u64>,
    },
    /// The node no longer runs the conference (its placement may live on, idle).
    ConferenceEnded {
        node: String,
        name: String,
        reason: LeaveReason,
    },
}

/// Live figures of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    /// Conferences running on the node.
    pub conferences: u32,
    pub members: u32,
}

/// Why the live store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The writer no longer holds the node's lease: it must stop processing the node.
    #[error("this replica no longer owns node {0}")]
    NotOwner(String),
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("unreadable live state in Redis: {0}")]
    Corrupt(String),
}

/// The shared live state: in process, or in Redis.
#[derive(Debug, Clone)]
pub enum LiveStore {
    Memory(MemoryLive),
    Redis(RedisLive),
}

impl LiveStore {
    /// Writes `changes` of `node` if `owner` still holds the node (always true in memory).
    pub async fn apply(
        &self,
        node: &str,
        owner: &str,
        changes: &[Change],
    ) -> Result<(), LiveError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self {
            Self::Memory(m) => {
                m.apply(node, changes);
                Ok(())
            }
            Self::Redis(r) => r.apply(node, owner, changes).await,
        }
    }

    /// Conferences and members of each of `nodes`.
    pub async fn loads(&self, nodes: &[String]) -> Result<HashMap<String, NodeLoad>, LiveError> {
        match self {
            Self::Memory(m) => Ok(m.loads(nodes)),
            Self::Redis(r) => r.loads(nodes).await,
        }
    }

    /// The members of conference `name` on `node`, by member id.
    pub async fn conference_members(
        &self,
        node: &str,
        name: &str,
    ) -> Result<Vec<Member>, LiveError> {
        match self {
            Self::Memory(m) => Ok(m.conference_members(node, name)),
            Self::Redis(r) => r.conference_members(node, name).await,
        }
    }

    /// Every live membership of `user_id`, on any node.
    pub async fn user_members(&self, user_id: &str) -> Result<Vec<Member>, LiveError> {
        match self {
            Self::Memory(m) => Ok(m.user_members(user_id)),
            Self::Redis(r) => r.user_members(user_id).await,
        }
    }

    /// Announces that member `member_id` of conference `name` on `node` is about to be removed
    /// by Switchyard, so that its leave carries `reason` rather than `hangup`. Any replica may
    /// call it; the node's owner reads it when the member leaves.
    pub async fn expect_exit(
        &self,
        node: &str,
        name: &str,
        member_id: u32,
        reason: LeaveReason,
    ) -> Result<(), LiveError> {
        match self {
            Self::Memory(m) => {
                m.expect_exit(node, name, member_id, reason);
                Ok(())
            }
            Self::Redis(r) => r.expect_exit(node, name, member_id, reason).await,
        }
    }

    /// Takes the announced exits of conference `name` on `node`.
    pub async fn take_exits(
        &self,
        node: &str,
        name: &str,
    ) -> Result<Vec<(u32, LeaveReason)>, LiveError> {
        match self {
            Self::Memory(m) => Ok(m.take_exits(node, name)),
            Self::Redis(r) => r.take_exits(node, name).await,
        }
    }

    /// Everything live on `node`, to take it over.
    pub async fn load_node(
        &self,
        node: &str,
    ) -> Result<BTreeMap<String, LiveConference>, LiveError> {
        match self {
            Self::Memory(m) => Ok(m.load_node(node)),
            Self::Redis(r) => r.load_node(node).await,
        }
    }
}
