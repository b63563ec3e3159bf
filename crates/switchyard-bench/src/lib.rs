//! Benchmarks of the Switchyard service. See `src/bin/directory-bench.rs`,
//! `src/bin/api-bench.rs` and `src/bin/events-bench.rs`.
//!
//! - [`corpus`]: mod_xml_curl `sip_auth` requests built like the captured ones.
//! - [`http`]: a raw HTTP/1.1 client over `TcpStream` (exact control of connection reuse).
//! - [`load`]: closed- and open-loop load with every answer checked.
//! - [`apiload`]: the same for generated REST requests (each invitation is new), with
//!   latencies per request class.
//! - [`rest`]: REST requests with the bench API key; a keep-alive client for setup steps.
//! - [`servers`]: switchyard and nginx under `taskset`.
//! - [`fsim`]: the FreeSWITCH simulator as the node pool.
//! - [`procstat`]: CPU time of processes and of the machine.
//! - [`cli`]: `--help` text, the target directory and core pinning, shared by the binaries.

pub mod apiload;
pub mod cli;
pub mod corpus;
pub mod fsim;
pub mod http;
pub mod load;
pub mod procstat;
pub mod rest;
pub mod servers;
