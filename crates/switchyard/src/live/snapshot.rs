//! Parsers for what reconciliation reads from a node: `conference json_list` (the live
//! conferences and members) and `status` (the uptime, which tells a restart from a reconnect).
//! Shapes as captured from FreeSWITCH 1.11 (`esl-api-conference-3000-json_list.txt`,
//! `esl-api-status.txt`).

use std::time::Duration;

use serde::Deserialize;

/// One conference of `json_list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConferenceSnapshot {
    pub name: String,
    pub uuid: Option<String>,
    /// Callers only; recording nodes are left out.
    pub members: Vec<MemberSnapshot>,
}

/// One caller of a conference in `json_list`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSnapshot {
    pub id: u32,
    pub uuid: Option<String>,
    pub caller_id_name: Option<String>,
    pub caller_id_number: Option<String>,
    /// Seconds since joining.
    pub join_time: u32,
    /// Seconds since last talking; 0 = never.
    pub last_talking: u32,
    pub talking: bool,
    pub can_speak: bool,
    pub can_hear: bool,
    pub has_video: bool,
    pub has_floor: bool,
}

/// Why a node's answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the node answered {0:?}")]
    Refused(String),
    #[error("unreadable conference json_list: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no uptime in the status answer")]
    NoUptime,
}

#[derive(Deserialize)]
struct RawConference {
    conference_name: String,
    #[serde(default)]
    conference_uuid: Option<String>,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    caller_id_name: Option<String>,
    #[serde(default)]
    caller_id_number: Option<String>,
    #[serde(default)]
    join_time: u32,
    #[serde(default)]
    last_talking: u32,
    #[serde(default)]
    flags: RawFlags,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFlags {
    can_hear: bool,
    can_speak: bool,
    talking: bool,
    has_video: bool,
    has_floor: bool,
}

/// Parses the body of `api conference json_list`. FreeSWITCH answers `-ERR …` text on errors
/// and, in some versions, `+OK No active conferences.` instead of `[]` when there are none.
pub fn parse_json_list(body: &str) -> Result<Vec<ConferenceSnapshot>, SnapshotError> {
    let trimmed = body.trim();
    if trimmed.starts_with("+OK No active conferences") || trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.starts_with("-ERR") {
        return Err(SnapshotError::Refused(trimmed.chars().take(200).collect()));
    }
    let raw: Vec<RawConference> = serde_json::from_str(trimmed)?;
    Ok(raw
        .into_iter()
        .map(|c| ConferenceSnapshot {
            name: c.conference_name,
            uuid: c.conference_uuid,
            members: c
                .members
                .into_iter()
                .filter(|m| m.kind == "caller")
                .filter_map(|m| {
                    Some(MemberSnapshot {
                        id: m.id?,
                        uuid: m.uuid,
                        caller_id_name: m.caller_id_name,
                        caller_id_number: m.caller_id_number,
                        join_time: m.join_time,
                        last_talking: m.last_talking,
                        talking: m.flags.talking,
                        can_speak: m.flags.can_speak,
                        can_hear: m.flags.can_hear,
                        has_video: m.flags.has_video,
                        has_floor: m.flags.has_floor,
                    })
                })
                .collect(),
        })
        .collect())
}

/// The uptime in the first line of `api status`:
/// `UP 0 years, 0 days, 0 hours, 0 minutes, 17 seconds, 471 milliseconds, 843 microseconds`.
pub fn parse_status_uptime(body: &str) -> Result<Duration, SnapshotError> {
    let line = body.lines().next().unwrap_or_default();
    let rest = line.strip_prefix("UP ").ok_or(SnapshotError::NoUptime)?;
    let mut total = Duration::ZERO;
    let mut seen = 0;
    for part in rest.split(',') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(unit)) = (words.next(), words.next()) else {
            return Err(SnapshotError::NoUptime);
        };
        let n: u64 = n.parse().map_err(|_| SnapshotError::NoUptime)?;
        let unit_len = match unit.trim_end_matches('s') {
            "year" => Duration::from_secs(365 * 86_400),
            "day" => Duration::from_secs(86_400),
            "hour" => Duration::from_secs(3600),
            "minute" => Duration::from_secs(60),
            "second" => Duration::from_secs(1),
            "millisecond" => Duration::from_millis(1),
            "microsecond" => Duration::from_micros(1),
            _ => return Err(SnapshotError::NoUptime),
        };
        total = total.saturating_add(unit_len.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)));
        seen += 1;
    }
    if seen == 0 {
        return Err(SnapshotError::NoUptime);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The body of a captured `api/response` (after the blank line).
    fn capture_body(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/freeswitch/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        text.split_once("\n\n").unwrap().1.to_owned()
    }

    #[test]
    fn reads_the_captured_json_list() {
        let confs =
            parse_json_list(&capture_body("esl-api-conference-3000-json_list.txt")).unwrap();
        assert_eq!(confs.len(), 1);
        let c = &confs[0];
        assert_eq!(c.name, "3000");
        assert_eq!(
            c.uuid.as_deref(),
            Some("41b59d28-881a-4d59-9eef-786dfe1e5505")
        );
        let ids: Vec<u32> = c.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, [2, 1]);
        let m1 = &c.members[1];
        assert_eq!(m1.caller_id_number.as_deref(), Some("1001"));
        assert_eq!(m1.join_time, 5);
        assert!(m1.has_floor && m1.talking && m1.can_speak && !m1.has_video);
    }

    #[test]
    fn reads_the_captured_json_list_with_a_loopback_member() {
        let confs = parse_json_list(&capture_body(
            "esl-api-conference-3000-json_list-with-loopback.txt",
        ))
        .unwrap();
        assert_eq!(confs[0].members.len(), 4);
    }

    #[test]
    fn no_conferences_in_either_spelling() {
        assert!(parse_json_list("[]").unwrap().is_empty());
        assert!(
            parse_json_list("+OK No active conferences.\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_node() {
        assert!(matches!(
            parse_json_list("-ERR Conference command 'json_list' not found.\n"),
            Err(SnapshotError::Refused(_))
        ));
        assert!(parse_json_list("[{\"members\": 3}]").is_err());
        assert!(parse_json_list("{").is_err());
        assert!(parse_json_list("\u{0}\u{1}binary").is_err());
    }

    #[test]
    fn reads_the_captured_uptime() {
        let uptime = parse_status_uptime(&capture_body("esl-api-status.txt")).unwrap();
        assert_eq!(uptime, Duration::from_micros(17_471_843));
        let long =
            "UP 1 year, 2 days, 3 hours, 4 minutes, 5 seconds, 6 milliseconds, 7 microseconds\n";
        assert_eq!(
            parse_status_uptime(long).unwrap(),
            Duration::from_secs(365 * 86_400 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5)
                + Duration::from_micros(6_007)
        );
        for bad in [
            "",
            "-ERR",
            "UP",
            "UP x seconds",
            "UP 3 fortnights",
            "DOWN 1 second",
        ] {
            assert!(parse_status_uptime(bad).is_err(), "{bad:?}");
        }
    }
}
