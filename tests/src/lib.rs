//! End-to-end tests live in `tests/e2e.rs`: they start the real `switchyard` and `fsim`
//! executables (built by `cargo test --workspace`) and talk to them over loopback, as an
//! operator would. This library is empty on purpose.
