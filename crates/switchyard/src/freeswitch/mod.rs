//! mod_xml_curl: what FreeSWITCH nodes fetch over HTTP. No axum here (see `http::freeswitch`).
//!
//! - [`form`]: the request body, parsed exactly as FreeSWITCH writes it.
//! - [`directory`]: which directory lookups are answered, and with what.
//! - [`dialplan`]: conference extensions (`conf*<name>`), admitted by the store.
//! - [`xml`]: the documents, written with quick-xml.
//! - [`cache`]: the directory cache (username → store entry), invalidated on every write.

pub mod cache;
pub mod dialplan;
pub mod directory;
pub mod form;
pub mod xml;

#[cfg(test)]
mod tests;
