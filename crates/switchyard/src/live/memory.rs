//! The in-process live store (one replica, no Redis).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Change, LeaveReason, LiveConference, Member, NodeLoad};

/// Announced exits (member id, reason) by (node, conference).
type Exits = HashMap<(String, String), Vec<(u32, LeaveReason)>>;

/// Live conferences by node, then by name.
#[derive(Debug, Clone, Default)]
pub struct MemoryLive {
    inner: Arc<Mutex<BTreeMap<String, BTreeMap<String, LiveConference>>>>,
    /// Announced exits by (node, conference).
    exits: Arc<Mutex<Exits>>,
}

impl MemoryLive {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<String, LiveConference>>> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn apply(&self, node: &str, changes: &[Change]) {
        let mut nodes = self.lock();
        let confs = nodes.entry(node.to_owned()).or_default();
        for change in changes {
            match change {
                Change::ConferenceStarted { name, uuid, .. } => {
                    confs.entry(name.clone()).or_default().uuid.clone_from(uuid);
                }
                Change::MemberJoined { member, .. } | Change::MemberUpdated(member) => {
                    confs
                        .entry(member.conference.clone())
                        .or_default()
                        .members
                        .insert(member.member_id, member.clone());
                }
                Change::MemberLeft { member, .. } => {
                    if let Some(conf) = confs.get_mut(&member.conference) {
                        conf.members.remove(&member.member_id);
                    }
                }
                Change::ConferenceEnded { name, .. } => {
                    confs.remove(name);
                }
                // Recordings are history (database), not live state.
                Change::RecordingStarted { .. } | Change::RecordingStopped { .. } => {}
            }
        }
    }

    pub(super) fn loads(&self, nodes: &[String]) -> HashMap<String, NodeLoad> {
        let map = self.lock();
        nodes
            .iter()
            .map(|id| {
                let load = map
                    .get(id)
                    .map_or_else(NodeLoad::default, |confs| NodeLoad {
                        conferences: u32::try_from(confs.len()).unwrap_or(u32::MAX),
                        members: u32::try_from(
                            confs.values().map(|c| c.members.len()).sum::<usize>(),
                        )
                        .unwrap_or(u32::MAX),
                    });
                (id.clone(), load)
            })
            .collect()
    }

    pub(super) fn conference_members(&self, node: &str, name: &str) -> Vec<Member> {
        self.lock()
            .get(node)
            .and_then(|confs| confs.get(name))
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn user_members(&self, user_id: &str) -> Vec<Member> {
        self.lock()
            .values()
            .flat_map(|confs| confs.values())
            .flat_map(|c| c.members.values())
            .filter(|m| m.user_id.as_deref() == Some(user_id))
            .cloned()
            .collect()
    }

    pub(super) fn expect_exit(&self, node: &str, name: &str, member_id: u32, reason: LeaveReason) {
        let mut exits = match self.exits.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let list = exits.entry((node.to_owned(), name.to_owned())).or_default();
        list.retain(|(id, _)| *id != member_id);
        list.push((member_id, reason));
    }

    pub(super) fn take_exits(&self, node: &str, name: &str) -> Vec<(u32, LeaveReason)> {
        let mut exits = match self.exits.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        exits
            .remove(&(node.to_owned(), name.to_owned()))
            .unwrap_or_default()
    }

    pub(super) fn load_node(&self, node: &str) -> BTreeMap<String, LiveConference> {
        self.lock().get(node).cloned().unwrap_or_default()
    }
}
