//! SIP credentials and the directory's view of them (see [`crate::credentials`] for the scheme).
//!
//! Each query is written once per dialect; keep the two texts identical otherwise. Expiry is
//! compared in Rust, not SQL: SQLite stores timestamps as text.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// A credential to store. `expires_at: None` is a long-lived credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSipCredential {
    pub username: String,
    pub user_id: String,
    pub realm: String,
    pub a1_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a directory lookup needs: the credential joined with its user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DirectoryEntry {
    pub username: String,
    pub realm: String,
    pub a1_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub user_id: String,
    pub display_name: String,
    pub enabled: bool,
}

impl DirectoryEntry {
    /// Whether the credential may authenticate at `at`: the user is enabled and it has not
    /// expired.
    pub fn usable_at(&self, at: DateTime<Utc>) -> bool {
        self.enabled && self.expires_at.is_none_or(|exp| at < exp)
    }
}

impl Store {
    /// Stores a credential. Fails (foreign key) when the user does not exist.
    pub async fn insert_sip_credential(&self, c: &NewSipCredential) -> Result<(), StoreError> {
        const SQLITE: &str = "INSERT INTO sip_credentials \
             (username, user_id, realm, a1_hash, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        const POSTGRES: &str = "INSERT INTO sip_credentials \
             (username, user_id, realm, a1_hash, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let now = now();
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(SQLITE)
                    .bind(&c.username)
                    .bind(&c.user_id)
                    .bind(&c.realm)
                    .bind(&c.a1_hash)
                    .bind(c.expires_at)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                sqlx::query(POSTGRES)
                    .bind(&c.username)
                    .bind(&c.user_id)
                    .bind(&c.realm)
                    .bind(&c.a1_hash)
                    .bind(c.expires_at)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates or replaces a user's long-lived credential (`expires_at` must be `None`; its
    /// username is the user id). `false` when the username belongs to another user's
    /// credential, which is left alone.
    pub async fn put_long_lived_sip_credential(
        &self,
        c: &NewSipCredential,
    ) -> Result<bool, StoreError> {
        const SQLITE: &str = "INSERT INTO sip_credentials \
             (username, user_id, realm, a1_hash, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, NULL, ?5) \
             ON CONFLICT (username) DO UPDATE SET realm = excluded.realm, \
             a1_hash = excluded.a1_hash, expires_at = NULL, created_at = excluded.created_at \
             WHERE sip_credentials.user_id = excluded.user_id";
        const POSTGRES: &str = "INSERT INTO sip_credentials \
             (username, user_id, realm, a1_hash, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5) \
             ON CONFLICT (username) DO UPDATE SET realm = excluded.realm, \
             a1_hash = excluded.a1_hash, expires_at = NULL, created_at = excluded.created_at \
             WHERE sip_credentials.user_id = excluded.user_id";
        let now = now();
        let affected = match self {
            Self::Sqlite(pool) => sqlx::query(SQLITE)
                .bind(&c.username)
                .bind(&c.user_id)
                .bind(&c.realm)
                .bind(&c.a1_hash)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
            Self::Postgres(pool) => sqlx::query(POSTGRES)
                .bind(&c.username)
                .bind(&c.user_id)
                .bind(&c.realm)
                .bind(&c.a1_hash)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(affected > 0)
    }

    /// Deletes the user's long-lived credentials; `false` if there were none.
    pub async fn delete_long_lived_sip_credentials(
        &self,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        const SQLITE: &str =
            "DELETE FROM sip_credentials WHERE user_id = ?1 AND expires_at IS NULL";
        const POSTGRES: &str =
            "DELETE FROM sip_credentials WHERE user_id = $1 AND expires_at IS NULL";
        Ok(self.execute_one(SQLITE, POSTGRES, user_id).await? > 0)
    }

    /// The credential with this SIP username and its user, whatever their state (the caller
    /// decides with [`DirectoryEntry::usable_at`]).
    pub async fn directory_entry(
        &self,
        username: &str,
    ) -> Result<Option<DirectoryEntry>, StoreError> {
        const SQLITE: &str = "SELECT c.username, c.realm, c.a1_hash, c.expires_at, \
             u.id AS user_id, u.display_name, u.enabled \
             FROM sip_credentials c JOIN users u ON u.id = c.user_id WHERE c.username = ?1";
        const POSTGRES: &str = "SELECT c.username, c.realm, c.a1_hash, c.expires_at, \
             u.id AS user_id, u.display_name, u.enabled \
             FROM sip_credentials c JOIN users u ON u.id = c.user_id WHERE c.username = $1";
        let entry = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(SQLITE)
                    .bind(username)
                    .fetch_optional(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_as(POSTGRES)
                    .bind(username)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(entry)
    }

    /// Deletes every user's credentials that expired before `before`; returns how many.
    /// (SQLite keeps timestamps as text; `julianday` reads that text as a time.)
    pub async fn purge_expired_sip_credentials(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        const SQLITE: &str = "DELETE FROM sip_credentials WHERE expires_at IS NOT NULL \
             AND julianday(expires_at) <= julianday(?1)";
        const POSTGRES: &str = "DELETE FROM sip_credentials WHERE expires_at IS NOT NULL \
             AND expires_at <= $1";
        self.execute_one(SQLITE, POSTGRES, before).await
    }

    /// Deletes the user's credentials that expired before `before`; returns how many.
    pub async fn delete_expired_sip_credentials(
        &self,
        user_id: &str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Expiry is compared in Rust (SQLite keeps text), so select the candidates first.
        const SQLITE_SELECT: &str = "SELECT username, expires_at FROM sip_credentials WHERE user_id = ?1 \
             AND expires_at IS NOT NULL";
        const POSTGRES_DELETE: &str = "DELETE FROM sip_credentials WHERE user_id = $1 \
             AND expires_at IS NOT NULL AND expires_at <= $2";
        match self {
            Self::Sqlite(pool) => {
                let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(SQLITE_SELECT)
                    .bind(user_id)
                    .fetch_all(pool)
                    .await?;
                let mut deleted = 0;
                for (username, expires_at) in rows {
                    if expires_at <= before {
                        deleted += sqlx::query("DELETE FROM sip_credentials WHERE username = ?1")
                            .bind(username)
                            .execute(pool)
                            .await?
                            .rows_affected();
                    }
                }
                Ok(deleted)
            }
            Self::Postgres(pool) => Ok(sqlx::query(POSTGRES_DELETE)
                .bind(user_id)
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()),
        }
    }
}
