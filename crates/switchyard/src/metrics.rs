//! Prometheus metrics (`GET /metrics`, text exposition format).
//!
//! Counters live in [`Metrics`] (one per `App`, no global registry, so tests can run several
//! services in one process). Gauges are computed at scrape time from the pool, the live store
//! and the database, so they cannot drift from what the API shows.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `switchyard_node_state` | gauge | node, state | 1 for the node's current state (this replica's view), 0 for the others |
//! | `switchyard_node_members` | gauge | node | live members on the node |
//! | `switchyard_node_conferences` | gauge | node | conferences running on the node |
//! | `switchyard_node_placements` | gauge | node | live placements (including idle ones) |
//! | `switchyard_node_capacity` | gauge | node | configured member capacity |
//! | `switchyard_node_heartbeat_age_seconds` | gauge | node | time since the last HEARTBEAT (absent before the first) |
//! | `switchyard_node_probe_rtt_seconds` | gauge | node | round trip of the last `api status` probe |
//! | `switchyard_node_owned` | gauge | node | 1 if this replica processes the node's events |
//! | `switchyard_esl_connections_total` | counter | node | successful ESL connections (the first, then reconnects) |
//! | `switchyard_esl_disconnects_total` | counter | node | ESL connections lost |
//! | `switchyard_placements_total` | counter | node | conferences placed on the node by this replica |
//! | `switchyard_placement_rejections_total` | counter | reason | a node rejected by placement (one per node per attempt) |
//! | `switchyard_placement_failures_total` | counter | | placements that found no node (HTTP 503) |
//! | `switchyard_reconciliations_total` | counter | node, outcome | node read back after a (re)connect or takeover |
//! | `switchyard_conferences_ended_total` | counter | reason | placements ended by the pool (node_down, idle_timeout, …) |
//! | `switchyard_members_left_total` | counter | reason | members gone, by reason |
//! | `switchyard_webhook_attempts_total` | counter | endpoint, outcome | delivery attempts: `delivered`, `retry` (failed, to be retried), `given_up` |
//! | `switchyard_browser_channels` | gauge | | open browser event channels on this replica |
//! | `switchyard_browser_channels_closed_total` | counter | reason | browser channels closed, by close reason (`client` when the browser closed it) |
//! | `switchyard_browser_events_failed_total` | counter | | browser events that could not be published (Redis or store unavailable) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub node: String,
    pub outcome: String,
}

/// The counters of one service instance.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub esl_connections: Family<NodeLabel, Counter>,
    pub esl_disconnects: Family<NodeLabel, Counter>,
    pub placements: Family<NodeLabel, Counter>,
    pub placement_rejections: Family<ReasonLabel, Counter>,
    pub placement_failures: Counter,
    pub reconciliations: Family<OutcomeLabel, Counter>,
    pub conferences_ended: Family<ReasonLabel, Counter>,
    pub members_left: Family<ReasonLabel, Counter>,
    pub webhook_attempts: Family<EndpointOutcomeLabel, Counter>,
    pub browser_channels_closed: Family<ReasonLabel, Counter>,
    pub browser_events_failed: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointOutcomeLabel {
    pub endpoint: String,
    pub outcome: String,
}

impl Metrics {
    pub fn node(node: &str) -> NodeLabel {
        NodeLabel {
            node: node.to_owned(),
        }
    }

    pub fn reason(reason: &str) -> ReasonLabel {
        ReasonLabel {
            reason: reason.to_owned(),
        }
    }

    /// Registers the counters in `registry` (they keep counting in `self`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "switchyard_esl_connections",
            "Successful ESL connections (the first, then reconnects)",
            self.esl_connections.clone(),
        );
        registry.register(
            "switchyard_esl_disconnects",
            "ESL connections lost",
            self.esl_disconnects.clone(),
        );
        registry.register(
            "switchyard_placements",
            "Conferences placed on a node by this replica",
            self.placements.clone(),
        );
        registry.register(
            "switchyard_placement_rejections",
            "Nodes rejected by placement, by reason",
            self.placement_rejections.clone(),
        );
        registry.register(
            "switchyard_placement_failures",
            "Placements that found no node",
            self.placement_failures.clone(),
        );
        registry.register(
            "switchyard_reconciliations",
            "Nodes read back after a reconnect or takeover",
            self.reconciliations.clone(),
        );
        registry.register(
            "switchyard_conferences_ended",
            "Placements ended by the pool, by reason",
            self.conferences_ended.clone(),
        );
        registry.register(
            "switchyard_webhook_attempts",
            "Webhook delivery attempts, by endpoint and outcome",
            self.webhook_attempts.clone(),
        );
        registry.register(
            "switchyard_browser_channels_closed",
            "Browser event channels closed, by reason",
            self.browser_channels_closed.clone(),
        );
        registry.register(
            "switchyard_browser_events_failed",
            "Browser events that could not be published",
            self.browser_events_failed.clone(),
        );
        registry.register(
            "switchyard_members_left",
            "Members gone from a conference, by reason",
            self.members_left.clone(),
        );
    }
}
