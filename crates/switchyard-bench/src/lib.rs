//! Benchmarks of the Switchyard service. See `src/bin/directory-bench.rs`.
//!
//! - [`corpus`]: mod_xml_curl `sip_auth` requests built like the captured ones.
//! - [`http`]: a raw HTTP/1.1 client over `TcpStream` (exact control of connection reuse).
//! - [`load`]: closed- and open-loop load with every answer checked.
//! - [`servers`]: switchyard and nginx under `taskset`.
//! - [`procstat`]: CPU time of processes.

pub mod corpus;
pub mod http;
pub mod load;
pub mod procstat;
pub mod servers;
