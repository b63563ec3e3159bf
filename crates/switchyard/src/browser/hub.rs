//! Per-user event logs and the fan-out to open channels.
//!
//! Every event for a user gets the user's next sequence number and is appended to the user's
//! replay buffer (the last `events.replay_events`, kept `events.replay_secs` after the newest),
//! then delivered to the user's channels on every replica. Without Redis all of that is in this
//! process. With Redis one Lua script per event numbers, appends and `PUBLISH`es, and every
//! replica's subscriber hands the message to its local channels — so a browser gets every
//! event whichever replica it is connected to, and can resume on another one.
//!
//! Channels keep their own `last seq sent`: a delivery at or below it is a duplicate, one beyond
//! `last + 1` means something was missed (a Redis reconnect) and is filled from the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::AsyncCommands as _;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::Close;
use crate::coord::Coord;

/// Queued deliveries per channel; a channel this far behind is closed (`4010 too_slow`) and
/// resumes from the buffer when it reconnects.
const CHANNEL_QUEUE: usize = 512;
/// The sequence counter outlives the buffer so that numbers do not restart while a client may
/// still resume.
const SEQ_TTL_MS: u64 = 86_400_000;
/// Presence entries expire unless refreshed (a crashed replica's users go offline).
const PRESENCE_TTL: Duration = Duration::from_secs(45);
const PRESENCE_REFRESH: Duration = Duration::from_secs(15);
/// How long the Redis subscriber waits before reconnecting.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Numbers, appends and publishes one event for each user (pairs of KEYS: seq, buffer).
const PUBLISH: &str = r"
for i = 1, #KEYS / 2 do
  local seq = redis.call('INCR', KEYS[2 * i - 1])
  redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[5])
  redis.call('RPUSH', KEYS[2 * i], seq .. ' ' .. ARGV[2])
  redis.call('LTRIM', KEYS[2 * i], -tonumber(ARGV[3]), -1)
  redis.call('PEXPIRE', KEYS[2 * i], ARGV[4])
  redis.call('PUBLISH', ARGV[1], ARGV[5 + i] .. '\n' .. seq .. '\n' .. ARGV[2])
end
return #KEYS / 2
";

/// The current sequence number and the buffer, read together.
const READ_LOG: &str = r"
return {redis.call('GET', KEYS[1]) or '0', redis.call('LRANGE', KEYS[2], 0, -1)}
";

/// What a channel receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event (JSON without `seq`).
    Event { seq: u64, json: Arc<str> },
    /// Deliveries may have been missed (the Redis subscription was re-established): compare
    /// with the buffer.
    CatchUp,
    /// Close the channel (token revoked, user disabled).
    Revoke(Close),
}

/// The answer to a resumption request.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// Every event after the requested number, in order (maybe none).
    Complete(Vec<(u64, Arc<str>)>),
    /// Some are gone (or the numbering restarted): the client must re-read the state.
    Gap,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("unreadable event log in Redis: {0}")]
    Corrupt(String),
}

/// Registration refused: the user has `max_connections_per_user` channels here.
#[derive(Debug, thiserror::Error)]
#[error("too many open channels for this user")]
pub struct TooManyConnections;

/// The hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    local: Mutex<Local>,
    replay_events: usize,
    replay_window: Duration,
    max_per_user: usize,
    /// Wakes the presence writer when channels open or close.
    presence_changed: Notify,
}

#[derive(Debug)]
enum Backend {
    Memory(Mutex<HashMap<String, UserLog>>),
    Redis { coord: Coord, replica: String },
}

#[derive(Debug, Default)]
struct UserLog {
    seq: u64,
    events: VecDeque<(u64, Arc<str>)>,
    newest_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Local {
    next_id: u64,
    users: HashMap<String, HashMap<u64, mpsc::Sender<Delivery>>>,
}

/// A channel's place in the hub; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    hub: Hub,
    user: String,
    id: u64,
    pub rx: mpsc::Receiver<Delivery>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut local = self.hub.local();
        if let Some(channels) = local.users.get_mut(&self.user) {
            channels.remove(&self.id);
            if channels.is_empty() {
                local.users.remove(&self.user);
            }
        }
        drop(local);
        self.hub.inner.presence_changed.notify_one();
    }
}

/// Locks a mutex, recovering from poisoning (the data are plain maps, valid after any panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// In-process only (no Redis: one replica).
    pub fn memory(config: &crate::config::EventsConfig) -> Self {
        Self::new(Backend::Memory(Mutex::default()), config)
    }

    /// Shared through Redis.
    pub fn redis(coord: Coord, replica: &str, config: &crate::config::EventsConfig) -> Self {
        Self::new(
            Backend::Redis {
                coord,
                replica: replica.to_owned(),
            },
            config,
        )
    }

    fn new(backend: Backend, config: &crate::config::EventsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                local: Mutex::default(),
                replay_events: config.replay_events.max(1) as usize,
                replay_window: config.replay_window(),
                max_per_user: config.max_connections_per_user.max(1) as usize,
                presence_changed: Notify::new(),
            }),
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        lock(&self.inner.local)
    }

    /// Opens a channel's mailbox for `user`.
    pub fn register(&self, user: &str) -> Result<Registration, TooManyConnections> {
        let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
        let mut local = self.local();
        local.next_id += 1;
        let id = local.next_id;
        let channels = local.users.entry(user.to_owned()).or_default();
        if channels.len() >= self.inner.max_per_user {
            return Err(TooManyConnections);
        }
        channels.insert(id, tx);
        drop(local);
        self.inner.presence_changed.notify_one();
        Ok(Registration {
            hub: self.clone(),
            user: user.to_owned(),
            id,
            rx,
        })
    }

    /// Numbers `json` for each of `users`, keeps it for resumption and delivers it everywhere.
    pub async fn publish(&self, users: &[String], json: &str) -> Result<(), HubError> {
        if users.is_empty() {
            return Ok(());
        }
        match &self.inner.backend {
            Backend::Memory(logs) => {
                let json: Arc<str> = Arc::from(json);
                let now = Instant::now();
                let mut numbered = Vec::with_capacity(users.len());
                {
                    let mut logs = lock(logs);
                    for user in users {
                        let log = logs.entry(user.clone()).or_default();
                        if log
                            .newest_at
                            .is_some_and(|t| now.duration_since(t) > self.inner.replay_window)
                        {
                            log.events.clear();
                        }
                        log.seq += 1;
                        log.events.push_back((log.seq, json.clone()));
                        while log.events.len() > self.inner.replay_events {
                            log.events.pop_front();
                        }
                        log.newest_at = Some(now);
                        numbered.push((user, log.seq));
                    }
                }
                for (user, seq) in numbered {
                    self.deliver_local(
                        user,
                        Delivery::Event {
                            seq,
                            json: json.clone(),
                        },
                    );
                }
                Ok(())
            }
            Backend::Redis { coord, .. } => {
                let publish = redis::Script::new(PUBLISH);
                let mut script = publish.prepare_invoke();
                for user in users {
                    script
                        .key(seq_key(coord, user))
                        .key(buffer_key(coord, user));
                }
                script
                    .arg(channel_name(coord))
                    .arg(json)
                    .arg(self.inner.replay_events)
                    .arg(self.inner.replay_window.as_millis() as u64)
                    .arg(SEQ_TTL_MS);
                for user in users {
                    script.arg(user);
                }
                let mut conn = coord.connection();
                let _: u64 = timed(script.invoke_async(&mut conn)).await?;
                Ok(())
            }
        }
    }

    /// Closes every channel of `user` on every replica.
    pub async fn revoke(&self, user: &str, close: Close) -> Result<(), HubError> {
        match &self.inner.backend {
            Backend::Memory(_) => {
                self.deliver_local(user, Delivery::Revoke(close));
                Ok(())
            }
            Backend::Redis { coord, .. } => {
                let mut conn = coord.connection();
                let message = format!("{user}\n0\n{}", close.code());
                let _: i64 = timed(conn.publish(channel_name(coord), message)).await?;
                Ok(())
            }
        }
    }

    /// The user's newest sequence number.
    pub async fn current_seq(&self, user: &str) -> Result<u64, HubError> {
        Ok(self.read_log(user).await?.0)
    }

    /// The events after `after`, if all of them are still kept; with the newest number.
    pub async fn replay(&self, user: &str, after: u64) -> Result<(u64, Replay), HubError> {
        let (current, events) = self.read_log(user).await?;
        if after > current {
            return Ok((current, Replay::Gap));
        }
        if after == current {
            return Ok((current, Replay::Complete(Vec::new())));
        }
        let later: Vec<_> = events.into_iter().filter(|(s, _)| *s > after).collect();
        match later.first() {
            Some((first, _)) if *first == after + 1 => Ok((current, Replay::Complete(later))),
            _ => Ok((current, Replay::Gap)),
        }
    }

    async fn read_log(&self, user: &str) -> Result<(u64, Vec<(u64, Arc<str>)>), HubError> {
        match &self.inner.backend {
            Backend::Memory(logs) => {
                let logs = lock(logs);
                let Some(log) = logs.get(user) else {
                    return Ok((0, Vec::new()));
                };
                let fresh = log
                    .newest_at
                    .is_some_and(|t| t.elapsed() <= self.inner.replay_window);
                let events = if fresh {
                    log.events.iter().cloned().collect()
                } else {
                    Vec::new()
                };
                Ok((log.seq, events))
            }
            Backend::Redis { coord, .. } => {
                let mut conn = coord.connection();
                let (seq, entries): (String, Vec<String>) = timed(
                    redis::Script::new(READ_LOG)
                        .key(seq_key(coord, user))
                        .key(buffer_key(coord, user))
                        .invoke_async(&mut conn),
                )
                .await?;
                let seq = seq
                    .parse()
                    .map_err(|_| HubError::Corrupt(format!("sequence number {seq:?}")))?;
                let events = entries
                    .into_iter()
                    .map(|entry| {
                        let (n, json) = entry
                            .split_once(' ')
                            .ok_or_else(|| HubError::Corrupt("buffer entry".to_owned()))?;
                        let n = n
                            .parse()
                            .map_err(|_| HubError::Corrupt(format!("buffer number {n:?}")))?;
                        Ok((n, Arc::from(json)))
                    })
                    .collect::<Result<_, HubError>>()?;
                Ok((seq, events))
            }
        }
    }

    /// Hands a delivery to this replica's channels of `user`. A channel whose queue is full is
    /// dropped from the hub: it notices, closes with `too_slow`, and its client resumes.
    fn deliver_local(&self, user: &str, delivery: Delivery) {
        let mut local = self.local();
        let Some(channels) = local.users.get_mut(user) else {
            return;
        };
        channels.retain(|_, tx| tx.try_send(delivery.clone()).is_ok());
    }

    /// Tells every local channel to compare itself with the buffer.
    fn catch_up_all(&self) {
        let local = self.local();
        for channels in local.users.values() {
            for tx in channels.values() {
                let _ = tx.try_send(Delivery::CatchUp);
            }
        }
    }

    /// Users with open channels on this replica, and how many.
    pub fn local_presence(&self) -> Vec<(String, usize)> {
        let local = self.local();
        let mut users: Vec<_> = local
            .users
            .iter()
            .map(|(u, c)| (u.clone(), c.len()))
            .collect();
        users.sort();
        users
    }

    /// Users with open channels on any replica, and how many.
    pub async fn presence(&self) -> Result<Vec<(String, usize)>, HubError> {
        let Backend::Redis { coord, .. } = &self.inner.backend else {
            return Ok(self.local_presence());
        };
        let mut conn = coord.connection();
        let pattern = format!("{}presence:*", coord.prefix());
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = timed(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn),
            )
            .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut totals: HashMap<String, usize> = HashMap::new();
        for key in keys {
            let entries: HashMap<String, usize> = timed(conn.hgetall(&key)).await?;
            for (user, n) in entries {
                *totals.entry(user).or_default() += n;
            }
        }
        let mut users: Vec<_> = totals.into_iter().filter(|(_, n)| *n > 0).collect();
        users.sort();
        Ok(users)
    }

    /// Background work: with Redis, the subscriber that feeds local channels and the presence
    /// writer. Returns at shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let Backend::Redis { coord, replica } = &self.inner.backend else {
            // Memory: expire idle logs now and then.
            let mut tick =
                tokio::time::interval(self.inner.replay_window.max(Duration::from_secs(1)));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => self.expire_memory_logs(),
                }
            }
        };
        let subscriber = self.clone().subscribe_loop(coord.clone(), shutdown.clone());
        let presence = self
            .clone()
            .presence_loop(coord.clone(), replica.clone(), shutdown);
        tokio::join!(subscriber, presence);
    }

    fn expire_memory_logs(&self) {
        if let Backend::Memory(logs) = &self.inner.backend {
            let window = self.inner.replay_window;
            let mut logs = lock(logs);
            // Keep the counter (numbers must not restart) but free the buffers; drop users
            // idle for a day entirely.
            logs.retain(|_, log| {
                let idle = log.newest_at.map(|t| t.elapsed()).unwrap_or_default();
                if idle > window {
                    log.events.clear();
                }
                idle < Duration::from_millis(SEQ_TTL_MS)
            });
        }
    }

    async fn subscribe_loop(self, coord: Coord, shutdown: CancellationToken) {
        use futures_util::StreamExt as _;
        let channel = channel_name(&coord);
        let mut first = true;
        while !shutdown.is_cancelled() {
            let pubsub = match coord.pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => pubsub,
                    Err(e) => {
                        tracing::warn!(error = %e, "browser events: cannot subscribe to Redis; retrying");
                        sleep_or_cancel(RESUBSCRIBE_DELAY, &shutdown).await;
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "browser events: Redis unreachable; retrying");
                    sleep_or_cancel(RESUBSCRIBE_DELAY, &shutdown).await;
                    continue;
                }
            };
            if !first {
                tracing::info!("browser events: Redis subscription re-established");
                self.catch_up_all();
            }
            first = false;
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.next() => match message {
                        Some(message) => {
                            let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                            self.on_message(&payload);
                        }
                        None => {
                            tracing::warn!("browser events: Redis subscription lost; resubscribing");
                            break;
                        }
                    },
                }
            }
        }
    }

    /// `user \n seq \n json` (seq 0: a revocation whose body is the close code).
    fn on_message(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::warn!("browser events: non-UTF-8 message on the channel ignored");
            return;
        };
        let mut parts = text.splitn(3, '\n');
        let (Some(user), Some(seq), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            tracing::warn!("browser events: malformed message on the channel ignored");
            return;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            tracing::warn!("browser events: malformed sequence number ignored");
            return;
        };
        if seq == 0 {
            if let Some(close) = body.parse().ok().and_then(Close::from_code) {
                self.deliver_local(user, Delivery::Revoke(close));
            }
            return;
        }
        self.deliver_local(
            user,
            Delivery::Event {
                seq,
                json: Arc::from(body),
            },
        );
    }

    async fn presence_loop(self, coord: Coord, replica: String, shutdown: CancellationToken) {
        let key = format!("{}presence:{replica}", coord.prefix());
        loop {
            let users = self.local_presence();
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key);
            if !users.is_empty() {
                pipe.hset_multiple(&key, &users)
                    .pexpire(&key, PRESENCE_TTL.as_millis() as i64);
            }
            let mut conn = coord.connection();
            if let Err(e) = timed(pipe.query_async::<()>(&mut conn)).await {
                tracing::warn!(error = %e, "browser events: presence not written to Redis");
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Our users go offline with us.
                    let _ = timed(conn.del::<_, ()>(&key)).await;
                    return;
                }
                () = tokio::time::sleep(PRESENCE_REFRESH) => {}
                () = self.inner.presence_changed.notified() => {
                    // Coalesce bursts of opens/closes.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn seq_key(coord: &Coord, user: &str) -> String {
    format!("{}events:seq:{user}", coord.prefix())
}

fn buffer_key(coord: &Coord, user: &str) -> String {
    format!("{}events:log:{user}", coord.prefix())
}

fn channel_name(coord: &Coord) -> String {
    format!("{}events", coord.prefix())
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, HubError> {
    match tokio::time::timeout(Duration::from_secs(2), f).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(HubError::Timeout),
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventsConfig;

    fn config(replay_events: u32) -> EventsConfig {
        EventsConfig {
            replay_events,
            max_connections_per_user: 2,
            ..EventsConfig::default()
        }
    }

    fn users(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn numbers_per_user_and_delivers_to_every_channel() {
        let hub = Hub::memory(&config(8));
        let mut a1 = hub
            .register("a")
            .map_err(|_| "register")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut a2 = hub.register("a").unwrap_or_else(|e| panic!("{e}"));
        let mut b = hub.register("b").unwrap_or_else(|e| panic!("{e}"));
        assert!(hub.register("a").is_err(), "third channel of a refused");
        hub.publish(&users(&["a", "b"]), "{\"type\":\"x\"}")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        hub.publish(&users(&["a"]), "{\"type\":\"y\"}")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for rx in [&mut a1.rx, &mut a2.rx] {
            assert!(matches!(
                rx.recv().await,
                Some(Delivery::Event { seq: 1, .. })
            ));
            assert!(matches!(
                rx.recv().await,
                Some(Delivery::Event { seq: 2, .. })
            ));
        }
        assert!(matches!(
            b.rx.recv().await,
            Some(Delivery::Event { seq: 1, .. })
        ));
        assert_eq!(
            hub.local_presence(),
            vec![("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        drop(a2);
        assert_eq!(hub.local_presence()[0], ("a".to_owned(), 1));
    }

    #[tokio::test]
    async fn replays_what_is_kept_and_reports_gaps() {
        let hub = Hub::memory(&config(3));
        for i in 1..=5 {
            hub.publish(&users(&["a"]), &format!("{{\"n\":{i}}}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (current, replay) = hub.replay("a", 3).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(current, 5);
        let Replay::Complete(events) = replay else {
            panic!("expected events")
        };
        assert_eq!(
            events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(
            hub.replay("a", 5).await.ok(),
            Some((5, Replay::Complete(Vec::new())))
        );
        assert_eq!(
            hub.replay("a", 1).await.ok(),
            Some((5, Replay::Gap)),
            "2 was dropped"
        );
        assert_eq!(
            hub.replay("a", 9).await.ok(),
            Some((5, Replay::Gap)),
            "numbering restarted"
        );
        assert_eq!(
            hub.replay("nobody", 0).await.ok(),
            Some((0, Replay::Complete(Vec::new())))
        );
    }

    #[tokio::test]
    async fn revocation_reaches_the_users_channels() {
        let hub = Hub::memory(&config(3));
        let mut a = hub.register("a").unwrap_or_else(|e| panic!("{e}"));
        hub.revoke("a", Close::UserDisabled)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            a.rx.recv().await,
            Some(Delivery::Revoke(Close::UserDisabled))
        ));
    }

    #[test]
    fn malformed_channel_messages_are_ignored() {
        let hub = Hub::memory(&config(3));
        let mut a = hub.register("a").unwrap_or_else(|e| panic!("{e}"));
        for garbage in [&b"\xff\xfe"[..], b"", b"a", b"a\nx\n{}", b"a\n0\nnope"] {
            hub.on_message(garbage);
        }
        assert!(a.rx.try_recv().is_err());
        hub.on_message(b"a\n7\n{\"type\":\"t\"}");
        assert!(matches!(
            a.rx.try_recv(),
            Ok(Delivery::Event { seq: 7, .. })
        ));
    }
}
