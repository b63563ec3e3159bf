//! What happened, for whoever listens inside the process: logs, metrics, and (with the
//! conference issue) webhooks and the browser event channel.
//!
//! Only the replica that made a change announces it (the node's lease holder for live changes,
//! the deciding replica for placements), and only after it was written, so each fact is
//! announced once across all replicas.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::live::Change;
use crate::nodes::health::Health;
use crate::store::{ConferenceRecord, EndReason, Invitation};

/// One announcement.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A live change on a node (member joined/left/updated, conference started/ended there).
    Live { change: Change },
    /// A placement was made.
    ConferencePlaced { conference: ConferenceRecord },
    /// A placement ended (`node_down`, `node_restarted`, `idle_timeout`, …).
    ConferenceEnded {
        conference: ConferenceRecord,
        reason: EndReason,
    },
    /// A user was invited (the browser event channel rings the user's tabs).
    Invited {
        invitation: Invitation,
        node: String,
        wss_url: String,
        dial_uri: String,
    },
    /// An invitation ended without a join: withdrawn through the API, or declined / answered
    /// busy by the user's browser.
    InvitationCancelled {
        name: String,
        user_id: String,
        reason: crate::browser::protocol::CancelReason,
    },
    /// A node's health changed, as this replica sees it. Every replica announces its own
    /// view; `owner` is set on the node's owner, whose announcement is the one to forward
    /// (webhooks), so that each change goes out once.
    NodeHealth {
        node: String,
        from: Health,
        to: Health,
        owner: bool,
    },
}

/// Capacity of the in-process bus; a listener that falls this far behind misses events and is
/// told so by `RecvError::Lagged`.
const CAPACITY: usize = 4096;

/// The in-process event bus.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }
}

impl Bus {
    pub fn publish(&self, event: Event) {
        // No listener is not an error.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
