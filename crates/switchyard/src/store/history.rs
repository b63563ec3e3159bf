//! History: every member's stay (`member_stays`) and the conference list (live and ended
//! placements of `conferences`), with filters and keyset pagination.
//!
//! Pages are ordered newest first by (time, id); the cursor is the last row's pair, so a page
//! never repeats or skips rows when new ones arrive meanwhile.

use chrono::{DateTime, Utc};

use super::conferences::{CONFERENCE_COLUMNS, ConferenceRow};
use super::{ConferenceRecord, Store, StoreError};

/// One member's stay in a conference.
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
pub struct MemberStay {
    pub id: String,
    /// The placement (`conferences.id`), when the conference was placed or adopted.
    pub conference_id: Option<String>,
    pub name: String,
    pub node_id: String,
    pub member_id: i32,
    pub user_id: Option<String>,
    pub caller_id_name: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// A stay that begins.
#[derive(Debug, Clone)]
pub struct NewStay<'a> {
    pub name: &'a str,
    pub node_id: &'a str,
    pub member_id: u32,
    pub user_id: Option<&'a str>,
    pub caller_id_name: &'a str,
    pub joined_at: DateTime<Utc>,
}

/// Which conferences to list.
#[derive(Debug, Clone, Default)]
pub struct ConferenceFilter {
    pub name: Option<String>,
    pub node_id: Option<String>,
    /// `Some(true)`: live only; `Some(false)`: ended only.
    pub live: Option<bool>,
}

/// Which stays to list.
#[derive(Debug, Clone, Default)]
pub struct StayFilter {
    pub name: Option<String>,
    pub user_id: Option<String>,
}

/// Where a page starts: after the row with this time and id (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// `<microseconds since the epoch>.<id>`: opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at.timestamp_micros(), self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('.')?;
        let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| Cursor {
            at,
            id: id.to_owned(),
        })
    }
}

const STAY_COLUMNS: &str = "id, conference_id, name, node_id, member_id, user_id, \
                            caller_id_name, joined_at, left_at, reason";

/// A random stay id (`ms_` + 20 hex digits).
fn new_stay_id() -> String {
    use rand::Rng as _;
    let bits: u128 = rand::rng().random();
    format!("ms_{:020x}", bits >> 48)
}

impl Store {
    /// Records that a member joined (no-op if its stay is already open).
    pub async fn open_stay(&self, stay: &NewStay<'_>) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO member_stays \
             (id, conference_id, name, node_id, member_id, user_id, caller_id_name, joined_at) \
             VALUES ($1, (SELECT id FROM conferences WHERE name = $2 AND node_id = $3 \
             AND ended_at IS NULL), $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_id, name, member_id) WHERE left_at IS NULL DO NOTHING";
        let id = new_stay_id();
        let member_id = i32::try_from(stay.member_id).unwrap_or(i32::MAX);
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(&id)
                .bind(stay.name)
                .bind(stay.node_id)
                .bind(member_id)
                .bind(stay.user_id)
                .bind(stay.caller_id_name)
                .bind(stay.joined_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records that a member left, and why. `false` when no stay was open.
    pub async fn close_stay(
        &self,
        node_id: &str,
        name: &str,
        member_id: u32,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE member_stays SET left_at = $4, reason = $5 \
             WHERE node_id = $1 AND name = $2 AND member_id = $3 AND left_at IS NULL";
        let member_id = i32::try_from(member_id).unwrap_or(i32::MAX);
        let affected = with_pool!(self, pool => sqlx::query(SQL)
                .bind(node_id)
                .bind(name)
                .bind(member_id)
                .bind(at)
                .bind(reason)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(affected > 0)
    }

    /// Stays, newest first.
    pub async fn stays(
        &self,
        filter: &StayFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<MemberStay>, StoreError> {
        let mut sql = format!("SELECT {STAY_COLUMNS} FROM member_stays WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.name.is_some() {
            sql.push_str(&format!(" AND name = {}", next()));
        }
        if filter.user_id.is_some() {
            sql.push_str(&format!(" AND user_id = {}", next()));
        }
        if after.is_some() {
            let (at, id) = (next(), next());
            sql.push_str(&format!(
                " AND (joined_at < {at} OR (joined_at = {at} AND id < {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY joined_at DESC, id DESC LIMIT {}",
            next()
        ));
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query_as::<_, MemberStay>(&sql);
                if let Some(name) = &filter.name {
                    q = q.bind(name);
                }
                if let Some(user) = &filter.user_id {
                    q = q.bind(user);
                }
                if let Some(c) = after {
                    q = q.bind(c.at).bind(&c.id);
                }
                q.bind(i64::from(limit)).fetch_all($pool).await?
            }};
        }
        Ok(with_pool!(self, pool => run!(pool)))
    }

    /// Conferences (placements, live and ended), newest first.
    pub async fn conferences(
        &self,
        filter: &ConferenceFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        let mut sql = format!("SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.name.is_some() {
            sql.push_str(&format!(" AND name = {}", next()));
        }
        if filter.node_id.is_some() {
            sql.push_str(&format!(" AND node_id = {}", next()));
        }
        match filter.live {
            Some(true) => sql.push_str(" AND ended_at IS NULL"),
            Some(false) => sql.push_str(" AND ended_at IS NOT NULL"),
            None => {}
        }
        if after.is_some() {
            let (at, id) = (next(), next());
            sql.push_str(&format!(
                " AND (created_at < {at} OR (created_at = {at} AND id < {id}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            next()
        ));
        macro_rules! run {
            ($pool:expr) => {{
                let mut q = sqlx::query_as::<_, ConferenceRow>(&sql);
                if let Some(name) = &filter.name {
                    q = q.bind(name);
                }
                if let Some(node) = &filter.node_id {
                    q = q.bind(node);
                }
                if let Some(c) = after {
                    q = q.bind(c.at).bind(&c.id);
                }
                q.bind(i64::from(limit)).fetch_all($pool).await?
            }};
        }
        let rows = with_pool!(self, pool => run!(pool));
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            id: "cf_0123abcd".to_owned(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            ".",
            "x.cf_1",
            "1.",
            "1.a b",
            "1.a'--",
            "99999999999999999999.x",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }
}

/// What [`Store::purge_history`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedHistory {
    pub conferences: u64,
    pub stays: u64,
    pub recordings: u64,
}

impl Store {
    /// Deletes ended conferences, finished stays and stopped recordings (the rows, not the
    /// files on the nodes) that ended before `before`, and unfinished ones that started before
    /// it outside any live conference. Live rows are never touched. In
    /// batches, so that the first purge of a large SQLite database does not hold its single
    /// write lock for long.
    pub async fn purge_history(&self, before: DateTime<Utc>) -> Result<PurgedHistory, StoreError> {
        // (table, end column); SQLite keeps timestamps as text, `julianday` reads it as a time.
        const TABLES: [(&str, &str); 3] = [
            ("conferences", "ended_at"),
            ("member_stays", "left_at"),
            ("recordings", "stopped_at"),
        ];
        let mut deleted = [0u64; 3];
        for ((table, column), count) in TABLES.iter().zip(&mut deleted) {
            *count = self
                .delete_in_batches(
                    table,
                    &format!("{column} IS NOT NULL AND julianday({column}) < julianday(?1)"),
                    &format!("{column} IS NOT NULL AND {column} < $1"),
                    before,
                )
                .await?;
        }
        // Stays and recordings whose end was never stored (their node or replica died first)
        // go once they started before the cutoff and no live placement of theirs remains.
        const UNFINISHED: [(&str, &str, &str); 2] = [
            ("member_stays", "joined_at", "left_at"),
            ("recordings", "started_at", "stopped_at"),
        ];
        for ((table, start, end), count) in UNFINISHED.iter().zip(&mut deleted[1..]) {
            let not_live = format!(
                "NOT EXISTS (SELECT 1 FROM conferences c WHERE c.ended_at IS NULL \
                 AND c.name = {table}.name AND c.node_id = {table}.node_id)"
            );
            *count += self
                .delete_in_batches(
                    table,
                    &format!("{end} IS NULL AND julianday({start}) < julianday(?1) AND {not_live}"),
                    &format!("{end} IS NULL AND {start} < $1 AND {not_live}"),
                    before,
                )
                .await?;
        }
        let [conferences, stays, recordings] = deleted;
        Ok(PurgedHistory {
            conferences,
            stays,
            recordings,
        })
    }

    /// `DELETE FROM table WHERE <condition>` (the backend's, `before` bound to its one
    /// parameter) a thousand rows at a time; how many in all.
    async fn delete_in_batches(
        &self,
        table: &str,
        sqlite_condition: &str,
        postgres_condition: &str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        const BATCH: u64 = 1000;
        let batch_of = |condition: &str| {
            format!(
                "DELETE FROM {table} WHERE id IN \
                 (SELECT id FROM {table} WHERE {condition} LIMIT {BATCH})"
            )
        };
        let (sqlite, postgres) = (batch_of(sqlite_condition), batch_of(postgres_condition));
        let mut total = 0;
        loop {
            let deleted = self.execute_one(&sqlite, &postgres, before).await?;
            total += deleted;
            if deleted < BATCH {
                return Ok(total);
            }
        }
    }
}
