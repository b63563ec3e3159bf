//! Who may join which conference, as the dialplan asks it.
//!
//! Today this reads the `invitations` table only: an invitation for (conference, user) admits
//! the user with the invitation's profile. Locked and full conferences, open (invitation-less)
//! conferences and participant limits come with the conference issue, which fills in
//! [`Store::conference_admission`] without changing its signature.

use super::{Store, StoreError};

/// The dialplan's verdict for one caller and conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Join `conference <name>@<profile>`.
    Join { profile: String },
    /// The conference has reached its participant limit (SIP 486).
    Full,
    /// The conference is locked, or the caller has no invitation to it (SIP 403).
    Forbidden,
    /// No such conference (SIP 404).
    Unknown,
}

impl Store {
    /// May `user_id` join conference `name`?
    pub async fn conference_admission(
        &self,
        name: &str,
        user_id: &str,
    ) -> Result<Admission, StoreError> {
        const SQLITE: &str = "SELECT profile FROM invitations WHERE name = ?1 AND user_id = ?2";
        const POSTGRES: &str = "SELECT profile FROM invitations WHERE name = $1 AND user_id = $2";
        let profile: Option<(String,)> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(SQLITE)
                    .bind(name)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_as(POSTGRES)
                    .bind(name)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(match profile {
            Some((profile,)) => Admission::Join { profile },
            None => Admission::Unknown,
        })
    }
}
