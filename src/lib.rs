//! Rack Gateway: the audit-first security gateway in front of a Convox rack.
//!
//! This library is the gateway's code; `main.rs` is its command line. Tests link the library to
//! drive the same functions the commands use.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod console;
pub mod export;
pub mod identity;
pub mod keys;
pub mod limited;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod stall;
pub mod store;
