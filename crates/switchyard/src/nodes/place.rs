//! Placing a conference: gather the candidates' figures, run the policy ([`super::placement`]),
//! claim the conference in the database.
//!
//! The claim is an insert under a unique index on live conference names, in the database all
//! replicas share: two requests (on any replicas) racing for a new name both choose a node, one
//! insert wins and the other request returns the winner's placement. A conference is therefore
//! never on two nodes, and a later request for the same name always gets the same node.

use std::collections::BTreeMap;

use serde::Serialize;

use super::NodeState;
use super::health::Health;
use super::placement::{self, Candidate, Policy, Rejection};
use crate::app::App;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::store::{Claim, ConferenceOptions, ConferenceRecord, NewConference, Origin, StoreError};

/// What the caller wants placed.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    pub name: String,
    pub profile: String,
    /// Labels the node must carry, e.g. `region = "eu"`.
    pub labels: BTreeMap<String, String>,
    /// Options of a new conference (an existing one keeps its own).
    pub options: ConferenceOptions,
}

/// A placement and whether this request made it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub conference: ConferenceRecord,
    pub created: bool,
}

/// One node's rejection, for the 503 answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRejection {
    pub node: String,
    pub reason: &'static str,
    pub detail: String,
}

/// Why a conference could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("no node can take the conference: {}", summary(.0))]
    NoNode(Vec<NodeRejection>),
    #[error(
        "conference {conference:?} is on node {node:?}, which is {state}; it ends unless the node returns"
    )]
    NodeUnavailable {
        conference: String,
        node: String,
        state: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn summary(rejections: &[NodeRejection]) -> String {
    if rejections.is_empty() {
        return "the pool has no nodes".to_owned();
    }
    rejections
        .iter()
        .map(|r| format!("{}: {}", r.node, r.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Places conference `request.name`, or returns its existing placement.
pub async fn place(app: &App, request: &PlacementRequest) -> Result<Placed, PlaceError> {
    if let Some(existing) = app.store.live_conference(&request.name).await? {
        check_reachable(app, &existing)?;
        return Ok(Placed {
            conference: existing,
            created: false,
        });
    }
    let node = choose(app, request).await?;
    let new = NewConference {
        name: request.name.clone(),
        node_id: node,
        profile: request.profile.clone(),
        labels: request.labels.clone(),
        origin: Origin::Placed,
        options: request.options.clone(),
    };
    match app.store.claim_conference(&new).await? {
        Claim::Claimed(conference) => {
            tracing::info!(
                conference = %conference.name,
                node = %conference.node_id,
                "conference placed"
            );
            app.metrics
                .placements
                .get_or_create(&Metrics::node(&conference.node_id))
                .inc();
            app.bus.publish(Event::ConferencePlaced {
                conference: conference.clone(),
            });
            Ok(Placed {
                conference,
                created: true,
            })
        }
        Claim::Existing(conference) => {
            check_reachable(app, &conference)?;
            Ok(Placed {
                conference,
                created: false,
            })
        }
    }
}

/// An existing placement is kept on its node even when that node drains or is degraded; only
/// a node that is down (or gone) makes the request fail.
fn check_reachable(app: &App, conference: &ConferenceRecord) -> Result<(), PlaceError> {
    let state = app.nodes.status(&conference.node_id).map(|s| s.state);
    match state {
        Some(NodeState::Down | NodeState::Stopped) | None => Err(PlaceError::NodeUnavailable {
            conference: conference.name.clone(),
            node: conference.node_id.clone(),
            state: state.map_or("not in the pool", NodeState::as_str),
        }),
        Some(_) => Ok(()),
    }
}

async fn choose(app: &App, request: &PlacementRequest) -> Result<String, PlaceError> {
    let records = app.nodes.records();
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let loads = match app.live.loads(&ids).await {
        Ok(loads) => loads,
        Err(e) => {
            // Degraded, not wrong: placements still reserve their slots in the database.
            tracing::warn!(error = %e, "live state unavailable; placing by placements only");
            Default::default()
        }
    };
    let counts = app.store.live_conference_counts().await?;
    // With Redis, each node's owner shares its view: the worse of it and ours counts.
    let views = match &app.coord {
        Some(coord) => coord.node_views(&ids).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "owners' node views unavailable; placing by this replica's view");
            Default::default()
        }),
        None => Default::default(),
    };
    let statuses: BTreeMap<String, _> = app
        .nodes
        .statuses()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let candidates: Vec<Candidate<'_>> = records
        .iter()
        .map(|r| {
            let status = statuses.get(&r.id);
            let heartbeat = status.and_then(|s| s.last_heartbeat.as_ref());
            Candidate {
                id: &r.id,
                health: match status {
                    Some(s) if s.stopped => Health::Down,
                    Some(s) => s.health,
                    None => Health::Connecting,
                }
                .worst(views.get(&r.id).map_or(Health::Up, |v| v.health)),
                draining: r.draining,
                capacity: r.capacity,
                labels: &r.labels,
                members: loads.get(&r.id).map_or(0, |l| l.members),
                idle_conferences: counts.get(&r.id).map_or(0, |c| c.idle),
                idle_cpu: heartbeat.and_then(|h| h.idle_cpu),
                sessions: heartbeat.and_then(|h| Some((h.session_count?, h.max_sessions?))),
            }
        })
        .collect();
    let policy = Policy {
        min_idle_cpu: app.config.pool.min_idle_cpu,
    };
    match placement::choose(&candidates, &request.labels, policy, &mut rand::rng()) {
        Ok(choice) => {
            tracing::debug!(conference = %request.name, node = %choice.node, score = choice.score, "node chosen");
            Ok(choice.node)
        }
        Err(rejected) => {
            app.metrics.placement_failures.inc();
            let rejections: Vec<NodeRejection> = rejected
                .into_iter()
                .map(|(node, r): (String, Rejection)| {
                    app.metrics
                        .placement_rejections
                        .get_or_create(&Metrics::reason(r.as_str()))
                        .inc();
                    NodeRejection {
                        node,
                        reason: r.as_str(),
                        detail: r.to_string(),
                    }
                })
                .collect();
            let err = PlaceError::NoNode(rejections);
            tracing::warn!(conference = %request.name, error = %err, "cannot place conference");
            Err(err)
        }
    }
}
