//! The live store in Redis, shared by every replica.
//!
//! Keys, under the configured prefix `P` (default `switchyard:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P live:node:{node}:confs` | set | names of the conferences running on the node |
//! | `P live:node:{node}:members` | string | member count of the node |
//! | `P live:node:{node}:conf:{name}:meta` | hash | `uuid` (FreeSWITCH's conference UUID) |
//! | `P live:node:{node}:conf:{name}:members` | hash | member id → member JSON |
//! | `P live:user:{user}` | set | `{node}\n{name}\n{member id}` of each membership |
//! | `P live:node:{node}:conf:{name}:exits` | hash | member id → reason of a removal Switchyard started (expires after 2 min) |
//!
//! Conferences are keyed by node as well as name: a name started outside Switchyard on a
//! second node must not mix its members into the first. Every write is the [`APPLY`] script,
//! which checks the node's lease first (single Redis instance, not Redis Cluster: the script
//! touches keys it does not declare).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::{Change, LeaveReason, LiveConference, LiveError, Member, NodeLoad};
use crate::coord::Coord;

/// How long an announced exit waits for its member to leave.
const EXIT_TTL_MS: i64 = 120_000;

/// How long one Redis round trip may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Applies a batch of operations if `ARGV[1]` holds the lease `KEYS[1]`; 1 = written, 0 = not
/// the owner.
const APPLY: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local prefix = ARGV[2]
local node = ARGV[3]
local base = prefix .. 'live:node:' .. node
local confs = base .. ':confs'
local count = base .. ':members'
for _, op in ipairs(cjson.decode(ARGV[4])) do
  local conf = base .. ':conf:' .. op.name
  if op.op == 'start' then
    redis.call('SADD', confs, op.name)
    redis.call('HSET', conf .. ':meta', 'uuid', op.uuid or '')
  elseif op.op == 'put' then
    redis.call('SADD', confs, op.name)
    if redis.call('HSET', conf .. ':members', op.id, op.json) == 1 then
      redis.call('INCR', count)
    end
    if op.user then
      redis.call('SADD', prefix .. 'live:user:' .. op.user, node .. '\n' .. op.name .. '\n' .. op.id)
    end
  elseif op.op == 'del' then
    if redis.call('HDEL', conf .. ':members', op.id) == 1 then
      redis.call('DECR', count)
    end
    if op.user then
      redis.call('SREM', prefix .. 'live:user:' .. op.user, node .. '\n' .. op.name .. '\n' .. op.id)
    end
  elseif op.op == 'end' then
    local left = redis.call('HLEN', conf .. ':members')
    if left > 0 then redis.call('DECRBY', count, left) end
    redis.call('DEL', conf .. ':members', conf .. ':meta')
    redis.call('SREM', confs, op.name)
  end
end
return 1
";

/// One operation of [`APPLY`].
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op<'a> {
    Start {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        uuid: Option<&'a str>,
    },
    Put {
        name: &'a str,
        id: String,
        json: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    },
    Del {
        name: &'a str,
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
    },
    End {
        name: &'a str,
    },
}

/// The Redis live store.
#[derive(Clone)]
pub struct RedisLive {
    coord: Coord,
    apply: redis::Script,
}

impl std::fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLive").finish_non_exhaustive()
    }
}

async fn bounded<T>(
    fut: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, LiveError> {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(result) => result.map_err(LiveError::from),
        Err(_) => Err(LiveError::Timeout),
    }
}

impl RedisLive {
    pub fn new(coord: Coord) -> Self {
        Self {
            coord,
            apply: redis::Script::new(APPLY),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.coord.connection()
    }

    fn node_key(&self, node: &str, suffix: &str) -> String {
        format!("{}live:node:{node}:{suffix}", self.coord.prefix())
    }

    fn conf_key(&self, node: &str, name: &str, suffix: &str) -> String {
        format!(
            "{}live:node:{node}:conf:{name}:{suffix}",
            self.coord.prefix()
        )
    }

    pub(super) async fn apply(
        &self,
        node: &str,
        owner: &str,
        changes: &[Change],
    ) -> Result<(), LiveError> {
        let mut ops = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::ConferenceStarted { name, uuid, .. } => ops.push(Op::Start {
                    name,
                    uuid: uuid.as_deref(),
                }),
                Change::MemberJoined { member, .. } | Change::MemberUpdated(member) => {
                    ops.push(Op::Put {
                        name: &member.conference,
                        id: member.member_id.to_string(),
                        json: serde_json::to_string(member)
                            .map_err(|e| LiveError::Corrupt(e.to_string()))?,
                        user: member.user_id.as_deref(),
                    });
                }
                Change::MemberLeft { member, .. } => ops.push(Op::Del {
                    name: &member.conference,
                    id: member.member_id.to_string(),
                    user: member.user_id.as_deref(),
                }),
                Change::ConferenceEnded { name, .. } => ops.push(Op::End { name }),
                Change::RecordingStarted { .. } | Change::RecordingStopped { .. } => {}
            }
        }
        let ops = serde_json::to_string(&ops).map_err(|e| LiveError::Corrupt(e.to_string()))?;
        let mut conn = self.conn();
        let mut invocation = self.apply.key(self.coord.lease_key(node));
        invocation
            .arg(owner)
            .arg(self.coord.prefix())
            .arg(node)
            .arg(ops);
        let written: i64 = bounded(invocation.invoke_async(&mut conn)).await?;
        if written == 1 {
            Ok(())
        } else {
            Err(LiveError::NotOwner(node.to_owned()))
        }
    }

    pub(super) async fn loads(
        &self,
        nodes: &[String],
    ) -> Result<HashMap<String, NodeLoad>, LiveError> {
        if nodes.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.scard(self.node_key(node, "confs"))
                .get(self.node_key(node, "members"));
        }
        let mut conn = self.conn();
        let replies: Vec<(u64, Option<i64>)> = bounded(pipe.query_async(&mut conn)).await?;
        let clamp = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Ok(nodes
            .iter()
            .zip(replies)
            .map(|(node, (confs, members))| {
                let load = NodeLoad {
                    conferences: u32::try_from(confs).unwrap_or(u32::MAX),
                    members: clamp(members.unwrap_or(0)),
                };
                (node.clone(), load)
            })
            .collect())
    }

    pub(super) async fn conference_members(
        &self,
        node: &str,
        name: &str,
    ) -> Result<Vec<Member>, LiveError> {
        let mut conn = self.conn();
        let key = self.conf_key(node, name, "members");
        let values: Vec<String> =
            bounded(redis::cmd("HVALS").arg(key).query_async(&mut conn)).await?;
        let mut members = values
            .iter()
            .map(|v| parse_member(v))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by_key(|m| m.member_id);
        Ok(members)
    }

    pub(super) async fn user_members(&self, user_id: &str) -> Result<Vec<Member>, LiveError> {
        let mut conn = self.conn();
        let key = format!("{}live:user:{user_id}", self.coord.prefix());
        let entries: Vec<String> =
            bounded(redis::cmd("SMEMBERS").arg(key).query_async(&mut conn)).await?;
        let mut members = Vec::new();
        for entry in entries {
            let mut parts = entry.splitn(3, '\n');
            let (Some(node), Some(name), Some(id)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let key = self.conf_key(node, name, "members");
            let value: Option<String> =
                bounded(redis::cmd("HGET").arg(key).arg(id).query_async(&mut conn)).await?;
            if let Some(value) = value {
                members.push(parse_member(&value)?);
            }
        }
        members.sort_by(|a, b| (&a.conference, a.member_id).cmp(&(&b.conference, b.member_id)));
        Ok(members)
    }

    pub(super) async fn expect_exit(
        &self,
        node: &str,
        name: &str,
        member_id: u32,
        reason: LeaveReason,
    ) -> Result<(), LiveError> {
        let key = self.conf_key(node, name, "exits");
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&key, member_id, reason.as_str())
            .ignore()
            .pexpire(&key, EXIT_TTL_MS)
            .ignore();
        bounded(pipe.query_async::<()>(&mut conn)).await
    }

    pub(super) async fn take_exits(
        &self,
        node: &str,
        name: &str,
    ) -> Result<Vec<(u32, LeaveReason)>, LiveError> {
        let key = self.conf_key(node, name, "exits");
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.atomic().hgetall(&key).del(&key).ignore();
        let (entries,): (Vec<(u32, String)>,) = bounded(pipe.query_async(&mut conn)).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, reason)| {
                serde_json::from_value(serde_json::Value::String(reason))
                    .ok()
                    .map(|r| (id, r))
            })
            .collect())
    }

    pub(super) async fn load_node(
        &self,
        node: &str,
    ) -> Result<BTreeMap<String, LiveConference>, LiveError> {
        let mut conn = self.conn();
        let names: Vec<String> = bounded(
            redis::cmd("SMEMBERS")
                .arg(self.node_key(node, "confs"))
                .query_async(&mut conn),
        )
        .await?;
        let mut out = BTreeMap::new();
        for name in names {
            let uuid: Option<String> = bounded(
                redis::cmd("HGET")
                    .arg(self.conf_key(node, &name, "meta"))
                    .arg("uuid")
                    .query_async(&mut conn),
            )
            .await?;
            let members = self.conference_members(node, &name).await?;
            out.insert(
                name,
                LiveConference {
                    uuid: uuid.filter(|u| !u.is_empty()),
                    members: members.into_iter().map(|m| (m.member_id, m)).collect(),
                },
            );
        }
        Ok(out)
    }
}

fn parse_member(json: &str) -> Result<Member, LiveError> {
    serde_json::from_str(json).map_err(|e| LiveError::Corrupt(e.to_string()))
}
