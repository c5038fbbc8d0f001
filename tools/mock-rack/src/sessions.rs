//! What happens inside an accepted WebSocket (spec §4): log streams, build logs and exec, after
//! the rack's post-upgrade authentication (spec §2.5).
//!
//! Invariant: the session is decided synchronously before the upgrade completes (state is read
//! once, under the lock), and the socket task then only does I/O: it writes text frames and the
//! empty binary EOF frame (never on a log stream asked to `Follow: true`), echoes stdin byte for
//! byte, answers pings, and never closes the socket itself (spec §0 item 4) — it ends when the
//! client closes or the rack shuts down.

use bytes::Bytes;
use http::HeaderMap;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::error::RackError;
use crate::handlers::Call;
use crate::params::{Params, atoi, parse_duration};
use crate::routes::{RouteId, Vars};
use crate::state::LogScope;
use crate::ws::{CloseFrame, Message, Opcode, Role, WsError, WsReader, WsWriter};

/// The prefix of the exit-code line that ends exec, run and instance shells (spec §4.3).
pub const EXIT_MARKER: &str = "F1E49A85-0AD7-4AEF-A618-C249C6E6568D:";

/// What an exec session writes after the client's EOF, a moment later, before its exit
/// marker: a command's output does not stop when its stdin closes (spec §4.2), so a proxy that
/// tore the stream down at the client's EOF would lose it, and the exit code.
pub const AFTER_EOF_OUTPUT: &[u8] = b"stdin closed\n";

/// How long after the client's EOF the exec session writes [`AFTER_EOF_OUTPUT`].
const AFTER_EOF_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// A mock-only request header: the exit code an exec session reports (0 when absent).
pub const EXIT_CODE_HEADER: &str = "Mock-Exit-Code";

/// What an accepted socket will do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// Send these text frames, then the EOF frame, then idle.
    Script(Vec<Bytes>),
    /// Send these text frames, then idle with no EOF: a log stream that follows (spec §4.5)
    /// pods that print nothing more.
    Follow(Vec<Bytes>),
    /// Echo every stdin frame until the client's EOF, then, a moment later,
    /// [`AFTER_EOF_OUTPUT`], the exit marker and the EOF frame; each echo in fragments of
    /// [`FRAGMENT`] bytes when `fragmented`.
    Echo { exit_code: i64, fragmented: bool },
}

// === impl Session ===

impl Session {
    /// The rack's answer to bad credentials, inside the socket (spec §2.5).
    pub(crate) fn unauthenticated() -> Session {
        Session::error(&RackError::Unauthorized)
    }

    /// stdapi's handler-error path: `ERROR: <message>\n`, then EOF.
    fn error(e: &RackError) -> Session {
        Session::Script(vec![Bytes::from(format!("ERROR: {}\n", e.message()))])
    }
}

/// Decides an authenticated socket's session from its route and options.
pub(crate) fn plan(route: RouteId, call: &mut Call<'_>, headers: &HeaderMap) -> Session {
    match route {
        RouteId::ProcessExec => plan_exec(call, headers),
        RouteId::BuildLogs => {
            if let Err(e) = logs_options(&mut call.params) {
                return Session::error(&e);
            }
            let lines = call
                .shared
                .state()
                .build_log_lines(call.vars.get("app"), call.vars.get("id"));
            lines.map_or_else(|e| Session::error(&e), Session::Script)
        }
        RouteId::SystemLogs => match logs_options(&mut call.params) {
            // Spec §3.10 says a real v3 rack answers `ERROR: unimplemented` here; the mock
            // streams rack lines instead, so `convox rack logs` can be exercised end to end.
            Ok(o) => Session::Script(
                o.tail(
                    call.shared
                        .state()
                        .system_log_lines(o.prefix, o.filter.as_deref()),
                ),
            ),
            Err(e) => Session::error(&e),
        },
        RouteId::AppLogs | RouteId::ServiceLogs | RouteId::ProcessLogs => {
            let options = match logs_options(&mut call.params) {
                Ok(o) => o,
                Err(e) => return Session::error(&e),
            };
            let vars: &Vars = call.vars;
            let (app, scope) = match route {
                RouteId::AppLogs => (vars.get("name"), LogScope::App),
                RouteId::ServiceLogs => (vars.get("app"), LogScope::Service(vars.get("service"))),
                _ => (vars.get("app"), LogScope::Process(vars.get("pid"))),
            };
            let lines = call.shared.state().log_lines(
                app,
                scope,
                options.prefix,
                options.filter.as_deref(),
            );
            match lines {
                Ok(l) if options.follow == Some(true) => Session::Follow(options.tail(l)),
                Ok(l) => Session::Script(options.tail(l)),
                Err(e) => Session::error(&e),
            }
        }
        _ => Session::error(&RackError::Internal("not a websocket route".to_owned())),
    }
}

/// `ProcessExec`: `command` is `c.Value("command")` (query, then the `Command` header), then the
/// `ProcessExecOptions` headers. An unknown pid fails inside the provider after the controller
/// has already written the exit marker (code 0), as `renderStatusCode` runs before the error.
fn plan_exec(call: &mut Call<'_>, headers: &HeaderMap) -> Session {
    let _command = call.params.value("command");
    let p = &mut call.params;
    let _entrypoint = p.header("Entrypoint");
    for name in ["Height", "Width"] {
        if let Err(e) = p.header(name).map(|v| atoi(&v)).transpose() {
            return Session::error(&RackError::Internal(e));
        }
    }
    let _tty = p.header("Tty");
    let disable_stdin = p.header("Disable-Stdin").is_some_and(|v| v == "true");
    let target = call
        .shared
        .state()
        .exec_target(call.vars.get("app"), call.vars.get("pid"));
    if let Err(e) = target {
        return Session::Script(vec![
            Bytes::from(format!("{EXIT_MARKER}0\n")),
            Bytes::from(format!("ERROR: {}\n", e.message())),
        ]);
    }
    let exit_code = headers
        .get(EXIT_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if disable_stdin {
        return Session::Script(vec![Bytes::from(format!("{EXIT_MARKER}{exit_code}\n"))]);
    }
    Session::Echo {
        exit_code,
        fragmented: call.shared.fragments_output(),
    }
}

/// The size of an output fragment when fragmented: gorilla's default write buffer.
pub const FRAGMENT: usize = 4096;

/// The `LogsOptions` headers a log handler reads.
struct LogsOptions {
    filter: Option<String>,
    /// `Some(true)` only for `Follow: true` (stdapi's `*bool`: `true` is the only true value).
    follow: Option<bool>,
    prefix: bool,
    tail: Option<usize>,
}

// === impl LogsOptions ===

impl LogsOptions {
    fn tail(&self, mut lines: Vec<Bytes>) -> Vec<Bytes> {
        if let Some(n) = self.tail
            && lines.len() > n
        {
            lines.drain(..lines.len() - n);
        }
        lines
    }
}

/// `LogsOptions`, every header parsed as `stdapi.UnmarshalOptions` does, in the order spec
/// §3.2 lists them (the struct's order, so the first malformed one is the error): `Filter`,
/// `Follow`, `Maxlogrequests` (`Atoi`), `Prefix`, `Since` (`time.ParseDuration`; an empty
/// value takes the `2m` default), `Previous`, `Tail` (`Atoi`). A parse error is the handler's
/// error: an `ERROR: …` frame then EOF (spec §4.2), for build and rack logs too.
///
/// `Follow` decides whether an app, service or process stream ends: `Follow: true` keeps it
/// open after the existing lines, as the rack follows the pods (spec §4.5); any other value
/// ends it with EOF (`--no-follow` sends `false`). With no `Follow` header the rack follows
/// too (default true, spec §3.2) but the mock ends the stream, as spec §7 allows ("keep open
/// (follow) or EOF", "may EOF immediately"): the gateway's own tests read such streams to EOF.
/// `Since` and `Maxlogrequests` are parsed and recorded; the mock's lines do not depend on them.
fn logs_options(p: &mut Params<'_>) -> Result<LogsOptions, RackError> {
    let filter = p.header("Filter");
    let follow = p.header("Follow").map(|v| v == "true");
    let _max_log_requests = int_header(p, "Maxlogrequests")?;
    let prefix = p.header("Prefix").is_some_and(|v| v == "true");
    if let Some(since) = p.header_or("Since", "2m") {
        parse_duration(&since).map_err(RackError::Internal)?;
    }
    let _previous = p.header("Previous");
    let tail = int_header(p, "Tail")?;
    Ok(LogsOptions {
        filter,
        follow,
        prefix,
        tail: tail.map(|t| usize::try_from(t).unwrap_or(0)),
    })
}

/// An `*int` header option: Go's `strconv.Atoi`, whose error is the handler's.
fn int_header(p: &mut Params<'_>, name: &str) -> Result<Option<i64>, RackError> {
    p.header(name)
        .map(|v| atoi(&v))
        .transpose()
        .map_err(RackError::Internal)
}

/// Serves an upgraded connection until the client leaves or `stop` turns true.
pub(crate) async fn run(io: TokioIo<Upgraded>, session: Session, mut stop: watch::Receiver<bool>) {
    let (read, write) = tokio::io::split(io);
    let mut reader = WsReader::new(read, Role::Server);
    let mut writer = WsWriter::new(write, Role::Server);
    let outcome = tokio::select! {
        outcome = drive(&mut reader, &mut writer, session) => outcome,
        () = crate::server::stopped(&mut stop) => Ok(()),
    };
    if let Err(e @ (WsError::Protocol(_) | WsError::TooLarge { .. })) = outcome {
        // Best effort: the peer broke the protocol and the connection is going away anyway.
        let _ = writer.close(e.close_code(), b"").await;
    }
}

async fn drive<R, W>(
    reader: &mut WsReader<R>,
    writer: &mut WsWriter<W>,
    session: Session,
) -> Result<(), WsError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match session {
        Session::Script(frames) => {
            for frame in frames {
                writer.text(&frame).await?;
            }
        }
        Session::Follow(frames) => {
            for frame in frames {
                writer.text(&frame).await?;
            }
            return idle(reader, writer).await;
        }
        Session::Echo {
            exit_code,
            fragmented,
        } => {
            loop {
                match reader.read_message().await? {
                    None => return Ok(()),
                    Some(Message::Text(data)) if fragmented => {
                        let mut opcode = Opcode::Text;
                        for piece in data.chunks(FRAGMENT) {
                            writer.send(false, opcode, piece).await?;
                            opcode = Opcode::Continuation;
                        }
                        writer.send(true, opcode, &[]).await?;
                    }
                    Some(Message::Text(data)) => writer.text(&data).await?,
                    // stdapi's `Context.Read`: any binary frame is EOF on stdin.
                    Some(Message::Binary(_)) => break,
                    Some(Message::Ping(data)) => writer.pong(&data).await?,
                    Some(Message::Pong(_)) => {}
                    Some(Message::Close(close)) => return answer_close(writer, close).await,
                }
            }
            tokio::time::sleep(AFTER_EOF_DELAY).await;
            writer.text(AFTER_EOF_OUTPUT).await?;
            writer
                .text(format!("{EXIT_MARKER}{exit_code}\n").as_bytes())
                .await?;
        }
    }
    // The stdapi socket wrapper's deferred EOF frame (spec §4.2).
    writer.binary(&[]).await?;
    idle(reader, writer).await
}

/// After EOF, or while a log stream follows, nobody closes (spec §4.2): answer pings, ignore
/// data, end when the client does.
async fn idle<R, W>(reader: &mut WsReader<R>, writer: &mut WsWriter<W>) -> Result<(), WsError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        match reader.read_message().await? {
            None => return Ok(()),
            Some(Message::Ping(data)) => writer.pong(&data).await?,
            Some(Message::Close(close)) => return answer_close(writer, close).await,
            Some(_) => {}
        }
    }
}

/// Echoes the client's close code, as gorilla's default close handler does.
async fn answer_close<W: AsyncWrite + Unpin>(
    writer: &mut WsWriter<W>,
    close: Option<CloseFrame>,
) -> Result<(), WsError> {
    match close {
        Some(c) => writer.close(c.code, b"").await?,
        None => writer.send(true, Opcode::Close, &[]).await?,
    }
    let _ = writer.shutdown().await;
    Ok(())
}
