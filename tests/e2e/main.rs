//! The gateway end to end, over real sockets: a dev gateway on port 0 with `mock-rack` linked in,
//! driven with the exact bytes the convox CLI sends (spec Appendix A). One module per area:
//! the captured CLI sequences (`cli`, and their WebSockets: `run`, `deploy`, `exec` and `logs`
//! in `cli_streams`; the relay's edge cases in `streams`), the event counts of a mixed batch (`counts`), the bad input table
//! of issue 3 (`bad_input`), secrets in answers (`masking`), the hand-written role x route matrix
//! sent through the gateway with every kind of token (`role_matrix`), a store that cannot append
//! (`fail_closed`, and a really full filesystem in `full_disk`), and the export of a test's data
//! directory verified by the auditor's core (`audit`). The harness is
//! `support` (the gateway, a raw HTTP client, the log) and `faults` (a switchable failing disk).
//!
//! **Invariant:** every test ends with `TestGateway::finish`, which stops the gateway, exports
//! its data directory and verifies the export pinned to the directory's key; nothing sleeps to
//! wait, every wait polls with a deadline.

// Test code: helpers outside `#[test]` functions fail the test by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod bad_input;
mod cli;
mod cli_streams;
mod counts;
mod fail_closed;
mod faults;
mod full_disk;
mod masking;
mod role_matrix;
mod streams;
mod support;
#[path = "../common/workspace_bin.rs"]
mod workspace_bin;
