//! The audit log end to end, as an auditor and an attacker see it: one test binary whose modules
//! are tampering with an export (`tamper`, including the acceptance flow through `rack-gateway`
//! and `rack-audit`), SIGKILL during appends (`crash`), and the command lines (`cli`).
//!
//! **Invariant:** every failure case asserts the exact kind, `seq` and object the verifier must
//! name, never just that it failed; nothing sleeps, every wait has a deadline.

// `cfg(test)` (always true in this binary) is how clippy knows these modules are tests, where
// clippy.toml allows `unwrap`, `expect` and `panic`.
#[cfg(test)]
mod cli;
#[cfg(test)]
mod crash;
#[cfg(test)]
mod support;
#[cfg(test)]
mod tamper;
