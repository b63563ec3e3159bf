//! Serving and stopping: [`run`] and the process signals that end it.
//!
//! Shutdown order, all bounded by one deadline (`http.shutdown_grace_secs` after the signal):
//! 1. the shutdown future resolves (SIGINT/SIGTERM in the binary, anything in tests), and
//!    [`App::shutdown`] is cancelled: background tasks see it, `/readyz` turns 503;
//! 2. the listener stops accepting; in-flight requests run to completion;
//! 3. the task tracker is closed and awaited;
//! 4. the database pool is closed.
//!
//! A step still running at the deadline is abandoned with a warning and `run` returns `Ok`:
//! a slow client must not keep a node from being replaced.

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::pin;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};

use crate::app::{App, AppState};
use crate::http;

/// Serves the API on `listener` until `shutdown` resolves (or [`App::shutdown`] is cancelled),
/// then drains as described in the module docs.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = app.config.http.shutdown_grace();
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    // Background tasks run on `app.tasks` and watch `app.shutdown`.
    // Webhooks first: they subscribe to the bus before any node task can announce.
    crate::webhooks::start(&app);
    crate::housekeeping::start(&app);
    let browser_events = app.bus.subscribe();
    crate::nodes::start(&app);
    let app = Arc::new(app);
    crate::browser::start(&app, browser_events);
    let token = app.shutdown.clone();
    let tasks = app.tasks.clone();

    let signal_token = token.clone();
    let signal = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested"),
            () = signal_token.cancelled() => {}
        }
        signal_token.cancel();
    };
    let router = http::router(AppState(Arc::clone(&app)));
    // Without TCP_NODELAY, Nagle holds back a WebSocket frame written while an earlier one
    // is unacknowledged: event channels then wait on the browser's delayed ACKs.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let mut server = pin!(server);
    tracing::info!(%addr, "serving HTTP");

    let finished = tokio::select! {
        result = &mut server => Some(result),
        () = token.cancelled() => None,
    };
    // Also stops the background tasks if the server ended by itself.
    token.cancel();
    let deadline = Instant::now() + grace;

    let result = match finished {
        Some(result) => result.context("HTTP server failed"),
        None => match timeout_at(deadline, &mut server).await {
            Ok(result) => result.context("HTTP server failed"),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "in-flight requests still running at the end of the shutdown grace period; abandoning them"
                );
                Ok(())
            }
        },
    };

    tasks.close();
    if timeout_at(deadline, tasks.wait()).await.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "background tasks still running at the end of the shutdown grace period; abandoning them"
        );
    }
    // Closing waits for borrowed connections, which an abandoned request may still hold.
    if timeout_at(deadline, app.store.close()).await.is_err() {
        tracing::warn!("database pool not closed within the shutdown grace period");
    }
    tracing::info!("shut down");
    result
}

/// A future that resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives right after startup is not lost to the default "terminate" action.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C; stop the process another way");
                std::future::pending::<()>().await;
            }
        })
    }
}
