//! The inbound event socket (mod_event_socket): accept loop and one task per connection.
//!
//! # Why
//!
//! Switchyard's ESL client must cope with everything a real node does on this socket, so each
//! connection follows mod_event_socket's listener thread (protocol doc §1.2–1.7, captures
//! esl-auth-*.txt, esl-exit.txt, esl-command-before-auth.txt, esl-filter-*.txt, esl-bgapi-*.txt):
//!
//! - `auth/request` on connect; the first command must come within `auth_timeout` (25 s);
//! - before `auth`, any other command gets `-ERR command not found` and the connection stays
//!   open (with no timeout any more); a wrong password gets `-ERR invalid`, the goodbye notice,
//!   and the close; `exit` works at any time;
//! - commands run strictly one at a time, in order, and events are written only *between*
//!   commands — a running `api` holds them back, exactly as on the real socket;
//! - `bgapi` answers at once and delivers a `BACKGROUND_JOB` later, only to listeners subscribed
//!   to it;
//! - the fault modes: frozen (nothing read or written), dropped (abortive close), shutdown
//!   (`The system is being shut down.`), killed for losing events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use esl::{Event, RequestDecoder, serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::bus::{KILLED_NOTICE, Listener, lock};
use crate::events::at;
use crate::node::{Shared, Stop};

/// Accepts connections until the node stops.
pub(crate) async fn accept_loop(
    shared: Weak<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<Stop>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "TCP_NODELAY");
                    }
                    tokio::spawn(connection(shared, stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ESL accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() != Stop::Running {
                    return;
                }
            }
        }
    }
}

/// Decrements the connection count when a connection ends.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(Arc::clone(&shared));
    let (listener, rx) = shared.bus.register(shared.cfg.event_queue_len);
    let id = listener.id;
    let mut conn = Conn {
        epoch: shared.conn_epoch.subscribe(),
        stop: shared.stop.subscribe(),
        frozen: shared.frozen.subscribe(),
        shared: Arc::clone(&shared),
        stream,
        listener,
        rx,
        decoder: RequestDecoder::default(),
        input: BytesMut::with_capacity(1024),
        output: BytesMut::with_capacity(4096),
        authed: false,
        got_first_command: false,
        logging: false,
    };
    conn.epoch.mark_unchanged();
    let end = conn.run().await;
    shared.bus.unregister(id);
    match end {
        End::Abort => {
            // An abortive close (RST), as when a process dies.
            let _ = conn.stream.set_zero_linger();
        }
        End::Closed => {
            let _ = conn.stream.shutdown().await;
        }
        End::Gone => {}
    }
}

/// How a connection ended.
enum End {
    /// Close normally (after a notice).
    Closed,
    /// Abortive close (fault injection, dropped node).
    Abort,
    /// The peer went away.
    Gone,
}

/// What to do after a command.
enum Flow {
    Continue,
    /// Write the goodbye notice and close.
    Goodbye,
}

struct Conn {
    shared: Arc<Shared>,
    stream: TcpStream,
    listener: Arc<Listener>,
    rx: mpsc::Receiver<Arc<Event>>,
    epoch: watch::Receiver<u64>,
    stop: watch::Receiver<Stop>,
    frozen: watch::Receiver<bool>,
    decoder: RequestDecoder,
    input: BytesMut,
    output: BytesMut,
    authed: bool,
    got_first_command: bool,
    logging: bool,
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

impl Conn {
    async fn run(&mut self) -> End {
        if let Some(end) = self.wait_unfrozen().await {
            return end;
        }
        serialize::auth_request(&mut self.output);
        if self.flush().await.is_err() {
            return End::Gone;
        }
        let auth_deadline = tokio::time::Instant::now() + self.shared.cfg.auth_timeout;
        loop {
            // Commands already received run first, one at a time.
            loop {
                let request = match self.decoder.decode(&mut self.input) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "ESL client sent an invalid command block");
                        return End::Abort;
                    }
                };
                if let Some(end) = self.wait_unfrozen().await {
                    return end;
                }
                self.got_first_command = true;
                let flow = self.command(request).await;
                if self.flush().await.is_err() {
                    return End::Gone;
                }
                if let Flow::Goodbye = flow {
                    return self.notice(serialize::GOODBYE).await;
                }
            }
            let frozen = *self.frozen.borrow();
            tokio::select! {
                biased;
                _ = self.epoch.changed() => return End::Abort,
                _ = self.stop.changed() => {
                    let stop = *self.stop.borrow();
                    return match stop {
                        Stop::Running => continue,
                        Stop::Dropped => End::Abort,
                        Stop::Shutdown => {
                            self.drain_events();
                            self.notice(serialize::SHUTTING_DOWN).await
                        }
                    };
                }
                _ = self.listener.kill.notified(), if !frozen => {
                    return self.notice(KILLED_NOTICE).await;
                }
                _ = self.frozen.changed() => continue,
                read = self.stream.read_buf(&mut self.input), if !frozen => match read {
                    Ok(0) | Err(_) => return End::Gone,
                    Ok(_) => {}
                },
                event = self.rx.recv(), if self.authed && !frozen => {
                    if let Some(event) = event {
                        self.write_event(&event);
                        // Batch whatever else is queued.
                        for _ in 0..256 {
                            match self.rx.try_recv() {
                                Ok(event) => self.write_event(&event),
                                Err(_) => break,
                            }
                        }
                        if self.flush().await.is_err() {
                            return End::Gone;
                        }
                    }
                }
                _ = tokio::time::sleep_until(auth_deadline), if !self.got_first_command && !frozen => {
                    return self.notice(serialize::GOODBYE).await;
                }
            }
        }
    }

    /// Waits while the node is frozen; `Some` when the connection must end meanwhile.
    async fn wait_unfrozen(&mut self) -> Option<End> {
        while *self.frozen.borrow_and_update() {
            tokio::select! {
                _ = self.epoch.changed() => return Some(End::Abort),
                _ = self.stop.changed() => {
                    if *self.stop.borrow() != Stop::Running {
                        return Some(End::Abort);
                    }
                }
                changed = self.frozen.changed() => {
                    if changed.is_err() {
                        return Some(End::Abort);
                    }
                }
            }
        }
        None
    }

    fn write_event(&mut self, event: &Event) {
        let format = lock(&self.listener.sub).format;
        serialize::event_frame(&mut self.output, format, event);
    }

    /// Writes every queued event (shutdown: the SHUTDOWN event goes out before the notice).
    fn drain_events(&mut self) {
        if !self.authed {
            return;
        }
        while let Ok(event) = self.rx.try_recv() {
            self.write_event(&event);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.output).await;
        self.output.clear();
        result
    }

    async fn notice(&mut self, text: &str) -> End {
        serialize::disconnect_notice(&mut self.output, text);
        match self.flush().await {
            Ok(()) => End::Closed,
            Err(_) => End::Gone,
        }
    }

    fn reply(&mut self, text: &str) {
        serialize::command_reply(&mut self.output, text, &[]);
    }

    async fn command(&mut self, request: esl::Request) -> Flow {
        let line = request.line.as_str();
        if starts_with_ci(line, "exit") || line.starts_with("...") {
            self.reply("+OK bye");
            return Flow::Goodbye;
        }
        if !self.authed {
            if starts_with_ci(line, "auth ") {
                if line[5..] == self.shared.cfg.password {
                    self.authed = true;
                    self.reply("+OK accepted");
                } else {
                    self.reply("-ERR invalid");
                    return Flow::Goodbye;
                }
            } else if starts_with_ci(line, "userauth ") {
                // fsim has no ESL users in its directory.
                self.reply("-ERR invalid");
                return Flow::Goodbye;
            } else {
                self.reply("-ERR command not found");
            }
            return Flow::Continue;
        }
        if starts_with_ci(line, "api ") {
            let (cmd, args) = split_command(&line[4..]);
            let body = crate::api::execute(&self.shared, cmd, args);
            serialize::api_response(&mut self.output, &body);
        } else if starts_with_ci(line, "bgapi ") {
            let (cmd, args) = split_command(&line[6..]);
            let job = request
                .headers
                .get("Job-UUID")
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            serialize::command_reply(
                &mut self.output,
                &format!("+OK Job-UUID: {job}"),
                &[("Job-UUID", &job)],
            );
            let shared = Arc::clone(&self.shared);
            let (cmd, args) = (cmd.to_owned(), args.to_owned());
            tokio::spawn(async move { background_job(&shared, &job, &cmd, &args) });
        } else if starts_with_ci(line, "log") {
            let text = log_command(line[3..].trim());
            if text.starts_with("+OK") {
                self.logging = true;
            }
            self.reply(&text);
        } else if starts_with_ci(line, "linger") || starts_with_ci(line, "nolinger") {
            self.reply("-ERR not controlling a session");
        } else if starts_with_ci(line, "nolog") {
            let text = if std::mem::take(&mut self.logging) {
                "+OK no longer logging"
            } else {
                "-ERR not loging"
            };
            self.reply(text);
        } else if starts_with_ci(line, "event") {
            let text = lock(&self.listener.sub).event_command(line);
            self.reply(&text);
        } else if starts_with_ci(line, "nixevent") {
            let text = lock(&self.listener.sub).nixevent_command(line);
            self.reply(&text);
        } else if starts_with_ci(line, "noevents") {
            let (text, flush) = lock(&self.listener.sub).noevents_command();
            if flush {
                while self.rx.try_recv().is_ok() {}
            }
            self.reply(&text);
        } else if starts_with_ci(line, "filter ") {
            let text = lock(&self.listener.sub).filter_command(line);
            self.reply(&text);
        } else if starts_with_ci(line, "divert_events") {
            self.reply("-ERR not controlling a session.");
        } else {
            self.reply("-ERR command not found");
        }
        Flow::Continue
    }
}

/// `cmd args` split at the first space.
fn split_command(s: &str) -> (&str, &str) {
    s.split_once(' ').unwrap_or((s, ""))
}

/// `log [level]`: fsim writes no log lines but answers like FreeSWITCH.
fn log_command(level: &str) -> String {
    let level = if level.is_empty() { "debug" } else { level };
    let n = match level.to_ascii_lowercase().as_str() {
        "console" => Some(0),
        "alert" => Some(1),
        "crit" => Some(2),
        "err" => Some(3),
        "warning" => Some(4),
        "notice" => Some(5),
        "info" => Some(6),
        "debug" => Some(7),
        other => other.parse::<u8>().ok().filter(|n| *n <= 7),
    };
    match n {
        Some(n) => format!("+OK log level {level} [{n}]"),
        None => "-ERR invalid log level".to_owned(),
    }
}

/// A `bgapi` job: run the api, then fire BACKGROUND_JOB with the output as body.
fn background_job(shared: &Shared, job: &str, cmd: &str, args: &str) {
    let body = crate::api::execute(shared, cmd, args);
    shared.fire_with(|ctx, _| {
        let mut b = ctx.event("BACKGROUND_JOB", at("mod_event_socket.c", "api_exec", 1580));
        b.add("Job-UUID", job);
        b.add("Job-Command", cmd);
        b.add("Job-Command-Arg", args);
        b.body(body);
        vec![b.build()]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        assert_eq!(log_command(""), "+OK log level debug [7]");
        assert_eq!(log_command("info"), "+OK log level info [6]");
        assert_eq!(log_command("3"), "+OK log level 3 [3]");
        assert_eq!(log_command("loud"), "-ERR invalid log level");
    }

    #[test]
    fn prefixes() {
        assert!(starts_with_ci("EVENTS plain ALL", "event"));
        assert!(!starts_with_ci("ev", "event"));
        assert_eq!(
            split_command("conference 3000 list"),
            ("conference", "3000 list")
        );
        assert_eq!(split_command("status"), ("status", ""));
    }
}
