//! The event log: records and their deterministic encoding, hashing, the Merkle tree and its
//! proofs, signed checkpoints, the `EventStore` contract with its stores, and verification.
//!
//! This crate is the **API boundary** every other part builds on: the gateway appends through
//! [`store::EventStore`], the projections fold [`record::Record`]s, and the auditor's verifier
//! uses only the verification core (built without the `redb-store` feature it has no store).
#![forbid(unsafe_code)]

pub mod cbor;
pub mod checkpoint;
pub mod event;
pub mod export;
#[cfg(feature = "test-util")]
pub mod fixtures;
pub mod fold;
pub mod hash;
pub mod json;
pub mod merkle;
pub mod record;
pub mod seq;
pub mod time;
pub mod verify;

#[cfg(feature = "redb-store")]
pub mod store;
