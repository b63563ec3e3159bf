//! Shared test helpers.

pub mod db;
pub mod spawn;
