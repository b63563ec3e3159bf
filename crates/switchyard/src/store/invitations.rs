//! Invitations: CppComet's `conference` table, one row per invited user of a conference name.
//! They live as long as the conference: ending it (API, idle timeout, node loss) deletes them.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, now};

/// A stored invitation.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    sqlx::FromRow,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct Invitation {
    pub name: String,
    pub user_id: String,
    pub caller_id: String,
    pub message: String,
    pub profile: String,
    pub created_at: DateTime<Utc>,
}

/// The writable fields of an invitation.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub name: String,
    pub user_id: String,
    pub caller_id: String,
    pub message: String,
    pub profile: String,
}

const COLUMNS: &str = "name, user_id, caller_id, message, profile, created_at";

impl Store {
    /// Stores the invitation unless the user is invited already; returns the stored row and
    /// whether this call created it (re-inviting is idempotent: the first row stays).
    pub async fn invite(&self, new: &NewInvitation) -> Result<(Invitation, bool), StoreError> {
        let insert = format!(
            "INSERT INTO invitations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name, user_id) DO NOTHING"
        );
        let now = now();
        let inserted = with_pool!(self, pool => sqlx::query(&insert)
                .bind(&new.name)
                .bind(&new.user_id)
                .bind(&new.caller_id)
                .bind(&new.message)
                .bind(&new.profile)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected());
        let row = self
            .invitation(&new.name, &new.user_id)
            .await?
            .ok_or(StoreError::Query(sqlx::Error::RowNotFound))?;
        Ok((row, inserted > 0))
    }

    pub async fn invitation(
        &self,
        name: &str,
        user_id: &str,
    ) -> Result<Option<Invitation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE name = $1 AND user_id = $2");
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(name)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The invitations of conference `name`, oldest first.
    pub async fn invitations(&self, name: &str) -> Result<Vec<Invitation>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM invitations WHERE name = $1 ORDER BY created_at, user_id"
        );
        Ok(with_pool!(self, pool => sqlx::query_as(&sql).bind(name).fetch_all(pool).await?))
    }

    /// Cancels one invitation. `false` when there was none.
    pub async fn uninvite(&self, name: &str, user_id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM invitations WHERE name = $1 AND user_id = $2";
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(name)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected > 0)
    }

    /// Deletes every invitation of conference `name` (it ended).
    pub async fn delete_invitations(&self, name: &str) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM invitations WHERE name = $1";
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected)
    }
}
