//! The answer to an authenticated caller who may not use a WebSocket route (issue 3, point 7):
//! the upgrade has happened, so the refusal travels inside the socket the way the rack sends
//! its own errors (`convox-api.md` §2.5): `ERROR: <reason>\n`, except on log streams the exit
//! marker with code 1, then EOF. The CLI prints the reason and, for exec and run, exits 1; it copies a
//! log stream to the terminal as it is, so there the marker would only be printed.
//!
//! **Invariant:** nothing the caller sends is forwarded anywhere or kept; the reason is one
//! line with no exit marker in it (control characters become spaces, marker prefixes are
//! removed), so the only exit code the caller reads is 1; and the wait for the caller's
//! goodbye is bounded.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{CodecError, Frame, FrameReader, FrameWriter, Opcode, Role};
use super::marker::{EXIT_MARKER, exit_line};

/// The largest frame read from a refused caller: stdin it may still send is discarded, and
/// nobody needs 16 MiB frames to say goodbye.
const REFUSED_MAX_PAYLOAD: usize = 64 * 1024;

/// Sends the refusal to an upgraded caller, waits up to `linger` for its EOF, close or
/// disconnection (answering pings, discarding data), then closes with 1000 (whatever code the
/// caller closed with: RFC 6455 lets the answer carry its own) and shuts the connection down;
/// the close itself is also bounded by `linger`.
///
/// `reason` should say what was refused and what to do, e.g. `permission denied:
/// convox:process:exec is required (role viewer); ask an admin for the ops role`.
///
/// `marker`: the exit marker with code 1 follows the reason, so exec and run exit 1; `false`
/// on log streams, which the CLI prints as they come.
///
/// Fails only when the refusal itself cannot be written (the caller is already gone).
pub async fn refuse<C>(
    caller: C,
    reason: &str,
    linger: Duration,
    marker: bool,
) -> Result<(), CodecError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (read, write) = tokio::io::split(caller);
    let mut reader = FrameReader::new(read, Role::Server, REFUSED_MAX_PAYLOAD);
    let mut writer = FrameWriter::new(write, Role::Server);

    writer.queue(&Frame::text(error_line(reason)))?;
    if marker {
        writer.queue(&Frame::text(exit_line(1)))?;
    }
    writer.queue(&Frame::eof())?;
    writer.flush().await?;

    let goodbye = tokio::time::timeout(linger, wait_for_goodbye(&mut reader, &mut writer)).await;
    let _ = tokio::time::timeout(linger, async {
        if !matches!(goodbye, Ok(Goodbye::Gone)) {
            writer.queue(&Frame::close(1000, ""))?;
            writer.flush().await?;
        }
        writer.shutdown().await.map_err(CodecError::from)
    })
    .await;
    Ok(())
}

/// How a refused caller left.
enum Goodbye {
    /// It sent EOF (an empty binary frame) or a close frame.
    Said,
    /// Its connection ended, failed or broke the protocol.
    Gone,
}

/// Reads until the caller says goodbye, answering pings on the way.
async fn wait_for_goodbye<R, W>(reader: &mut FrameReader<R>, writer: &mut FrameWriter<W>) -> Goodbye
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let frame = match reader.read_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return Goodbye::Gone,
        };
        match frame.opcode {
            _ if frame.is_eof() => return Goodbye::Said,
            Opcode::Close => return Goodbye::Said,
            Opcode::Ping => {
                let pong = Frame {
                    fin: true,
                    opcode: Opcode::Pong,
                    payload: frame.payload,
                };
                if writer.write_frame(&pong).await.is_err() {
                    return Goodbye::Gone;
                }
            }
            Opcode::Pong | Opcode::Text | Opcode::Binary | Opcode::Continuation => {}
        }
    }
}

/// `ERROR: <reason>\n`, with every control character of the reason replaced by a space and
/// every exit-marker prefix removed: the CLI looks for the marker anywhere in what it reads, so
/// a reason quoting one would set the exit code.
fn error_line(reason: &str) -> Bytes {
    let mut line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Removing one occurrence can join two halves into another: repeat until none is left
    // (each pass shortens the line, so this ends).
    while line.contains(EXIT_MARKER) {
        line = line.replace(EXIT_MARKER, "");
    }
    Bytes::from(format!("ERROR: {line}\n"))
}
