//! The wire format of `GET /v1/events` (`docs/events.md`): frames from the browser, events to
//! it, close codes. Pure: no IO, no clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::live::{LeaveReason, Member};
use crate::store::EndReason;

/// Largest frame accepted from a browser.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Longest client-chosen `id` echoed back.
const MAX_ID_CHARS: usize = 64;

/// A frame from the browser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        token: String,
        #[serde(default)]
        resume: Option<Resume>,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
    Accept {
        conference: String,
    },
    Decline {
        conference: String,
    },
    Busy {
        conference: String,
    },
    Message {
        conference: String,
        text: String,
        #[serde(default)]
        id: Option<String>,
    },
}

/// `hello.resume`: the last sequence number the client processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub seq: u64,
}

/// Why a browser frame was refused (`error.code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum FrameError {
    #[error("{0}")]
    BadMessage(String),
    #[error("no pending invitation to this conference")]
    NotInvited,
    #[error("you are neither invited to nor in this conference")]
    NotInAudience,
    #[error("the text is longer than {0} characters")]
    MessageTooLong(u32),
    #[error("the text is empty")]
    MessageEmpty,
    #[error("too many messages; slow down")]
    RateLimited,
    #[error("the service could not answer; try again")]
    Unavailable,
}

impl FrameError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadMessage(_) => "bad_message",
            Self::NotInvited => "not_invited",
            Self::NotInAudience => "not_in_audience",
            Self::MessageTooLong(_) => "message_too_long",
            Self::MessageEmpty => "message_empty",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Parses one text frame. The error says what is wrong in words a developer can act on.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let frame: ClientFrame =
        serde_json::from_str(text).map_err(|e| FrameError::BadMessage(e.to_string()))?;
    let id = match &frame {
        ClientFrame::Ping { id } | ClientFrame::Message { id, .. } => id.as_deref(),
        _ => None,
    };
    if id.is_some_and(|id| id.chars().count() > MAX_ID_CHARS) {
        return Err(FrameError::BadMessage(format!(
            "id is longer than {MAX_ID_CHARS} characters"
        )));
    }
    Ok(frame)
}

/// The `id` of a frame that may carry one, read leniently so a refused frame still gets its id
/// echoed.
pub fn frame_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("id")?.as_str()?;
    (id.chars().count() <= MAX_ID_CHARS).then(|| id.to_owned())
}

/// Checks a chat text: not blank, at most `max_chars` Unicode scalar values, no control
/// characters but line breaks and tabs.
pub fn check_text(text: &str, max_chars: u32) -> Result<(), FrameError> {
    if text.trim().is_empty() {
        return Err(FrameError::MessageEmpty);
    }
    if text.chars().count() > max_chars as usize {
        return Err(FrameError::MessageTooLong(max_chars));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(FrameError::BadMessage(
            "text contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Why an invitation stopped ringing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Withdrawn through the API.
    Cancelled,
    /// One of the user's tabs answered.
    Answered,
    Declined,
    Busy,
}

/// A member as browsers see it (the REST API's member fields, without the channel UUID).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub member_id: u32,
    pub user_id: Option<String>,
    pub caller_id_name: String,
    pub node: String,
    pub joined_at: DateTime<Utc>,
    pub last_talking_at: Option<DateTime<Utc>>,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub video: bool,
    pub floor: bool,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            member_id: m.member_id,
            user_id: m.user_id.clone(),
            caller_id_name: m.caller_id_name.clone(),
            node: m.node.clone(),
            joined_at: m.joined_at,
            last_talking_at: m.last_talking_at,
            talking: m.talking,
            muted: m.muted,
            deaf: m.deaf,
            video: m.video,
            floor: m.floor,
        }
    }
}

/// An event for browsers, before it gets its per-user `seq`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrowserEvent {
    /// The SIP credentials are added per channel when the event is sent
    /// ([`with_sip`]).
    Invited {
        conference: String,
        caller_id: String,
        message: String,
        profile: String,
        node: String,
        wss_url: String,
        dial_uri: String,
    },
    InvitationCancelled {
        conference: String,
        reason: CancelReason,
    },
    MemberJoined {
        conference: String,
        member: MemberView,
    },
    MemberUpdated {
        conference: String,
        member: MemberView,
    },
    MemberLeft {
        conference: String,
        member: MemberView,
        reason: LeaveReason,
    },
    Talking {
        conference: String,
        member_id: u32,
        user_id: Option<String>,
        talking: bool,
    },
    Declined {
        conference: String,
        user_id: String,
    },
    Busy {
        conference: String,
        user_id: String,
    },
    Ended {
        conference: String,
        reason: EndReason,
    },
    Message {
        conference: String,
        from: String,
        text: String,
        id: Option<String>,
        message_id: String,
    },
}

#[derive(Serialize)]
struct Stamped<'a> {
    #[serde(flatten)]
    event: &'a BrowserEvent,
    at: DateTime<Utc>,
}

impl BrowserEvent {
    /// The JSON object sent (without `seq`, which [`with_seq`] puts in front).
    pub fn to_json(&self, at: DateTime<Utc>) -> String {
        // Serializing plain data into a String cannot fail.
        serde_json::to_string(&Stamped { event: self, at }).unwrap_or_default()
    }
}

/// `{"seq":N,` + the rest of `json` (an object).
pub fn with_seq(seq: u64, json: &str) -> String {
    let body = json.strip_prefix('{').unwrap_or(json);
    if body.trim_start().starts_with('}') {
        format!("{{\"seq\":{seq}}}")
    } else {
        format!("{{\"seq\":{seq},{body}")
    }
}

/// Whether `json` (as made by [`BrowserEvent::to_json`]) is an `invited` event.
pub fn is_invited(json: &str) -> bool {
    json.starts_with("{\"type\":\"invited\"")
}

/// SIP credentials of one channel, sent inside `invited`.
#[derive(Debug, Clone, Serialize)]
pub struct SipCredentials {
    pub username: String,
    pub password: String,
    pub domain: String,
    pub expires_at: DateTime<Utc>,
}

/// `json` (an object) with `"sip": credentials` added at the end.
pub fn with_sip(json: &str, sip: &SipCredentials) -> String {
    let sip = serde_json::to_string(sip).unwrap_or_default();
    match json.strip_suffix('}') {
        Some(head) => format!("{head},\"sip\":{sip}}}"),
        None => json.to_owned(),
    }
}

/// `welcome`, the answer to `hello`.
#[derive(Debug, Clone, Serialize)]
pub struct Welcome<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub user_id: &'a str,
    pub session: &'a str,
    pub seq: u64,
    pub resumed: bool,
    pub heartbeat_secs: u64,
    pub max_message_chars: u32,
}

/// `{"type":"pong","id":…}`.
pub fn pong(id: Option<&str>) -> String {
    serde_json::json!({"type": "pong", "id": id}).to_string()
}

/// `{"type":"error","code":…,"detail":…,"id":…}`.
pub fn error_frame(error: &FrameError, id: Option<&str>) -> String {
    serde_json::json!({
        "type": "error",
        "code": error.code(),
        "detail": error.to_string(),
        "id": id,
    })
    .to_string()
}

/// Close codes (`docs/events.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    GoingAway,
    TooBig,
    InternalError,
    BadHello,
    TokenInvalid,
    TokenExpired,
    UserDisabled,
    HeartbeatTimeout,
    TooManyConnections,
    TooSlow,
    RateLimited,
}

impl Close {
    pub fn code(self) -> u16 {
        match self {
            Self::GoingAway => 1001,
            Self::TooBig => 1009,
            Self::InternalError => 1011,
            Self::BadHello => 4000,
            Self::TokenInvalid => 4001,
            Self::TokenExpired => 4002,
            Self::UserDisabled => 4003,
            Self::HeartbeatTimeout => 4008,
            Self::TooManyConnections => 4009,
            Self::TooSlow => 4010,
            Self::RateLimited => 4029,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::GoingAway => "going_away",
            Self::TooBig => "too_big",
            Self::InternalError => "internal_error",
            Self::BadHello => "bad_hello",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::UserDisabled => "user_disabled",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::TooManyConnections => "too_many_connections",
            Self::TooSlow => "too_slow",
            Self::RateLimited => "rate_limited",
        }
    }

    /// The close code carried by a revocation broadcast.
    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::GoingAway,
            Self::TooBig,
            Self::InternalError,
            Self::BadHello,
            Self::TokenInvalid,
            Self::TokenExpired,
            Self::UserDisabled,
            Self::HeartbeatTimeout,
            Self::TooManyConnections,
            Self::TooSlow,
            Self::RateLimited,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// A token bucket: `rate` frames per second, bursts of `burst`. Time is an input.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<std::time::Instant>,
}

impl RateLimit {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            parse_client_frame(r#"{"type":"hello","token":"t","resume":{"seq":4}}"#),
            Ok(ClientFrame::Hello {
                token: "t".into(),
                resume: Some(Resume { seq: 4 })
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { id: None })
        );
        assert_eq!(
            parse_client_frame(
                r#"{"type":"message","conference":"c","text":"Привет 👋","id":"7"}"#
            ),
            Ok(ClientFrame::Message {
                conference: "c".into(),
                text: "Привет 👋".into(),
                id: Some("7".into())
            })
        );
        assert!(matches!(
            parse_client_frame(r#"{"type":"decline","conference":"c"}"#),
            Ok(ClientFrame::Decline { .. })
        ));
    }

    #[test]
    fn garbage_is_a_bad_message() {
        for garbage in [
            "",
            "null",
            "[]",
            "{}",
            "{\"type\":\"nope\"}",
            "{\"type\":\"decline\"}",
            "{\"type\":\"ping\",\"extra\":1}",
            "{\"type\":\"hello\",\"token\":5}",
            "\u{0}\u{1}",
            "{\"type\":\"message\",\"conference\":\"c\",\"text\":\"x\",\"id\":\"",
        ] {
            assert!(
                matches!(parse_client_frame(garbage), Err(FrameError::BadMessage(_))),
                "{garbage:?}"
            );
        }
        let long_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65));
        assert!(parse_client_frame(&long_id).is_err());
        assert_eq!(frame_id(&long_id), None);
        assert_eq!(
            frame_id(r#"{"type":"nope","id":"a"}"#),
            Some("a".to_owned())
        );
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert_eq!(check_text("😀😀", 2), Ok(()));
        assert_eq!(check_text("😀😀😀", 2), Err(FrameError::MessageTooLong(2)));
        assert_eq!(check_text(" \n ", 10), Err(FrameError::MessageEmpty));
        assert!(check_text("a\u{7}b", 10).is_err());
        assert_eq!(check_text("строка\nдве", 10), Ok(()));
    }

    #[test]
    fn seq_and_sip_are_spliced_into_the_event() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let json = BrowserEvent::Invited {
            conference: "c".into(),
            caller_id: "alice".into(),
            message: "hi \"there\"".into(),
            profile: "video".into(),
            node: "fs1".into(),
            wss_url: "wss://fs1:7443".into(),
            dial_uri: "sip:conf*c@example.com".into(),
        }
        .to_json(at);
        assert!(is_invited(&json));
        let sip = SipCredentials {
            username: "syabc".into(),
            password: "pw".into(),
            domain: "example.com".into(),
            expires_at: at,
        };
        let framed = with_seq(7, &with_sip(&json, &sip));
        let value: serde_json::Value = serde_json::from_str(&framed).unwrap_or_default();
        assert_eq!(value["seq"], 7);
        assert_eq!(value["type"], "invited");
        assert_eq!(value["message"], "hi \"there\"");
        assert_eq!(value["sip"]["username"], "syabc");
        assert_eq!(value["at"], "2026-12-06T10:00:00Z");
        assert_eq!(with_seq(3, "{}"), "{\"seq\":3}");
    }

    #[test]
    fn close_codes_round_trip() {
        for close in [Close::TokenInvalid, Close::TokenExpired, Close::GoingAway] {
            assert_eq!(Close::from_code(close.code()), Some(close));
        }
        assert_eq!(Close::TokenExpired.code(), 4002);
        assert_eq!(Close::from_code(1234), None);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(5.0, 2.0);
        assert!(limit.allow(t0));
        assert!(limit.allow(t0));
        assert!(!limit.allow(t0));
        assert!(limit.allow(t0 + Duration::from_millis(250)));
        assert!(!limit.allow(t0 + Duration::from_millis(260)));
    }
}
