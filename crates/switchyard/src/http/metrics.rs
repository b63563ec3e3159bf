//! `GET /metrics`: OpenMetrics text, which Prometheus scrapes (see `crate::metrics` for the
//! list).
//!
//! Unauthenticated, like `/healthz`: it carries node ids and load figures, no secrets and no
//! user data. Keep the port off the public internet (the operator guide says how).

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ApiError;
use crate::app::AppState;
use crate::metrics::NodeLabel;
use crate::nodes::NodeState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct NodeStateLabel {
    node: String,
    state: String,
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut registry = Registry::default();
    state.metrics.register(&mut registry);

    let node_state = Family::<NodeStateLabel, Gauge>::default();
    let members = Family::<NodeLabel, Gauge>::default();
    let conferences = Family::<NodeLabel, Gauge>::default();
    let placements = Family::<NodeLabel, Gauge>::default();
    let capacity = Family::<NodeLabel, Gauge>::default();
    let owned = Family::<NodeLabel, Gauge>::default();
    let heartbeat_age = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let probe_rtt = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();

    let records = state.nodes.records();
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let loads = state.live.loads(&ids).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "live state unavailable for /metrics");
        HashMap::new()
    });
    let counts = state.store.live_conference_counts().await?;
    for record in &records {
        let label = NodeLabel {
            node: record.id.clone(),
        };
        let status = state.nodes.status(&record.id);
        let current = status.as_ref().map_or(NodeState::Connecting, |s| s.state);
        for s in NodeState::ALL {
            node_state
                .get_or_create(&NodeStateLabel {
                    node: record.id.clone(),
                    state: s.as_str().to_owned(),
                })
                .set(i64::from(s == current));
        }
        let load = loads.get(&record.id).copied().unwrap_or_default();
        members.get_or_create(&label).set(i64::from(load.members));
        conferences
            .get_or_create(&label)
            .set(i64::from(load.conferences));
        placements
            .get_or_create(&label)
            .set(i64::from(counts.get(&record.id).map_or(0, |c| c.live)));
        capacity
            .get_or_create(&label)
            .set(i64::from(record.capacity));
        owned
            .get_or_create(&label)
            .set(i64::from(status.as_ref().is_some_and(|s| s.owned)));
        if let Some(hb) = status.as_ref().and_then(|s| s.last_heartbeat.as_ref()) {
            let age = SystemTime::now()
                .duration_since(hb.received_at)
                .unwrap_or_default();
            heartbeat_age.get_or_create(&label).set(age.as_secs_f64());
        }
        if let Some(rtt) = status.as_ref().and_then(|s| s.probe_rtt) {
            probe_rtt.get_or_create(&label).set(rtt.as_secs_f64());
        }
    }
    registry.register(
        "switchyard_node_state",
        "1 for the node's current state as this replica sees it",
        node_state,
    );
    registry.register(
        "switchyard_node_members",
        "Live members on the node",
        members,
    );
    registry.register(
        "switchyard_node_conferences",
        "Conferences running on the node",
        conferences,
    );
    registry.register(
        "switchyard_node_placements",
        "Live placements on the node, idle ones included",
        placements,
    );
    registry.register(
        "switchyard_node_capacity",
        "Configured member capacity of the node",
        capacity,
    );
    registry.register(
        "switchyard_node_owned",
        "1 if this replica processes the node's events",
        owned,
    );
    registry.register(
        "switchyard_node_heartbeat_age_seconds",
        "Time since the node's last HEARTBEAT",
        heartbeat_age,
    );
    registry.register(
        "switchyard_node_probe_rtt_seconds",
        "Round trip of the last api status probe",
        probe_rtt,
    );
    let channels = Gauge::<i64>::default();
    let open: usize = state
        .browser
        .hub
        .local_presence()
        .iter()
        .map(|(_, n)| n)
        .sum();
    channels.set(i64::try_from(open).unwrap_or(i64::MAX));
    registry.register(
        "switchyard_browser_channels",
        "Open browser event channels on this replica",
        channels,
    );

    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| ApiError::Unexpected(anyhow::anyhow!(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
