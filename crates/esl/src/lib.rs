//! FreeSWITCH Event Socket (ESL), inbound mode.
//!
//! # Layout
//!
//! - [`frame`]: the sans-IO framing ([`FrameDecoder`]): header block, blank line, body.
//! - [`headers`]: ordered, duplicate-preserving headers with URL-decoding.
//! - [`message`]: frames classified by `Content-Type` ([`Message`]).
//! - [`event`]: events in plain / JSON / XML ([`Event`]), [`conference`] helpers for
//!   `conference::maintenance`.
//! - [`command`]: client commands ([`Command`]) and, for servers, [`RequestDecoder`].
//! - [`serialize`]: server-side output, byte-exact with FreeSWITCH (used by the simulator).
//! - [`client`]: the sans-IO client state machine (auth, FIFO replies, bgapi jobs, liveness).
//! - `conn` (feature `tokio`): the tokio client with reconnects.
//!
//! Nothing outside `conn` performs IO or reads the clock: time is passed in.

pub mod client;
pub mod command;
pub mod conference;
pub mod event;
pub mod frame;
pub mod headers;
pub mod message;
pub mod serialize;
pub mod urlencode;

#[cfg(feature = "tokio")]
pub mod conn;

pub use command::{Command, CommandError, Request, RequestDecoder, RequestError};
pub use conference::{Action, ConferenceEvent};
pub use event::{Event, EventError, EventFormat};
pub use frame::{Frame, FrameDecoder, FrameError, Limits};
pub use headers::Headers;
pub use message::{DisconnectNotice, LogLine, Message, Reply, api_result};

/// Compiles the README's example as a doctest.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
