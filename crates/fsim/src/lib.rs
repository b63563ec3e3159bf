//! `fsim`: a FreeSWITCH simulator, faithful to byte-exact captures of a real FreeSWITCH.
//!
//! # Why
//!
//! Switchyard orchestrates FreeSWITCH conference nodes over the event socket (ESL) and serves
//! their directory over HTTP (mod_xml_curl). FreeSWITCH cannot run in our test and benchmark
//! environments, so fsim plays the nodes: one process can run a hundred of them, each with its
//! own ESL port, Core-UUID, conferences and channels. What fsim sends is checked against the
//! captures of a real FreeSWITCH 1.11.3-dev in `tests/fixtures/freeswitch/` (see
//! `tests/conformance.rs`); where the protocol notes and a capture disagree, the capture wins.
//!
//! # Layout
//!
//! - [`node`]: [`SimNode`] / [`NodeConfig`]: start, control (register, call, talk, hang up) and
//!   fault injection (freeze, restart, dropped connections, slow directory); HEARTBEAT.
//! - `esl_server`: the inbound event socket, one task per connection.
//! - `api`: the api commands (`status`, `show`, `conference`, `originate`, ...).
//! - `conference` / `channel`: mod_conference and the channel model, and the events they fire.
//! - `bus`: subscriptions, filters and the per-listener bounded queues.
//! - `events`: the event prelude every FreeSWITCH event starts with.
//! - [`directory`]: the mod_xml_curl client and SIP digest verification (simulated UAs, and
//!   [`directory::DirectoryClient::authenticate`] for digests that came from the wire).
//! - [`dialplan`]: the mod_xml_curl `dialplan` lookup (form and answer).
//! - [`sip`]: SIP over WebSocket (RFC 7118, sofia `ws-binding`) for browsers running JsSIP:
//!   a sans-IO SIP codec ([`sip::parse`]), the SDP answer, digest headers, and per
//!   connection sofia's UAS behaviour; see `docs/fsim-sip-ws.md`.
//! - [`control`]: the HTTP control port of the `fsim` binary.
//!
//! # Not simulated
//!
//! Media: no RTP, ICE, DTLS or SRTP. The SDP answers of the SIP-over-WebSocket endpoint have
//! the shape Chromium's `setRemoteDescription` wants (not yet checked against a real browser),
//! but nothing listens on their candidate, so a browser's ICE never completes. Talking is
//! driven by [`SimNode::start_talking`] and the audio floor by simple rules, see `conference`.
//! Also: WSS (plain `ws://` only), SIP over UDP/TCP, `play-file` / `play-file-done` prompt
//! events, outbound SIP
//! (`originate` supports `loopback/<ext>` + `&conference(...)` only), ESL `userauth`, `myevents`,
//! `sendevent`, `sendmsg`, log streaming, ACLs, and the 0–20 ms event delivery jitter of an idle
//! real socket.

pub(crate) mod api;
pub(crate) mod bus;
pub(crate) mod channel;
pub mod conference;
pub(crate) mod esl_server;
pub(crate) mod events;
pub mod node;
pub(crate) mod ops;

pub use conference::ConferenceProfile;
pub use events::CONFERENCE_MAINTENANCE;
pub use node::{
    Call, CallError, ChannelSnapshot, ConferenceSnapshot, FREESWITCH_VERSION, MemberSnapshot,
    NodeConfig, NodeSnapshot, SimNode, SipUa,
};

pub mod control;
pub mod dialplan;
pub mod directory;
pub mod fsconf;
pub mod sip;
