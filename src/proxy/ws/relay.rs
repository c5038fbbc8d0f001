//! The frame-level relay between a caller and the rack, once both sides have upgraded: every
//! frame is read, checked, counted and re-framed on the other side with the same FIN, opcode
//! and payload bytes, until one of the ends in `ClosedBy` happens.
//!
//! **Invariant:** a payload is forwarded byte for byte or not at all (no UTF-8 check, no
//! reassembly, no rewriting), with one exception: what the rack sends goes on with the rack
//! password replaced ([`RelayConfig::scrub`]), and the tail of a text frame from the rack that
//! could begin the password is held back until the next frame (or a moment, or the stream's
//! end) shows whether it does, so text bytes may go on in a later frame than they came in;
//! nothing from a side that broke RFC 6455 is forwarded after the first bad frame; the counts
//! and digests cover exactly the data payloads as the other side got them (or would have), in
//! order.
//!
//! Choices, and why:
//! - **Pings and pongs are forwarded**, not answered here. The rack answers the CLI's pings
//!   itself (gorilla's default handler), so liveness stays end to end, each writer has one
//!   owner, and the gateway originates no frame except its closing ones and the text it held
//!   back (see below).
//! - **Fragmentation is preserved**: each fragment is forwarded as it arrives, continuation
//!   frames included, after checking the sequence (no stray continuation, no interleaved
//!   message). Memory is bounded by one frame per direction, and 64 KiB of the
//!   caller's input read ahead while the rack is not reading it. The one change, on the rack's
//!   side: a text frame's tail that could begin the rack password is held back (its frame goes
//!   on without it, empty if that was all of it) and goes on at the front of the next text
//!   frame, or on its own (a continuation of the open message, else a text message) before a
//!   binary frame or a close, or once [`HOLD_FOR`] has passed with no frame to settle it
//!   (none begun: a frame whose first bytes came is waited for, however slowly the rest
//!   arrives). During the closing handshake only the rack's next frame or close settles it.
//!   The fragments of one binary message are a stream of their own, whose tail is held until
//!   the message's next fragment (or a close) without a clock: a rack sends its output as
//!   text, and a binary message's fragments come together.
//! - **Idle means no data frames**. The CLI pings a finished stream every 5 s until it exits
//!   (`convox-api.md` §4.2), so control frames neither start nor reset the idle timer; it
//!   runs once the rack's EOF has been written to the caller (the CLI sends none on log
//!   sockets, so the caller's is not awaited), from the last data frame in either direction.
//!   On exec and shell streams the gateway then waits for the caller to answer its close (or
//!   go) before letting the socket go, so a reset does not drop the end of the output.
//! - **Close codes the gateway sends** (`closing_codes`): forwarded closes travel as they
//!   came and the answer is relayed back (1000 if none comes); a side that went away gets
//!   nothing; a side that broke the protocol gets 1002 (1009 for a frame over the limit, 1007
//!   for a close reason that is not UTF-8); the rack gets 1001 when the caller left or broke
//!   the protocol; the caller gets 1011 when the rack broke the protocol or vanished before
//!   its EOF (1000 after it); idle ends with 1000 both ways; cancellation sends 1008 to the
//!   caller (whose CLI prints the reason and exits 1) and 1001 to the rack.

use std::sync::Arc;
use std::time::Duration;

use events::hash::Hash;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::proxy::mask::{REDACTED, Scrubber, StreamScrub};

use super::codec::{
    CodecError, DEFAULT_MAX_PAYLOAD, Fragments, Frame, FrameReader, FrameWriter,
    MAX_CONTROL_PAYLOAD, Opcode, Role, Violation,
};
use super::hangup::Hangup;
use super::marker::ExitScanner;

/// The reason sent in the close frame that tells the caller the gateway ended the stream.
const CANCELLED_REASON: &str = "stream closed by the gateway";
/// The reason sent to a caller whose input waited on a stream whose rack reads none.
const INPUT_UNREAD_REASON: &str = "the rack reads no input on this stream";

/// How a relay behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The largest frame payload accepted from the caller. A frame is held whole until the
    /// rack reads it, and the rack reads nothing on a log socket, so this bounds what one
    /// stream of a low-role caller can make the gateway hold; the CLI's frames are at most
    /// 32 KiB (it copies its input in `io.Copy`'s chunks).
    pub max_from_caller: usize,
    /// The largest frame payload accepted from the rack.
    pub max_from_rack: usize,
    /// Once the rack's EOF has been written to the caller (its side is over: a command that
    /// ended, a log stream that ran out), how long without a data frame before the gateway
    /// closes with 1000, whether or not the caller sent its EOF: the CLI keeps a finished
    /// stream's socket open until it exits (its deploy wait opens a new log socket every
    /// second), each holding a stream slot. A caller that reads nothing while the EOF waits to
    /// be written is given `caller_silence` instead.
    pub idle_after_eof: Duration,
    /// How long the caller may send nothing at all, not even a ping, before it is taken for
    /// gone: the CLI pings every 5 s on every socket, and a caller that vanished without a FIN
    /// (a laptop asleep, a dropped NAT mapping) would otherwise hold its stream slot and the
    /// rack's socket for as long as the stream stays quiet. The clock does not run out while
    /// the relay is blocked writing the caller's input to a rack that is not reading it: the
    /// caller's frames, pings too, then wait unread, which says nothing of the caller, and
    /// cutting a live restore short is worse than holding a slot until the rack reads again.
    /// Meanwhile the relay reads up to 64 KiB of the caller's input ahead, so a caller whose
    /// connection ends (or fails) is seen at once, and what it sent before goes on as the rack
    /// reads it, for up to `close_timeout`; one that left more than that behind is seen by its
    /// socket's [`Hangup`] just as soon when it reset, or closed with the rest fitting that
    /// socket (not behind a full receive window: see [`Hangup`]). Log streams, whose rack
    /// never reads, are the exception ([`RelayConfig::rack_reads_input`]).
    pub caller_silence: Duration,
    /// How long the closing handshake (and flushing what is pending) may take at the end.
    pub close_timeout: Duration,
    /// Whether the rack's stream ends with an exit-code line worth reading (exec, run, shells);
    /// elsewhere marker-like output is not an exit code and none is reported.
    pub exit_code: bool,
    /// Whether the rack reads what the caller sends (every stream but a log stream). Where it
    /// reads nothing, input waiting unread is no sign of a command busy elsewhere: only a
    /// caller that sent more than a rack socket holds (the CLI's pings alone take days to fill
    /// one), and it may have gone since, unseen behind its own frames. Such a stream ends once
    /// its input has waited for `caller_silence` (`InputUnread`) instead of being held open
    /// for as long as its token lasts.
    pub rack_reads_input: bool,
    /// A value no caller may see in the rack's output (the rack password, which a build or a
    /// process may print, and a rack error may quote): each of its forms in a frame from the
    /// rack (data, a close's reason, a ping's or pong's payload) is replaced before the frame
    /// goes on, and counted as sent when it is data. Text messages are one stream to it, so a
    /// value the rack's reads cut across two frames is found too ([`StreamScrub`]); a binary
    /// message (Convox's EOF) is looked at on its own.
    pub scrub: Option<Arc<Scrubber>>,
}

/// What passed through one relayed stream, for `StreamClosed`.
///
/// "In" is the caller's direction (stdin, towards the rack), "out" the rack's (output,
/// towards the caller). Bytes and digests cover data payloads (text, binary and continuation
/// frames) in the order read, and nothing else: no headers, no control frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStats {
    /// From the start of the relay to the end of the closing handshake.
    pub duration: Duration,
    /// Payload bytes read from the caller.
    pub bytes_in: u64,
    /// Payload bytes from the rack, as sent on to the caller (after [`RelayConfig::scrub`]).
    pub bytes_out: u64,
    /// SHA-256 of the caller's payload bytes, concatenated.
    pub sha256_in: Hash,
    /// SHA-256 of the rack's payload bytes as sent on to the caller, concatenated.
    pub sha256_out: Hash,
    /// Whether the caller sent EOF (an empty binary frame).
    pub eof_in: bool,
    /// Whether the rack sent EOF.
    pub eof_out: bool,
    /// The code of the exit-marker line the rack ended its stream with (its last data, then its
    /// EOF or close), if it did. Only read on exec, run and instance-shell routes; a log line may
    /// contain the marker text too.
    pub exit_code: Option<i64>,
    /// Why the relay ended.
    pub closed_by: ClosedBy,
}

/// Why a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    /// The caller sent a close frame; it was forwarded to the rack.
    CallerClosed,
    /// The rack sent a close frame; it was forwarded to the caller.
    RackClosed,
    /// The caller's connection ended or failed without a close frame.
    CallerGone,
    /// The rack's connection ended or failed without a close frame.
    RackGone,
    /// The caller broke RFC 6455; the offending frame was not forwarded.
    CallerViolation(Violation),
    /// The rack broke RFC 6455; the offending frame was not forwarded.
    RackViolation(Violation),
    /// The rack had sent EOF, then no data frame came for `idle_after_eof`.
    Idle,
    /// No frame of any kind came from the caller for `caller_silence` (while the rack was
    /// reading the caller's input).
    CallerSilent,
    /// The caller's input waited for `caller_silence` on a stream whose rack reads none (see
    /// [`RelayConfig::rack_reads_input`]).
    InputUnread,
    /// The cancellation signal fired (a revoked token, a disabled user, shutdown).
    Cancelled,
    /// The gateway itself could not go on (no randomness for a masking key).
    Gateway,
}

/// One direction: frames read from one side and written to the other, with their count.
struct Leg<R, W> {
    reader: FrameReader<R>,
    writer: FrameWriter<W>,
    fragments: Fragments,
    bytes: u64,
    sha256: Sha256,
    eof: bool,
    exit: Option<ExitScanner>,
    /// What the frame last queued (and maybe still pending) is.
    queued: Relayed,
    /// What is taken out of this direction's frames ([`RelayConfig::scrub`]), with the text
    /// it holds back.
    scrub: Option<StreamScrub>,
    /// Since when a tail is held back, while one is.
    held_since: Option<Instant>,
    /// The scrub of the fragmented binary message under way: its fragments are one stream,
    /// its tail held until its next fragment (a rack sends its output as text; this is for
    /// one that does not).
    binary: Option<StreamScrub>,
    /// When the flush under way began: kept across steps the relay's `select!` cut short, so
    /// all of a wait on the caller is left out of a held tail's ([`Leg::pause_hold`]).
    flush_started: Option<Instant>,
    /// Whether a flush that waits also watches this leg's source for its end, reading ahead
    /// up to [`READ_AHEAD`] bytes (the caller's leg: see [`RelayConfig::caller_silence`]).
    watch_source: bool,
    /// The source ended while a flush waited: what it sent before, read ahead, is still
    /// buffered ([`Leg::relay_rest`]).
    source_ended: bool,
    /// Where a flush that watches the source learns of its end behind more input than the
    /// read-ahead holds (the caller's TCP socket; `None` elsewhere, or out of descriptors).
    hangup: Option<Hangup>,
}

/// What one step of a leg relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relayed {
    Data,
    Control,
    Close,
}

/// Why a leg stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegEnd {
    /// Its source ended or failed.
    ReadEnded,
    /// Its destination failed.
    WriteFailed,
    /// Its source broke the protocol.
    Violation(Violation),
    /// No masking key.
    Entropy,
}

type Inbound<C, R> = Leg<ReadHalf<C>, WriteHalf<R>>;
type Outbound<R, C> = Leg<ReadHalf<R>, WriteHalf<C>>;

/// How long a tail that could begin the rack password is held back waiting for the rack's
/// next frame, counted for each tail: an interactive program's output that happens to end
/// like the password's start (a prompt, an echoed key) shows this much later. A tail that
/// grows keeps its first byte's wait, so a program that takes longer than this to print the
/// password, a piece at a time, gets it through: the scrub is for output that quotes it by
/// accident, not for a program bent on showing it (which could encode it anyway).
pub const HOLD_FOR: Duration = Duration::from_millis(20);

/// How much of the caller's input a relay blocked writing to the rack reads ahead (and holds)
/// to see whether the caller has gone: twice the CLI's largest frame. A caller that sent more
/// than this behind the input the rack is not reading, then left, is seen by its socket's
/// [`Hangup`] where TCP lets it be (a reset; a FIN the window let through); otherwise, or
/// without one (no descriptor to spare), only once the rack reads again (or, on a log stream,
/// after `caller_silence`).
const READ_AHEAD: usize = 64 * 1024;

/// How long a relay whose caller left right after an exit line waits for the rack's EOF.
const EOF_GRACE: Duration = Duration::from_millis(250);

/// How long a relay of a stream without an exit code (a log stream) waits for the answer to a
/// close it forwarded before it answers itself.
const CLOSE_ANSWER: Duration = Duration::from_secs(1);

/// The largest frame payload a relay accepts from the caller by default: 1 MiB, 32 times the
/// CLI's largest.
pub const MAX_CALLER_PAYLOAD: usize = 1 << 20;

/// How long a relay's closing may take by default: a peer that stops reading cannot hold the
/// gateway past it. A shutdown waits longer than this for the streams to record their end.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

// === impl ClosedBy ===

impl ClosedBy {
    /// How the stream ended, as `StreamClosed` records it.
    pub fn kind(self) -> &'static str {
        match self {
            ClosedBy::CallerClosed => "caller_closed",
            ClosedBy::RackClosed => "rack_closed",
            ClosedBy::CallerGone => "caller_gone",
            ClosedBy::RackGone => "rack_gone",
            ClosedBy::CallerViolation(_) => "caller_violation",
            ClosedBy::RackViolation(_) => "rack_violation",
            ClosedBy::Idle => "idle",
            ClosedBy::CallerSilent => "caller_silent",
            ClosedBy::InputUnread => "input_unread",
            ClosedBy::Cancelled => "cancelled",
            ClosedBy::Gateway => "gateway",
        }
    }
}

// === impl RelayConfig ===

impl Default for RelayConfig {
    /// Frames of up to 1 MiB from the caller and 16 MiB from the rack, 5 s of idle after the
    /// rack's EOF, 60 s of caller silence (12 missed pings), 5 s to close, exit codes read.
    fn default() -> RelayConfig {
        RelayConfig {
            max_from_caller: MAX_CALLER_PAYLOAD,
            max_from_rack: DEFAULT_MAX_PAYLOAD,
            idle_after_eof: Duration::from_secs(5),
            caller_silence: Duration::from_secs(60),
            close_timeout: CLOSE_TIMEOUT,
            exit_code: true,
            rack_reads_input: true,
            scrub: None,
        }
    }
}

/// Relays frames between an upgraded caller connection (the gateway is its server) and an
/// upgraded rack connection (the gateway is its client) until the stream ends, then closes
/// both and reports what passed.
///
/// `cancel` ends the stream when it holds `true`, or when its sender is dropped: a stream that
/// can no longer be revoked is not kept open. `hangup` watches the caller's socket (see
/// [`READ_AHEAD`]); it is dropped with the relay's handles. Never fails: every way of ending is
/// a `ClosedBy`, and the counts are returned whatever happened.
pub async fn relay<C, R>(
    caller: C,
    rack: R,
    config: RelayConfig,
    mut cancel: watch::Receiver<bool>,
    hangup: Option<Hangup>,
) -> StreamStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let (caller_read, caller_write) = tokio::io::split(caller);
    let (rack_read, rack_write) = tokio::io::split(rack);
    let mut inbound: Inbound<C, R> = Leg::new(
        FrameReader::new(caller_read, Role::Server, config.max_from_caller),
        FrameWriter::new(rack_write, Role::Client),
        false,
    );
    inbound.watch_source = true;
    inbound.hangup = hangup;
    let mut outbound: Outbound<R, C> = Leg::new(
        FrameReader::new(rack_read, Role::Client, config.max_from_rack),
        FrameWriter::new(caller_write, Role::Server),
        config.exit_code,
    );
    outbound.scrub = config
        .scrub
        .clone()
        .map(|scrub| StreamScrub::new(scrub, REDACTED));

    let mut last_data = started;
    let mut last_from_caller = started;
    let closed_by = loop {
        if is_cancelled(&cancel) {
            break ClosedBy::Cancelled;
        }
        // From the moment the rack's EOF has been written to the caller: a caller slow to read
        // the end of the output (its exit line) is not closed on before it has it. One that
        // stops reading altogether (and only pings) is closed on once it has read nothing for
        // as long as a silent caller is given.
        let idle_at = outbound.eof.then(|| {
            if outbound.writer.has_pending() {
                last_data + config.caller_silence.max(config.idle_after_eof)
            } else {
                last_data + config.idle_after_eof
            }
        });
        let silent_at = last_from_caller + config.caller_silence;
        let release_at = outbound.release_at();
        tokio::select! {
            _ = cancel.wait_for(|c| *c) => break ClosedBy::Cancelled,
            step = inbound.step() => match step {
                Ok(Relayed::Data) => {
                    last_data = Instant::now();
                    last_from_caller = last_data;
                }
                Ok(Relayed::Control) => last_from_caller = Instant::now(),
                Ok(Relayed::Close) => break ClosedBy::CallerClosed,
                Err(end) => break end.on_inbound(),
            },
            step = outbound.step() => {
                if let Some(end) = outbound_stepped(step, &mut last_data) {
                    break end;
                }
            }
            () = sleep_until(idle_at), if idle_at.is_some() => break ClosedBy::Idle,
            // No frame came to show whether the held tail begins the password: it goes on as
            // it is, and the next step writes it out. Unless the tail held when this wait began
            // was settled, and another held since (while a slow caller kept the step
            // flushing): that one waits its own time, not counting the time spent waiting on
            // the caller (`pause_hold`).
            () = sleep_until(release_at), if release_at.is_some() => {
                // A frame the rack has sent already settles the tail better than the clock:
                // it goes first (the `select!` above would pick either at random).
                if let Some(step) = ready_now(outbound.step())
                    && let Some(end) = outbound_stepped(step, &mut last_data)
                {
                    break end;
                }
                let due = outbound.release_at().is_some_and(|at| at <= Instant::now());
                if due && let Err(end) = outbound.release_held() {
                    break end.on_outbound();
                }
            }
            () = tokio::time::sleep_until(silent_at) => {
                if inbound.writer.has_pending() && !config.rack_reads_input {
                    break ClosedBy::InputUnread;
                }
                if inbound.writer.has_pending() {
                    // The rack is not reading the caller's input (a long statement fed from a
                    // dump, say): the caller's frames, its pings too, wait unread behind it,
                    // which says nothing of the caller. Its silence counts from now.
                    last_from_caller = Instant::now();
                    continue;
                }
                break ClosedBy::CallerSilent;
            }
        }
    };

    // From here the caller's input is relayed only as the rack takes it: a close answered, or
    // what the caller sent before it left.
    inbound.watch_source = false;
    // The caller left while its input waited on the rack, having sent more behind it: that
    // goes on (its EOF and close too), as it would have had the rack been reading, for as
    // long as the close may take and no longer.
    let closed_by = if inbound.source_ended {
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => ClosedBy::Cancelled,
            rest = tokio::time::timeout(config.close_timeout, inbound.relay_rest()) => {
                rest.unwrap_or(ClosedBy::CallerGone)
            }
        }
    } else {
        closed_by
    };

    let mut rack_closed_after = false;
    // The CLI exits as soon as it has read the exit line, and its going can overtake the rack's
    // EOF right behind that line: a moment to see whether the rack's stream ends there.
    if closed_by == ClosedBy::CallerGone
        && !outbound.eof
        && outbound
            .exit
            .as_ref()
            .and_then(ExitScanner::exit_code)
            .is_some()
    {
        rack_closed_after = tokio::time::timeout(EOF_GRACE, outbound.read_to_next_data()).await
            == Ok(Some(Relayed::Close));
    }

    // The rack's output is whole once it closed, whatever happens in the closing (a
    // revocation, a caller breaking the protocol): an exit line read before stands.
    let rack_closed = closed_by == ClosedBy::RackClosed;
    // Closing is bounded: a peer that stops reading cannot hold the gateway.
    let closed_by = tokio::time::timeout(
        config.close_timeout,
        finish(
            &mut inbound,
            &mut outbound,
            closed_by,
            config.exit_code,
            config.close_timeout,
            &mut cancel,
        ),
    )
    .await
    .unwrap_or(closed_by);

    StreamStats {
        duration: started.elapsed(),
        bytes_in: inbound.bytes,
        bytes_out: outbound.bytes,
        sha256_in: Hash(inbound.sha256.finalize().into()),
        sha256_out: Hash(outbound.sha256.finalize().into()),
        eof_in: inbound.eof,
        eof_out: outbound.eof,
        // The rack ends its stream right after its marker line; a marker followed by a stream
        // it never ended (its connection lost, the caller gone) may be the program's own.
        exit_code: (outbound.eof || rack_closed || rack_closed_after)
            .then(|| outbound.exit.as_ref().and_then(ExitScanner::exit_code))
            .flatten(),
        closed_by,
    }
}

/// Resolves when `hangup` sees the caller's end; never without one.
async fn hung_up(hangup: Option<&Hangup>) {
    match hangup {
        Some(hangup) => hangup.wait().await,
        None => std::future::pending().await,
    }
}

/// The closing handshake: wait for the answer to a forwarded close, then send the gateway's
/// own close frames where `ClosedBy` calls for them, then shut both transports down. Returns
/// how the stream ended: `end`, unless the side whose answer was awaited broke the protocol
/// meanwhile (its output cut short is not a normal close).
///
/// `await_caller`: on a stream whose end carries the exit code (the CLI exits once it has read
/// it), once the rack's output is whole, the caller's input is read and dropped until it
/// answers the close or goes. A socket closed with input unread, or that input arriving after
/// (the CLI pings every 5 s), is reset, and a reset throws away what the kernel still had to
/// send the caller: the end of a slow caller's output.
async fn finish<C, R>(
    inbound: &mut Inbound<C, R>,
    outbound: &mut Outbound<R, C>,
    end: ClosedBy,
    await_caller: bool,
    close_timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> ClosedBy
where
    C: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + AsyncWrite + Unpin,
{
    // The other side answers a close with its own (RFC 6455 §5.5.1): relay it back. On a log
    // stream the rack reads nothing and never answers: after `CLOSE_ANSWER` the gateway
    // answers in its place, rather than leave the caller waiting out the whole close timeout
    // for a reset. Exec and shell streams (`await_caller`) wait most of the time the close may
    // take (the rack's last output and exit line, or a slow caller's answer, come in that
    // time), and keep the rest for the gateway's own close frames, so a side whose answer never
    // comes still gets one rather than a dropped connection.
    let answer_within = if await_caller {
        close_timeout.mul_f64(0.8)
    } else {
        CLOSE_ANSWER
    };
    let drain = async {
        match end {
            ClosedBy::CallerClosed => {
                tokio::time::timeout(answer_within, outbound.drain_until_close()).await
            }
            ClosedBy::RackClosed => {
                tokio::time::timeout(answer_within, inbound.drain_until_close()).await
            }
            _ => Ok(Ok(())),
        }
    };
    // The drain relays what comes until the answer, the caller's input to the rack included:
    // a revocation meanwhile stops it there, as it stops the open stream.
    let drained = tokio::select! {
        biased;
        _ = cancel.wait_for(|c| *c) => None,
        drained = drain => Some(drained),
    };
    let end = match (end, drained) {
        (_, None) => ClosedBy::Cancelled,
        (ClosedBy::CallerClosed, Some(Ok(Err(LegEnd::Violation(v))))) => ClosedBy::RackViolation(v),
        (ClosedBy::RackClosed, Some(Ok(Err(LegEnd::Violation(v))))) => ClosedBy::CallerViolation(v),
        (end, _) => end,
    };
    let (to_caller, to_rack) = closing_codes(end, outbound.eof);
    // The rack's output is whole and the caller is still there to take its end.
    let caller_open = match end {
        ClosedBy::Idle => true,
        ClosedBy::RackGone => outbound.eof,
        _ => false,
    };
    // A tail still held back was settled by nothing: the stream ended without the rack's EOF
    // or close, which would have sent it on (a revocation, a violation, a rack gone). It could
    // begin the password, and is dropped.
    drop(outbound.take_held());
    let caller_input = &mut inbound.reader;
    let (caller_done, rack_done, ()) = tokio::join!(
        close_and_shutdown(&mut outbound.writer, to_caller),
        close_and_shutdown(&mut inbound.writer, to_rack),
        async {
            if await_caller && caller_open {
                discard_until_close(caller_input).await;
            }
        },
    );
    // Both are best effort: the stream is over whatever the peers do now.
    let _ = (caller_done, rack_done);
    end
}

/// Reads and drops frames until a close frame, the end of the input, or an error.
async fn discard_until_close<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) {
    while let Ok(Some(frame)) = reader.read_frame().await {
        if frame.opcode == Opcode::Close {
            return;
        }
    }
}

/// The close frames the gateway itself sends (to the caller, to the rack); `None` for a side
/// that is gone. A writer that already carries a close (a forwarded one) sends no second one.
fn closing_codes(end: ClosedBy, rack_eof: bool) -> (Option<Frame>, Option<Frame>) {
    let normal = || Some(Frame::close(1000, ""));
    let going_away = || Some(Frame::close(1001, ""));
    match end {
        ClosedBy::CallerClosed | ClosedBy::RackClosed | ClosedBy::Idle => (normal(), normal()),
        ClosedBy::CallerGone | ClosedBy::CallerSilent => (None, going_away()),
        // The caller may be there still, behind its own unread frames.
        ClosedBy::InputUnread => (Some(Frame::close(1008, INPUT_UNREAD_REASON)), going_away()),
        // A rack that had sent EOF has finished; one that vanished before is a failure.
        ClosedBy::RackGone if rack_eof => (normal(), None),
        ClosedBy::RackGone => (Some(Frame::close(1011, "rack connection lost")), None),
        ClosedBy::CallerViolation(v) => (Some(Frame::close(v.close_code(), "")), going_away()),
        ClosedBy::RackViolation(v) => (
            Some(Frame::close(1011, "rack protocol error")),
            Some(Frame::close(v.close_code(), "")),
        ),
        ClosedBy::Cancelled => (Some(Frame::close(1008, CANCELLED_REASON)), going_away()),
        ClosedBy::Gateway => (Some(Frame::close(1011, "")), Some(Frame::close(1011, ""))),
    }
}

/// Sends `close` unless a close already went out, then shuts the transport down.
async fn close_and_shutdown<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    close: Option<Frame>,
) -> Result<(), CodecError> {
    if let Some(close) = close
        && !writer.is_closed()
    {
        writer.queue(&close)?;
    }
    writer.flush().await?;
    Ok(writer.shutdown().await?)
}

fn is_cancelled(cancel: &watch::Receiver<bool>) -> bool {
    *cancel.borrow() || cancel.has_changed().is_err()
}

/// What the relay does with a step of the rack's leg: `Some` ends it. A data frame moves the
/// last data time.
fn outbound_stepped(step: Result<Relayed, LegEnd>, last_data: &mut Instant) -> Option<ClosedBy> {
    match step {
        Ok(Relayed::Data) => {
            *last_data = Instant::now();
            None
        }
        Ok(Relayed::Control) => None,
        Ok(Relayed::Close) => Some(ClosedBy::RackClosed),
        Err(end) => Some(end.on_outbound()),
    }
}

/// `f` polled once: its output if it is ready now. Dropped if not, which a cancel-safe step
/// allows; the relay's next `select!` polls it again with a waker.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// === impl Leg ===

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Leg<R, W> {
    fn new(reader: FrameReader<R>, writer: FrameWriter<W>, scan_exit: bool) -> Leg<R, W> {
        Leg {
            reader,
            writer,
            fragments: Fragments::default(),
            bytes: 0,
            sha256: Sha256::new(),
            eof: false,
            exit: scan_exit.then(ExitScanner::new),
            queued: Relayed::Control,
            scrub: None,
            held_since: None,
            binary: None,
            flush_started: None,
            watch_source: false,
            source_ended: false,
            hangup: None,
        }
    }

    /// Reads, checks, counts and forwards one frame, and says what it was once it is out; a
    /// frame whose step was cancelled (the other leg's finished first) is finished by the next
    /// step, which says what it was then.
    ///
    /// Cancel-safe: the reader keeps partial frames and the writer keeps its progress, so the
    /// relay can drop this future in a `select!` and call it again.
    async fn step(&mut self) -> Result<Relayed, LegEnd> {
        if self.writer.has_pending() {
            // The relay learns when the frame is out: the idle wait after the rack's EOF starts
            // then, and a forwarded close ends the relay then.
            self.flush().await?;
            return Ok(self.queued);
        }
        let frame = match self.reader.read_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(CodecError::Io(_) | CodecError::Truncated) => {
                return Err(LegEnd::ReadEnded);
            }
            Err(CodecError::Protocol(v)) => return Err(LegEnd::Violation(v)),
            Err(CodecError::Entropy(_)) => return Err(LegEnd::Entropy),
        };
        let message = self.fragments.check(&frame).map_err(LegEnd::Violation)?;
        let (held, frame) = self.scrubbed(frame, message);
        if let Some(held) = held {
            self.send(&held)?;
        }
        let relayed = self.send(&frame)?;
        self.flush().await?;
        Ok(relayed)
    }

    /// Writes out what is queued. Cancel-safe: a flush the relay's `select!` cut short keeps
    /// its start ([`Leg::flush_started`]) for the step that finishes it.
    ///
    /// On a leg that watches its source, a source that ends while the flush waits ends the
    /// leg there (`ReadEnded`, with `source_ended` set): what it sent before stays buffered,
    /// for [`Leg::relay_rest`].
    async fn flush(&mut self) -> Result<(), LegEnd> {
        let started = *self.flush_started.get_or_insert_with(Instant::now);
        let Leg {
            reader,
            writer,
            watch_source,
            hangup,
            ..
        } = self;
        if *watch_source {
            tokio::select! {
                biased;
                flushed = writer.flush() => flushed.map_err(|_| LegEnd::WriteFailed)?,
                _ = reader.watch_for_end(READ_AHEAD) => {
                    self.source_ended = true;
                    return Err(LegEnd::ReadEnded);
                }
                // Its end behind more than the read-ahead holds: what it sent before is still
                // in the socket, read as the rack takes it.
                () = hung_up(hangup.as_ref()) => {
                    self.source_ended = true;
                    return Err(LegEnd::ReadEnded);
                }
            }
        } else {
            writer.flush().await.map_err(|_| LegEnd::WriteFailed)?;
        }
        self.flush_started = None;
        self.pause_hold(started.elapsed());
        Ok(())
    }

    /// A held tail's wait does not count the time a flush took, from its start however many
    /// steps it took: while the flush waited on a caller who read nothing, this leg read
    /// nothing from the rack either, and the rack's next frame (which settles the tail) may be
    /// waiting unread. Counted, the wait could run out as that frame is read, and the tail go
    /// on unsettled, the password with it in two pieces: the caller, not the rack, would
    /// decide.
    fn pause_hold(&mut self, flushing: Duration) {
        if let Some(since) = &mut self.held_since {
            *since += flushing;
        }
    }

    /// Counts `frame` and queues it for the other side; what it was is also what the next
    /// step reports if this one's flush is cut short.
    fn send(&mut self, frame: &Frame) -> Result<Relayed, LegEnd> {
        let relayed = self.account(frame);
        self.queued = relayed;
        match self.writer.queue(frame) {
            Ok(()) => Ok(relayed),
            Err(CodecError::Entropy(_)) => Err(LegEnd::Entropy),
            Err(CodecError::Protocol(v)) => Err(LegEnd::Violation(v)),
            Err(CodecError::Io(_) | CodecError::Truncated) => Err(LegEnd::WriteFailed),
        }
    }

    /// When the tail held back goes on without waiting for the rack's next frame. Not while
    /// the caller has not taken what went before ([`Leg::pause_hold`]), nor while the rack's
    /// next frame is coming in: that frame settles the tail, however slowly its bytes arrive
    /// (a large frame across TCP segments).
    fn release_at(&self) -> Option<Instant> {
        if self.writer.has_pending() || self.reader.mid_frame() {
            return None;
        }
        self.held_since.map(|since| since + HOLD_FOR)
    }

    /// Queues the tail held back, as the continuation of the open text message or as a text
    /// message of its own; the next step (or the closing) writes it out.
    fn release_held(&mut self) -> Result<(), LegEnd> {
        self.held_since = None;
        let Some(frame) = self.take_held() else {
            return Ok(());
        };
        self.send(&frame).map(|_| ())
    }

    /// The tail held back, scrubbed as the end of the stream so far, as the frame it goes in.
    fn take_held(&mut self) -> Option<Frame> {
        let scrub = self.scrub.as_mut().filter(|s| s.holding())?;
        self.held_since = None;
        let payload = scrub.finish();
        // A held tail goes inside the open message or as a whole message outside any, so the
        // message open on the rack's side is the one open on the caller's.
        Some(match self.fragments.open() {
            Some(Opcode::Text) => Frame {
                fin: false,
                opcode: Opcode::Continuation,
                payload,
            },
            _ => Frame::text(payload),
        })
    }

    /// The tail held back in a fragmented binary message, as a fragment of it.
    fn take_binary_held(&mut self) -> Option<Frame> {
        let payload = self.binary.take()?.finish();
        (!payload.is_empty()).then(|| Frame {
            fin: false,
            opcode: Opcode::Continuation,
            payload,
        })
    }

    /// `frame` without what this direction takes out: from its data, a close frame's reason
    /// (a rack error quoting its URL) and a ping's or pong's payload alike; and, before it, the
    /// text held back from earlier frames when `frame` does not continue that text (a binary
    /// message, a close). A text frame's tail that could begin the value is held back. A
    /// control frame the replacement made longer is cut back to the 125 bytes a control frame
    /// may carry. `message` is the kind of message `frame` belongs to ([`Fragments::check`]).
    fn scrubbed(&mut self, frame: Frame, message: Option<Opcode>) -> (Option<Frame>, Frame) {
        let text = message == Some(Opcode::Text);
        let fragmented_binary =
            message == Some(Opcode::Binary) && (frame.opcode == Opcode::Continuation || !frame.fin);
        let before = match frame.opcode {
            Opcode::Binary => self.take_held(),
            // A close inside a fragmented binary message: the tail held goes on before it.
            Opcode::Close => self.take_held().or_else(|| self.take_binary_held()),
            _ => None,
        };
        let Some(scrub) = self.scrub.as_mut() else {
            return (before, frame);
        };
        let frame = match frame.opcode {
            _ if fragmented_binary => {
                let stream = self.binary.get_or_insert_with(|| scrub.fresh());
                let mut payload = stream.push(frame.payload);
                if frame.fin {
                    let rest = stream.finish();
                    if !rest.is_empty() {
                        let mut whole = bytes::BytesMut::from(&payload[..]);
                        whole.extend_from_slice(&rest);
                        payload = whole.freeze();
                    }
                    self.binary = None;
                }
                Frame { payload, ..frame }
            }
            _ if text => {
                let from = scrub.held_from();
                let payload = scrub.push(frame.payload);
                // Each tail gets its own wait: one that only grew is the same tail.
                self.held_since = match (scrub.holding(), self.held_since) {
                    (false, _) => None,
                    (true, Some(since)) if scrub.held_from() == from => Some(since),
                    (true, _) => Some(Instant::now()),
                };
                Frame { payload, ..frame }
            }
            Opcode::Close => {
                let (Some(code), Some(reason)) = (frame.close_code(), frame.payload.get(2..))
                else {
                    return (before, frame);
                };
                match scrub.scrubber().scrub(reason, REDACTED) {
                    // The reader let only a UTF-8 reason through, and the replacement is ASCII.
                    Some(reason) => Frame::close(code, std::str::from_utf8(&reason).unwrap_or("")),
                    None => frame,
                }
            }
            _ => match scrub.scrubber().scrub(&frame.payload, REDACTED) {
                Some(mut payload) => {
                    if frame.opcode.is_control() {
                        payload.truncate(MAX_CONTROL_PAYLOAD);
                    }
                    Frame {
                        payload: payload.into(),
                        ..frame
                    }
                }
                None => frame,
            },
        };
        (before, frame)
    }

    fn account(&mut self, frame: &Frame) -> Relayed {
        match frame.opcode {
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                self.bytes += frame.payload.len() as u64;
                self.sha256.update(&frame.payload);
                if let Some(exit) = &mut self.exit {
                    exit.feed(&frame.payload);
                }
                if frame.is_eof() {
                    self.eof = true;
                }
                Relayed::Data
            }
            Opcode::Ping | Opcode::Pong => Relayed::Control,
            Opcode::Close => Relayed::Close,
        }
    }

    /// Reads (and counts, without forwarding) up to the next frame that is not a ping or pong:
    /// the rack's EOF (or close) after an exit line whose caller has gone. `None` when the
    /// input ended or broke the protocol first.
    async fn read_to_next_data(&mut self) -> Option<Relayed> {
        while let Ok(Some(frame)) = self.reader.read_frame().await {
            let message = self.fragments.check(&frame).ok()?;
            // Counted as the frames forwarded before it are: as the caller would have got it.
            let (held, frame) = self.scrubbed(frame, message);
            if let Some(held) = held {
                self.account(&held);
            }
            match self.account(&frame) {
                Relayed::Control => {}
                other => return Some(other),
            }
        }
        None
    }

    /// The rest of a source that ended behind a flush: the frames read ahead, relayed in order
    /// until the source's end or its close, which says how the stream ended.
    async fn relay_rest(&mut self) -> ClosedBy {
        loop {
            match self.step().await {
                Ok(Relayed::Close) => return ClosedBy::CallerClosed,
                Ok(_) => {}
                Err(end) => return end.on_inbound(),
            }
        }
    }

    /// After the other side sent a close: keep relaying this direction until its own close
    /// has been forwarded (`Ok`) or it ends otherwise, and how (the caller bounds the wait).
    async fn drain_until_close(&mut self) -> Result<(), LegEnd> {
        loop {
            if self.step().await? == Relayed::Close {
                return Ok(());
            }
        }
    }
}

// === impl LegEnd ===

impl LegEnd {
    /// The end of the caller-to-rack leg.
    fn on_inbound(self) -> ClosedBy {
        match self {
            LegEnd::ReadEnded => ClosedBy::CallerGone,
            LegEnd::WriteFailed => ClosedBy::RackGone,
            LegEnd::Violation(v) => ClosedBy::CallerViolation(v),
            LegEnd::Entropy => ClosedBy::Gateway,
        }
    }

    /// The end of the rack-to-caller leg.
    fn on_outbound(self) -> ClosedBy {
        match self {
            LegEnd::ReadEnded => ClosedBy::RackGone,
            LegEnd::WriteFailed => ClosedBy::CallerGone,
            LegEnd::Violation(v) => ClosedBy::RackViolation(v),
            LegEnd::Entropy => ClosedBy::Gateway,
        }
    }
}
