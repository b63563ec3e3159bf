//! Session tokens of the browser event channel (`docs/events.md`): only the SHA-256 digest of
//! a token is stored. Expiry is compared in Rust (SQLite keeps timestamps as text).

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// What a presented token resolves to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionTokenOwner {
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub enabled: bool,
}

impl Store {
    /// Stores the digest of a new token. Fails (foreign key) when the user does not exist.
    pub async fn insert_session_token(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO session_tokens (token_hash, user_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4)";
        let now = now();
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(token_hash)
                .bind(user_id)
                .bind(expires_at)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user a token digest belongs to (expired or not: the caller tells the two apart).
    pub async fn session_token_owner(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionTokenOwner>, StoreError> {
        const SQL: &str = "SELECT t.user_id, t.expires_at, u.enabled FROM session_tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1";
        let owner = with_pool!(self, pool => {
            sqlx::query_as(SQL).bind(token_hash).fetch_optional(pool).await?
        });
        Ok(owner)
    }

    /// Revokes every token of `user_id`; how many there were.
    pub async fn delete_session_tokens(&self, user_id: &str) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM session_tokens WHERE user_id = $1";
        let affected = with_pool!(self, pool => {
            sqlx::query(SQL).bind(user_id).execute(pool).await?.rows_affected()
        });
        Ok(affected)
    }

    /// Drops every user's tokens that expired before `at`; how many. (SQLite keeps timestamps
    /// as text; `julianday` reads that text as a time.)
    pub async fn purge_expired_session_tokens(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        const SQLITE: &str =
            "DELETE FROM session_tokens WHERE julianday(expires_at) < julianday(?1)";
        const POSTGRES: &str = "DELETE FROM session_tokens WHERE expires_at < $1";
        self.execute_one(SQLITE, POSTGRES, at).await
    }

    /// Drops the user's tokens that expired before `at` (kept a while so that an expired token
    /// is told apart from an unknown one: `token_expired` vs `token_invalid`). SQLite keeps
    /// timestamps as text, so there the candidates are compared in Rust, as
    /// `delete_expired_sip_credentials` does.
    pub async fn delete_expired_session_tokens(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(pool) => {
                let tokens: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT token_hash, expires_at FROM session_tokens WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_all(pool)
                .await?;
                let mut deleted = 0;
                for (hash, expires_at) in tokens {
                    if expires_at < at {
                        deleted += sqlx::query("DELETE FROM session_tokens WHERE token_hash = $1")
                            .bind(&hash)
                            .execute(pool)
                            .await?
                            .rows_affected();
                    }
                }
                Ok(deleted)
            }
            Self::Postgres(pool) => Ok(sqlx::query(
                "DELETE FROM session_tokens WHERE user_id = $1 AND expires_at < $2",
            )
            .bind(user_id)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()),
        }
    }
}
