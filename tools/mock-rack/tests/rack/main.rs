//! End-to-end tests of the mock rack over real sockets on 127.0.0.1: requests are written byte
//! for byte as the spec captured them from the `convox` CLI (Appendix A), and answers are read
//! raw, so nothing between the test and the rack normalises either side.
//!
//! Invariant: one test binary, one module per area, every read bounded by a deadline so a broken
//! rack fails a test instead of hanging it.

// Test code: a failed read or a missing field is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod options;
mod routing;
mod sequences;
mod sockets;
mod support;
mod unread;
