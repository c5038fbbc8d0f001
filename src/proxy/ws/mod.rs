//! WebSocket streams through the gateway (exec, run, instance shells, log streams): the
//! RFC 6455 codec, the two handshakes, the frame-level relay between caller and rack with its
//! counts, and the in-socket refusal for callers who may not use a route.
//!
//! Convox puts arbitrary bytes in text frames and signals EOF with an empty binary frame
//! (`convox-api.md` §4.2), and WebSocket libraries that validate UTF-8 break on real exec and
//! log output (`peers-and-libraries.md` §B3), so this module frames bytes itself. The proxy
//! handler decides and records, upgrades to the rack first (`connect_upstream`), answers the
//! caller's upgrade only after the rack's `101`, and then hands both connections to `relay`;
//! a caller it refuses after authentication gets `refuse` instead, with no rack connection.
//!
//! **Invariant:** frames are relayed without UTF-8 validation, payload bytes exactly as sent;
//! the caller never reaches the rack without the proxy's decision (nothing here opens a rack
//! connection on its own, and `refuse` has none); the `StreamStats` of a relay are exact: bytes
//! and SHA-256 of precisely the data payloads read from each side while the stream was relayed
//! (what a caller still sends after the gateway's close is read and dropped, uncounted; a
//! frame read as the relay ended may not have reached the other side).

mod codec;
mod handshake;
mod hangup;
mod marker;
mod refuse;
mod relay;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod e2e_tests;
#[cfg(test)]
mod refuse_tests;
#[cfg(test)]
mod relay_tests;

pub use codec::{
    CodecError, DEFAULT_MAX_PAYLOAD, Frame, FrameReader, FrameWriter, MAX_CONTROL_PAYLOAD, Opcode,
    Role, Violation,
};
pub use handshake::{ClientKey, ConnectError, UpgradeError};
pub use hangup::Hangup;
pub use marker::EXIT_MARKER;
pub use relay::{CLOSE_TIMEOUT, ClosedBy, MAX_CALLER_PAYLOAD, RelayConfig, StreamStats};

pub use handshake::{accept_key, asks_for_websocket, check_upgrade, connect_upstream};
pub use marker::exit_line;
pub use refuse::refuse;
pub use relay::relay;
