//! The pool's replica-wide tasks: node-set sync and the lease keeper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use tokio::time::Instant;

use super::supervisor::{self, Ctx};
use crate::app::App;
use crate::coord::{Coord, LeaseClaim};
use crate::store::{NodeRecord, NodeSpec};

/// How long to wait before retrying when the database does not answer at startup.
const RETRY: Duration = Duration::from_secs(1);

/// Starts the pool: upserts the configured nodes, then syncs the node set from the database
/// (spawning a supervisor per node) and, with Redis, keeps the node leases. All tasks run on
/// `app.tasks` and stop with `app.shutdown`.
pub fn start(app: &App) {
    let ctx = Arc::new(Ctx {
        pool: app.nodes.clone(),
        coord: app.coord.clone(),
        store: app.store.clone(),
        live: app.live.clone(),
        bus: app.bus.clone(),
        metrics: app.metrics.clone(),
        pool_config: app.config.pool.clone(),
        esl_config: app.config.esl.clone(),
        tasks: app.tasks.clone(),
        shutdown: app.shutdown.clone(),
    });
    let config_nodes: Vec<NodeSpec> = app
        .config
        .nodes
        .iter()
        .map(|n| NodeSpec {
            id: n.id.clone(),
            esl_addr: n.esl_addr.clone(),
            esl_password: n.esl_password.expose_secret().into(),
            wss_url: n.wss_url.clone(),
            capacity: n.capacity,
            labels: n.labels.clone(),
        })
        .collect();
    app.tasks.spawn(sync_loop(Arc::clone(&ctx), config_nodes));
    if let Some(coord) = &app.coord {
        app.tasks.spawn(lease_keeper(ctx, coord.clone()));
    }
}

async fn sync_loop(ctx: Arc<Ctx>, config_nodes: Vec<NodeSpec>) {
    // Config nodes first, so that they are in the table the loop reads.
    for spec in &config_nodes {
        loop {
            match ctx.store.upsert_config_node(spec).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(node = %spec.id, error = %e, "cannot record configured node; retrying");
                    tokio::select! {
                        () = ctx.shutdown.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
    let mut requests = ctx.pool.take_sync_requests();
    let mut interval = tokio::time::interval(ctx.pool_config.sync_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = interval.tick() => None,
            Some(request) = async {
                match requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(request),
        };
        match ctx.store.list_nodes().await {
            Ok(records) => apply(&ctx, records),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node list; keeping the current pool")
            }
        }
        if let Some(done) = waiting {
            let _ = done.send(());
        }
    }
}

/// Makes the pool match `records`.
pub(super) fn apply(ctx: &Arc<Ctx>, records: Vec<NodeRecord>) {
    let wanted: BTreeMap<String, NodeRecord> =
        records.into_iter().map(|r| (r.id.clone(), r)).collect();
    for id in ctx.pool.ids() {
        if !wanted.contains_key(&id) {
            tracing::info!(node = %id, "node removed from the pool");
            ctx.pool.remove(&id);
        }
    }
    for (id, record) in wanted {
        match ctx.pool.record(&id) {
            None => supervisor::spawn(ctx, record),
            Some(current)
                if current.esl_addr != record.esl_addr
                    || current.esl_password.expose_secret()
                        != record.esl_password.expose_secret() =>
            {
                tracing::info!(node = %id, "node address or password changed; reconnecting");
                ctx.pool.remove(&id);
                supervisor::spawn(ctx, record);
            }
            Some(current) => {
                if current.draining != record.draining {
                    tracing::info!(node = %id, draining = record.draining, "node drain flag changed");
                }
                ctx.pool.refresh(&record);
            }
        }
    }
}

/// Claims or renews every node's lease each third of the TTL; releases them at shutdown.
async fn lease_keeper(ctx: Arc<Ctx>, coord: Coord) {
    let ttl = ctx.pool_config.lease_ttl();
    let period = ttl / 3;
    let me = ctx.pool.replica_id().to_owned();
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        for id in ctx.pool.ids() {
            let claimed_at = Instant::now();
            match coord.claim_lease(&id, &me, ttl).await {
                Ok(LeaseClaim::Acquired) => {
                    tracing::info!(node = %id, replica = %me, "acquired node lease");
                    // Valid from when Redis set it, which is after `claimed_at`; keep a margin.
                    ctx.pool.set_owned(&id, Some(claimed_at + ttl - period / 2));
                }
                Ok(LeaseClaim::Renewed) => {
                    ctx.pool.set_owned(&id, Some(claimed_at + ttl - period / 2));
                }
                Ok(LeaseClaim::HeldElsewhere) => {
                    if ctx.pool.owns(&id, claimed_at) {
                        tracing::warn!(node = %id, "node lease taken by another replica");
                    }
                    ctx.pool.set_owned(&id, None);
                }
                Err(e) => {
                    // Keep what we have until it expires: the Lua fence protects the writes.
                    tracing::warn!(node = %id, error = %e, "cannot renew node lease");
                }
            }
        }
    }
    for id in ctx.pool.ids() {
        ctx.pool.set_owned(&id, None);
        if let Err(e) = coord.release_lease(&id, &me).await {
            tracing::debug!(node = %id, error = %e, "cannot release node lease");
        }
    }
}
