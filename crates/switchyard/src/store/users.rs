//! Users: who may register with FreeSWITCH and be invited to conferences.
//!
//! Each query is written once per dialect (`?N` placeholders for SQLite, `$N` for PostgreSQL);
//! keep the two texts identical otherwise.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub display_name: String,
    /// Disabled users are unknown to the directory and cannot be invited.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The writable fields of a [`User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertUser {
    pub id: String,
    pub display_name: String,
    pub enabled: bool,
}

impl Store {
    /// Inserts the user, or updates name and flag of an existing one (keeping `created_at`).
    pub async fn upsert_user(&self, user: &UpsertUser) -> Result<User, StoreError> {
        const SQLITE: &str = "INSERT INTO users (id, display_name, enabled, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, \
             enabled = excluded.enabled, updated_at = excluded.updated_at \
             RETURNING id, display_name, enabled, created_at, updated_at";
        const POSTGRES: &str = "INSERT INTO users (id, display_name, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, \
             enabled = excluded.enabled, updated_at = excluded.updated_at \
             RETURNING id, display_name, enabled, created_at, updated_at";
        let now = now();
        let row = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(SQLITE)
                    .bind(&user.id)
                    .bind(&user.display_name)
                    .bind(user.enabled)
                    .bind(now)
                    .fetch_one(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_as(POSTGRES)
                    .bind(&user.id)
                    .bind(&user.display_name)
                    .bind(user.enabled)
                    .bind(now)
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(row)
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let user = match self {
            Self::Sqlite(pool) => sqlx::query_as(
                "SELECT id, display_name, enabled, created_at, updated_at FROM users WHERE id = ?1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
            Self::Postgres(pool) => sqlx::query_as(
                "SELECT id, display_name, enabled, created_at, updated_at FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?,
        };
        Ok(user)
    }

    /// Deletes the user (and, by cascade, their invitations). `false` if there was none.
    pub async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute_one(
                "DELETE FROM users WHERE id = ?1",
                "DELETE FROM users WHERE id = $1",
                id,
            )
            .await?;
        Ok(deleted > 0)
    }
}
