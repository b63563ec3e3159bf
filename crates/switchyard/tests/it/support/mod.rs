//! Shared test helpers.

pub mod api;
pub mod db;
pub mod spawn;
