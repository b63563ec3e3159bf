//! The directory cache: SIP username → what the store said, so a REGISTER storm after a node
//! restart does not become a query storm.
//!
//! Correctness rules:
//! - Entries are the store's facts (enabled flag, expiry, hash), never a verdict: expiry is
//!   checked on every request, so an entry cannot outlive its credential. The rendered user
//!   document kept next to them is only sent after those checks passed.
//! - Every write that can change an answer invalidates (user upsert/delete, credential
//!   insert/replace/delete) after it committed.
//! - A lookup that raced with an invalidation does not insert: a generation counter, bumped
//!   under the lock by every invalidation, must be unchanged between the read and the insert.
//! - Unknown usernames are cached too (unknown answers as fast as known ones); invalidating a
//!   user also drops the negative entry under its id (long-lived credentials use the id).
//! - Only one process can invalidate its own cache: with several replicas (PostgreSQL) another
//!   replica's write would go unnoticed, so the service enables it only on SQLite (see
//!   `freeswitch.directory_cache_entries`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use crate::store::DirectoryEntry;

/// What the store said about one username, with the document answering it when usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    pub entry: DirectoryEntry,
    /// The rendered user document for `entry` (with the `sip` settings, fixed while the service
    /// runs); send it only when `entry` is usable now.
    pub document: Bytes,
}

/// A cache value: `None` when the store has no such credential. Shared, never copied.
pub type Cached = Option<Arc<CachedEntry>>;

/// A bounded username → entry map; when full it starts over (cheap, and correct).
#[derive(Debug)]
pub struct DirectoryCache {
    capacity: usize,
    generation: AtomicU64,
    map: Mutex<HashMap<String, Cached>>,
}

/// Taken before the store read; [`DirectoryCache::insert`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl DirectoryCache {
    /// `capacity` 0 disables the cache (every lookup misses, nothing is kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            generation: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding the lock cannot leave the map inconsistent (single calls).
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(entry or None)` on a hit.
    pub fn get(&self, username: &str) -> Option<Cached> {
        if !self.enabled() {
            return None;
        }
        self.map().get(username).cloned()
    }

    /// Call before reading the store.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps what the store said, unless an invalidation happened since `ticket`.
    pub fn insert(&self, ticket: Ticket, username: &str, entry: Cached) {
        if !self.enabled() {
            return;
        }
        let mut map = self.map();
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(username.to_owned(), entry);
    }

    /// After any write concerning `user_id`: drops its credentials and the entry under its id.
    pub fn invalidate_user(&self, user_id: &str) {
        let lowered = user_id.to_ascii_lowercase();
        let mut map = self.map();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.retain(|username, entry| {
            *username != lowered && entry.as_ref().is_none_or(|e| e.entry.user_id != user_id)
        });
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};

    use super::{Cached, CachedEntry, DirectoryCache};
    use crate::store::DirectoryEntry;

    fn entry(username: &str, user_id: &str) -> Cached {
        let entry = DirectoryEntry {
            username: username.to_owned(),
            realm: "127.0.0.1".to_owned(),
            a1_hash: "00".repeat(16),
            expires_at: Some(DateTime::<Utc>::UNIX_EPOCH),
            user_id: user_id.to_owned(),
            display_name: String::new(),
            enabled: true,
        };
        let document = format!("<document {username}/>").into();
        Some(Arc::new(CachedEntry { entry, document }))
    }

    #[test]
    fn hits_and_invalidation() {
        let cache = DirectoryCache::new(10);
        assert_eq!(cache.get("sya"), None);
        let t = cache.ticket();
        cache.insert(t, "sya", entry("sya", "alice"));
        cache.insert(t, "syb", entry("syb", "bob"));
        cache.insert(t, "alice", None);
        assert_eq!(cache.get("sya"), Some(entry("sya", "alice")));
        assert_eq!(cache.get("alice"), Some(None), "negative entry");
        cache.invalidate_user("Alice");
        assert_eq!(
            cache.get("alice"),
            None,
            "negative entry under the id dropped"
        );
        assert_eq!(cache.get("syb"), Some(entry("syb", "bob")));
        cache.invalidate_user("alice");
        assert_eq!(cache.get("sya"), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_read_that_raced_with_a_write_is_not_kept() {
        let cache = DirectoryCache::new(10);
        let before_write = cache.ticket();
        cache.invalidate_user("alice");
        cache.insert(before_write, "sya", entry("sya", "alice"));
        assert_eq!(cache.get("sya"), None);
    }

    #[test]
    fn bounded_and_disableable() {
        let cache = DirectoryCache::new(2);
        let t = cache.ticket();
        for name in ["a", "b", "c"] {
            cache.insert(t, name, None);
        }
        assert!(cache.len() <= 2);
        let off = DirectoryCache::new(0);
        off.insert(off.ticket(), "a", None);
        assert_eq!(off.get("a"), None);
        assert!(off.is_empty());
    }
}
