//! SIP over WebSocket (RFC 7118): the sofia `ws-binding` of a simulated node, enough for
//! JsSIP 3.x in a browser to register, call into a conference and hang up.
//!
//! - [`message`]: sans-IO SIP codec ([`message::parse`] is the fuzz entry point).
//! - [`sdp`]: the SDP answer a WebRTC offer gets (no media ever flows).
//! - [`auth`]: digest challenges and credentials.
//! - `registrar`: sofia's rules for REGISTERs over WS (`Registered(WS-NAT)`, the `fs_path`
//!   contact, unregister / expiry / socket-close events).
//! - `ws`: the WebSocket listener and, per connection, sofia's UAS behaviour (REGISTER,
//!   INVITE with xml_curl directory + dialplan lookups, ACK, BYE both ways, CANCEL, OPTIONS,
//!   re-INVITE, INFO, MESSAGE).

pub mod auth;
pub mod message;
pub(crate) mod registrar;
pub mod sdp;
pub(crate) mod ws;

pub use message::{Message, ParseError, parse};
