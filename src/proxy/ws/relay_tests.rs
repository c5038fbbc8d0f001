//! Tests of the relay over in-memory pipes, with mock-rack's codec playing both the caller (a
//! client, masking) and the rack (a server): byte-exact payloads both ways, fragmentation,
//! pings, the ways a stream ends and the counts it reports.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use events::hash::Hash;
use mock_rack::ws::{
    CloseFrame, Frame as PeerFrame, Message, Opcode as PeerOpcode, Role as PeerRole,
};
use mock_rack::ws::{WsReader, WsWriter, decode_frame};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

/// How long any step of a test may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(10);

/// One end of a pipe as mock-rack's codec sees it.
struct Peer {
    reader: WsReader<ReadHalf<DuplexStream>>,
    writer: WsWriter<WriteHalf<DuplexStream>>,
}

/// A relay running between a fake caller and a fake rack.
struct Harness {
    caller: Peer,
    rack: Peer,
    cancel: watch::Sender<bool>,
    relay: JoinHandle<StreamStats>,
}

fn peer(io: DuplexStream, role: PeerRole) -> Peer {
    let (read, write) = tokio::io::split(io);
    Peer {
        reader: WsReader::new(read, role),
        writer: WsWriter::new(write, role),
    }
}

/// A relay between two pipes: the caller's end, the rack's end, the cancel switch, the relay.
fn pipes(
    config: RelayConfig,
) -> (
    DuplexStream,
    DuplexStream,
    watch::Sender<bool>,
    JoinHandle<StreamStats>,
) {
    let (caller_end, gateway_caller) = tokio::io::duplex(256 * 1024);
    let (gateway_rack, rack_end) = tokio::io::duplex(256 * 1024);
    let (cancel, cancelled) = watch::channel(false);
    let relay = tokio::spawn(relay(gateway_caller, gateway_rack, config, cancelled, None));
    (caller_end, rack_end, cancel, relay)
}

fn start(config: RelayConfig) -> Harness {
    let (caller_end, rack_end, cancel, relay) = pipes(config);
    Harness {
        caller: peer(caller_end, PeerRole::Client),
        rack: peer(rack_end, PeerRole::Server),
        cancel,
        relay,
    }
}

/// A short idle period: the relay's timer is real time, so tests keep it small.
fn quick() -> RelayConfig {
    RelayConfig {
        idle_after_eof: Duration::from_millis(50),
        ..RelayConfig::default()
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {PATIENCE:?}"),
    }
}

async fn next_frame(peer: &mut Peer) -> PeerFrame {
    within("a frame", peer.reader.read_frame())
        .await
        .unwrap()
        .unwrap()
}

async fn next_message(peer: &mut Peer) -> Message {
    within("a message", peer.reader.read_message())
        .await
        .unwrap()
        .unwrap()
}

/// The rack sends the exit line for `code`, and the caller gets it.
async fn exit_line_through(h: &mut Harness, code: i64) {
    let line = super::marker::exit_line(code);
    h.rack.writer.text(line.as_bytes()).await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::copy_from_slice(line.as_bytes()))
    );
}

/// Both sides send their EOF, and each gets the other's.
async fn eof_both_ways(h: &mut Harness) {
    h.caller.writer.binary(b"").await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::new())
    );
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Binary(Bytes::new())
    );
}

async fn ended(relay: JoinHandle<StreamStats>) -> StreamStats {
    within("the relay's end", relay).await.unwrap()
}

fn frame(fin: bool, opcode: PeerOpcode, payload: &'static [u8]) -> PeerFrame {
    PeerFrame {
        fin,
        opcode,
        payload: Bytes::from_static(payload),
    }
}

fn close(code: u16, reason: &'static [u8]) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Bytes::from_static(reason),
    }))
}

fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// Frames that break UTF-8 in every way the rack's output does: invalid bytes, a character
/// split across two messages, and one split across the fragments of one message.
fn awkward_frames() -> Vec<PeerFrame> {
    vec![
        frame(true, PeerOpcode::Text, b"\xff\xfe\x00 not utf-8"),
        frame(true, PeerOpcode::Text, b"caf\xc3"),
        frame(true, PeerOpcode::Text, b"\xa9\n"),
        frame(false, PeerOpcode::Text, b"\xe2\x82"),
        frame(true, PeerOpcode::Continuation, b"\xac"),
        frame(false, PeerOpcode::Binary, b"\x80"),
        frame(false, PeerOpcode::Continuation, b""),
        frame(true, PeerOpcode::Continuation, b"\x81"),
    ]
}

async fn send(peer: &mut Peer, frames: &[PeerFrame]) {
    for f in frames {
        peer.writer.send(f.fin, f.opcode, &f.payload).await.unwrap();
    }
}

#[tokio::test]
async fn invalid_utf8_and_split_characters_pass_byte_exact_both_ways() {
    let mut h = start(quick());
    let frames = awkward_frames();

    send(&mut h.caller, &frames).await;
    for want in &frames {
        assert_eq!(&next_frame(&mut h.rack).await, want, "caller to rack");
    }
    send(&mut h.rack, &frames).await;
    for want in &frames {
        assert_eq!(&next_frame(&mut h.caller).await, want, "rack to caller");
    }

    drop(h.caller);
    let stats = ended(h.relay).await;
    let all: Vec<u8> = frames.iter().flat_map(|f| f.payload.to_vec()).collect();
    assert_eq!(stats.closed_by, ClosedBy::CallerGone);
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (all.len() as u64, all.len() as u64)
    );
    assert_eq!(
        (stats.sha256_in, stats.sha256_out),
        (sha256(&all), sha256(&all))
    );
}

#[tokio::test]
async fn eof_both_ways_then_idle_ends_with_exact_counts_and_the_exit_code() {
    let mut h = start(quick());

    // The caller's stdin, then its EOF: the rack keeps talking after it (half-close).
    h.caller.writer.text(b"echo hi\n\xff").await.unwrap();
    h.caller.writer.binary(b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"echo hi\n\xff"))
    );
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Binary(Bytes::new())
    );

    // The rack's output, its exit marker cut across three frames, then its EOF.
    let output: [&'static [u8]; 4] = [
        b"hi\n\xff",
        b"F1E49A85-0AD7-",
        b"4AEF-A618-C249C6E6568D:",
        b"7\n",
    ];
    for piece in output {
        h.rack.writer.text(piece).await.unwrap();
    }
    h.rack.writer.binary(b"").await.unwrap();
    for piece in output {
        assert_eq!(
            next_message(&mut h.caller).await,
            Message::Text(Bytes::from_static(piece))
        );
    }
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::new())
    );

    // Nobody closes (convox-api.md §4.2): the gateway does, once both sides are idle.
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    // Then it waits for the caller to answer (or go), reading what it still sends, so its
    // socket is not reset while the end of the output may still be on its way.
    h.caller.writer.ping(b"late").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!h.relay.is_finished(), "closed before the caller answered");
    h.caller.writer.close(1000, b"").await.unwrap();
    let stats = ended(h.relay).await;
    let out = output.concat();
    assert_eq!(
        stats,
        StreamStats {
            duration: stats.duration,
            bytes_in: 9,
            bytes_out: out.len() as u64,
            sha256_in: sha256(b"echo hi\n\xff"),
            sha256_out: sha256(&out),
            eof_in: true,
            eof_out: true,
            exit_code: Some(7),
            closed_by: ClosedBy::Idle,
        }
    );
    assert!(stats.duration >= quick().idle_after_eof);
}

/// A caller that sends nothing at all (not even the CLI's ping every 5 s) is taken for gone,
/// however much the rack sends: the stream ends and the rack is told the caller went away. A
/// caller that only pings keeps its stream.
#[tokio::test]
async fn a_silent_caller_is_taken_for_gone_and_pings_keep_one_alive() {
    let silence = Duration::from_millis(200);
    let mut h = start(RelayConfig {
        caller_silence: silence,
        ..RelayConfig::default()
    });
    for _ in 0..4 {
        h.caller.writer.ping(b"").await.unwrap();
        h.rack.writer.text(b"log line\n").await.unwrap();
        let _ = next_message(&mut h.caller).await;
        tokio::time::sleep(silence / 2).await;
    }
    assert!(!h.relay.is_finished(), "a pinging caller's stream ended");
    h.rack.writer.text(b"more\n").await.unwrap();
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerSilent);
    assert!(stats.duration >= silence * 2, "{:?}", stats.duration);
    // The caller's pings went through to the rack; then the gateway's close.
    let rack_end = loop {
        match next_message(&mut h.rack).await {
            Message::Ping(_) => {}
            other => break other,
        }
    };
    assert_eq!(rack_end, close(1001, b""));
}

/// A log stream the rack has ended while the caller (as the CLI on log sockets) never sends
/// its EOF, only pings: once idle it is closed with 1000, freeing the caller's stream slot. A
/// data frame from the caller after the rack's EOF restarts the wait.
#[tokio::test]
async fn a_stream_the_rack_ended_is_closed_once_idle_without_the_callers_eof() {
    let idle = Duration::from_millis(300);
    let mut h = start(RelayConfig {
        idle_after_eof: idle,
        exit_code: false,
        ..RelayConfig::default()
    });
    h.rack.writer.text(b"last line\n").await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    let _ = next_message(&mut h.caller).await;
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::new())
    );
    tokio::time::sleep(idle / 2).await;
    h.caller.writer.text(b"late input\n").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"late input\n"))
    );
    tokio::time::sleep(idle * 2 / 3).await;
    h.caller.writer.ping(b"").await.unwrap();
    assert!(
        !h.relay.is_finished(),
        "the caller's data restarted the wait"
    );
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::Idle);
    assert!(!stats.eof_in, "the caller never sent its EOF");
    assert!(stats.duration >= idle + idle / 2, "{:?}", stats.duration);
}

/// Sends a 1 MiB text frame from the caller, more than the pipe to the rack holds, so the
/// relay's write to the rack stays pending (the rack here never reads); gives up on the send
/// after `wait`, and returns the frame's payload.
async fn more_than_the_rack_takes(h: &mut Harness, wait: Duration) -> Bytes {
    let input = Bytes::from(vec![b'x'; 1 << 20]);
    let writer = &mut h.caller.writer;
    within("the caller's input", async {
        let _ = tokio::time::timeout(wait, writer.text(&input)).await;
    })
    .await;
    input
}

/// A rack that stops reading the caller's input (a long statement in a restore fed from stdin)
/// holds the caller's frames, its pings too, unread: that is no silence of the caller's, and
/// the stream stays. Once the rack reads again, a caller that then says nothing is gone.
#[tokio::test]
async fn a_rack_that_stops_reading_does_not_make_the_caller_silent() {
    // The caller's silence starts again once the relay's write to the rack completes; the
    // caller's ping below is sent before then, so however long this test takes to read (and,
    // in a debug build, unmask) the 1 MiB frame on a loaded machine, that is not silence.
    let silence = Duration::from_secs(1);
    let mut h = start(RelayConfig {
        caller_silence: silence,
        ..RelayConfig::default()
    });
    let input = more_than_the_rack_takes(&mut h, silence).await;
    tokio::time::sleep(silence * 3).await;
    assert!(
        !h.relay.is_finished(),
        "the stream ended while the rack was not reading"
    );
    // Still relaying: the caller's next frame, sent while the rack still does not read, reaches
    // the rack after the input (a stream already judged silent would send the rack its close
    // instead). Sent before the rack reads, so the time the test takes to read 1 MiB cannot
    // count as the caller's silence.
    h.caller.writer.ping(b"still here").await.unwrap();
    let got = next_message(&mut h.rack).await;
    assert_eq!(got, Message::Text(input.clone()));
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Ping(Bytes::from_static(b"still here"))
    );
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerSilent);
    assert_eq!(stats.bytes_in, input.len() as u64);
}

/// A caller that leaves while the rack reads none of its input (a program not reading stdin,
/// the CLI then interrupted) is seen at once, not only once the rack reads again: the stream
/// ends and its slot is free.
#[tokio::test]
async fn a_caller_that_leaves_behind_unread_input_is_seen_at_once() {
    let mut h = start(RelayConfig {
        // The close to the rack waits behind the unread input until this runs out.
        close_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    });
    more_than_the_rack_takes(&mut h, Duration::from_secs(1)).await;
    // Read ahead and held, not taken for an end.
    h.caller.writer.ping(b"still here").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!h.relay.is_finished(), "the stream ended on a ping");
    drop(h.caller);
    let stats = tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .expect("the stream outlived its caller")
        .unwrap();
    assert_eq!(stats.closed_by, ClosedBy::CallerGone);
}

/// A caller over TCP that leaves more input behind than the relay reads ahead, while the rack
/// reads none of it (`convox exec … < dump.sql` into a program that does not read, then
/// Ctrl-C), is seen by its socket's [`Hangup`] at once, not once the rack reads again: its
/// reset, whatever waits unread; its FIN, once the input before it fits the socket (a FIN
/// behind more than that waits in the caller's own socket, where nothing can see it).
#[tokio::test]
async fn a_caller_gone_behind_more_input_than_is_read_ahead_is_seen_at_once() {
    for reset in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let caller_end = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (gateway_caller, _) = listener.accept().await.unwrap();
        if reset {
            rustix::net::sockopt::set_socket_linger(&caller_end, Some(Duration::ZERO)).unwrap();
        } else {
            // Room in the gateway's socket for the input behind what the relay holds, on a
            // stock kernel too (`net.core.rmem_max` 208 KiB, doubled for the kernel's own use).
            rustix::net::sockopt::set_socket_recv_buffer_size(&gateway_caller, 1 << 20).unwrap();
            let room = rustix::net::sockopt::socket_recv_buffer_size(&gateway_caller).unwrap();
            assert!(room >= 384 * 1024, "a receive buffer of {room} bytes");
        }
        let hangup = Hangup::of(&gateway_caller).unwrap();
        let (gateway_rack, rack_end) = tokio::io::duplex(64 * 1024);
        let (_cancel, cancelled) = watch::channel(false);
        let relay = tokio::spawn(relay(
            gateway_caller,
            gateway_rack,
            RelayConfig {
                close_timeout: Duration::from_millis(300),
                ..RelayConfig::default()
            },
            cancelled,
            Some(hangup),
        ));
        let (caller_read, caller_write) = caller_end.into_split();
        let mut caller = WsWriter::new(caller_write, PeerRole::Client);
        let chunk = vec![b'x'; 32 * 1024];
        let mut sent = 0usize;
        // Reset: until the caller's own socket takes no more. FIN: 256 KiB, of which the rack's
        // pipe (64 KiB), the frame written to it (32 KiB) and the read-ahead (64 KiB) hold
        // 160, and the gateway's socket the rest, unread, with the FIN behind it.
        while (reset || sent < 256 * 1024)
            && tokio::time::timeout(Duration::from_millis(500), caller.text(&chunk))
                .await
                .is_ok()
        {
            sent += chunk.len();
            assert!(sent < 1 << 30, "the sockets never filled");
        }
        assert!(sent >= 256 * 1024, "only {sent} bytes sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !relay.is_finished(),
            "the stream ended with its caller there"
        );
        drop((caller, caller_read));
        let stats = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .unwrap_or_else(|_| panic!("the caller's end (reset: {reset}) waited on the rack"))
            .unwrap();
        assert_eq!(stats.closed_by, ClosedBy::CallerGone);
        drop(rack_end);
    }
}

/// A caller that sends the rest of its input, its EOF and its close behind input the rack is
/// slow to read, then leaves: all of it reaches the rack once the rack reads, in order, and the
/// stream ended with the caller's close.
#[tokio::test]
async fn input_sent_before_the_caller_left_still_reaches_the_rack() {
    let mut h = start(RelayConfig {
        close_timeout: Duration::from_secs(5),
        ..RelayConfig::default()
    });
    let input = more_than_the_rack_takes(&mut h, Duration::from_millis(500)).await;
    h.caller.writer.text(b"tail").await.unwrap();
    h.caller.writer.binary(b"").await.unwrap();
    h.caller.writer.close(1000, b"").await.unwrap();
    h.caller.writer.shutdown().await.unwrap();
    drop(h.caller);
    // The caller's end is seen while the rack still reads nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(input.clone())
    );
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"tail"))
    );
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Binary(Bytes::new())
    );
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerClosed);
    assert!(stats.eof_in);
    assert_eq!(stats.bytes_in, input.len() as u64 + 4);
}

/// On a log stream the rack reads nothing: a caller whose input waits unread there for the
/// silence period is flooding it, and may have gone unseen behind its own frames, so the stream
/// ends (`InputUnread`) rather than hold its slot for as long as the token lasts. The caller
/// here is still connected and sends nothing more.
#[tokio::test]
async fn input_waiting_on_a_log_stream_ends_it() {
    let silence = Duration::from_secs(1);
    let mut h = start(RelayConfig {
        caller_silence: silence,
        // The close to the rack waits behind the unread input until this runs out.
        close_timeout: silence,
        exit_code: false,
        rack_reads_input: false,
        ..RelayConfig::default()
    });
    more_than_the_rack_takes(&mut h, silence).await;
    let stats = tokio::time::timeout(silence * 5, h.relay)
        .await
        .expect("the stream outlived its unread input")
        .unwrap();
    assert_eq!(stats.closed_by, ClosedBy::InputUnread);
    assert_eq!(stats.closed_by.kind(), "input_unread");
}

/// A log stream: a line that looks like the exit marker is output, relayed as it is, and no exit
/// code is reported for the stream.
#[tokio::test]
async fn a_marker_in_a_log_stream_is_not_an_exit_code() {
    let mut h = start(RelayConfig {
        exit_code: false,
        ..quick()
    });
    let line: &'static [u8] = b"app log: F1E49A85-0AD7-4AEF-A618-C249C6E6568D:7\n";
    h.rack.writer.text(line).await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from_static(line))
    );
    h.caller.writer.binary(b"").await.unwrap();
    let _ = next_message(&mut h.caller).await;
    let stats = ended(h.relay).await;
    assert_eq!(stats.bytes_out, line.len() as u64);
    assert_eq!(stats.exit_code, None);
}

#[tokio::test]
async fn pings_neither_start_nor_extend_the_idle_wait() {
    let mut h = start(quick());
    eof_both_ways(&mut h).await;

    // The rack answers pings, as gorilla does; the caller pings as fast as it can, like the
    // CLI pinging a finished stream every 5 s, until the gateway closes. Writes may fail once
    // the gateway has gone: what counts is the close each side reads.
    let mut rack = h.rack;
    let rack_side = tokio::spawn(async move {
        let mut pings = 0u32;
        loop {
            match rack.reader.read_message().await {
                Ok(Some(Message::Ping(data))) => {
                    pings += 1;
                    let _ = rack.writer.pong(&data).await;
                }
                other => return (pings, other.unwrap()),
            }
        }
    });
    let mut pongs = 0u32;
    let caller_end = loop {
        let _ = h.caller.writer.ping(b"still there?").await;
        match next_message(&mut h.caller).await {
            Message::Pong(data) => {
                assert_eq!(&data[..], b"still there?");
                pongs += 1;
            }
            other => break other,
        }
    };
    assert_eq!(caller_end, close(1000, b""));
    h.caller.writer.close(1000, b"").await.unwrap();
    let (pings, rack_end) = within("the rack's end", rack_side).await.unwrap();
    assert_eq!(rack_end, Some(close(1000, b"")));
    assert!(pings >= pongs && pongs > 0, "pings {pings}, pongs {pongs}");
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::Idle);
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (0, 0),
        "control frames are not counted"
    );
}

#[tokio::test]
async fn pings_and_pongs_are_forwarded_not_answered() {
    let mut h = start(quick());
    h.caller.writer.ping(b"p1").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Ping(Bytes::from_static(b"p1"))
    );
    h.rack.writer.pong(b"p1").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Pong(Bytes::from_static(b"p1"))
    );
    h.rack.writer.ping(b"p2").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Ping(Bytes::from_static(b"p2"))
    );
    h.cancel.send_replace(true);
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::Cancelled);
}

#[tokio::test]
async fn cancellation_closes_both_sides() {
    let mut h = start(RelayConfig::default());
    h.caller.writer.text(b"sleep 3600\n").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"sleep 3600\n"))
    );

    h.cancel.send_replace(true);
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1008, b"stream closed by the gateway")
    );
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::Cancelled);
    assert_eq!(stats.bytes_in, 11);
    // And the transports are shut down behind the close frames.
    assert!(h.caller.reader.read_message().await.unwrap().is_none());
    assert!(h.rack.reader.read_message().await.unwrap().is_none());
}

#[tokio::test]
async fn a_cancel_signal_that_can_no_longer_fire_ends_the_stream() {
    let mut h = start(RelayConfig::default());
    drop(h.cancel);
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1008, b"stream closed by the gateway")
    );
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::Cancelled);
}

#[tokio::test]
async fn a_caller_that_disconnects_ends_the_relay() {
    let mut h = start(RelayConfig::default());
    h.caller.writer.text(b"x").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"x"))
    );
    drop(h.caller);
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerGone);
    assert_eq!((stats.bytes_in, stats.eof_in), (1, false));
}

#[tokio::test]
async fn a_rack_that_vanishes_before_its_eof_is_an_error_for_the_caller() {
    let mut h = start(RelayConfig::default());
    drop(h.rack);
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1011, b"rack connection lost")
    );
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackGone);
}

/// A caller slow to read the end of the output: the idle wait starts once the rack's EOF has
/// been written to it, not once it was read from the rack, so a close does not cut the end
/// off. The rack's frame exactly fills the pipe to the caller, so the EOF after it waits.
#[tokio::test]
async fn the_idle_wait_starts_once_the_eof_reached_the_caller() {
    let mut h = start(RelayConfig {
        idle_after_eof: Duration::from_millis(50),
        close_timeout: Duration::from_millis(100),
        ..RelayConfig::default()
    });
    // 256 KiB of pipe: a server frame's 10-byte head and this payload.
    let output = vec![b'o'; 256 * 1024 - 10];
    h.rack.writer.text(&output).await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    // The caller pings (so the relay looks at its timers again) and reads nothing for a while.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.caller.writer.ping(b"").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from(output))
    );
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::new()),
        "the rack's EOF was cut off"
    );
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::Idle);
}

/// The rack's close, still being written to a slow caller when a ping of the caller's came
/// through, still ends the relay as the rack's close once it is out.
#[tokio::test]
async fn a_rack_close_written_late_is_still_the_racks() {
    let mut h = start(RelayConfig {
        close_timeout: Duration::from_secs(3600),
        ..RelayConfig::default()
    });
    let output = vec![b'o'; 256 * 1024 - 10];
    h.rack.writer.text(&output).await.unwrap();
    h.rack.writer.close(1000, b"").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.caller.writer.ping(b"").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, Message::Ping(Bytes::new()));
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from(output))
    );
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackClosed);
}

/// The CLI exits on reading the exit line, so its going may come before the rack's EOF right
/// behind that line: the code still counts once the EOF comes.
#[tokio::test]
async fn a_caller_gone_on_the_exit_line_keeps_the_code() {
    let mut h = start(RelayConfig::default());
    exit_line_through(&mut h, 3).await;
    drop(h.caller);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A pong (answering a ping of the caller's) may come before the EOF.
    h.rack.writer.pong(b"").await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerGone);
    assert_eq!((stats.eof_out, stats.exit_code), (true, Some(3)));
}

/// A rack that ends with a close instead of the EOF frame (some do) after the exit line the
/// caller left on: the code still counts.
#[tokio::test]
async fn a_caller_gone_on_the_exit_line_keeps_the_code_of_a_rack_that_closes() {
    let mut h = start(RelayConfig::default());
    exit_line_through(&mut h, 4).await;
    drop(h.caller);
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.rack.writer.close(1000, b"").await.unwrap();
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerGone);
    assert_eq!(stats.exit_code, Some(4));
}

/// A caller's close is answered by the rack's WebSocket library at once, whatever the process
/// is doing: after a marker line the program printed itself, that answer is no sign that the
/// process ended, and no exit code is recorded.
#[tokio::test]
async fn a_close_answered_after_a_printed_marker_is_no_exit_code() {
    let mut h = start(RelayConfig::default());
    exit_line_through(&mut h, 0).await;
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    h.rack.writer.close(1000, b"").await.unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerClosed);
    assert_eq!((stats.eof_out, stats.exit_code), (false, None));
}

/// A caller that stops reading after the rack's EOF (and only pings) does not hold its stream:
/// once it has read nothing for as long as a silent caller is given, it is closed on.
#[tokio::test]
async fn a_caller_that_stops_reading_after_the_eof_is_closed_on() {
    let mut h = start(RelayConfig {
        idle_after_eof: Duration::from_millis(50),
        caller_silence: Duration::from_millis(300),
        close_timeout: Duration::from_millis(100),
        ..RelayConfig::default()
    });
    let output = vec![b'o'; 256 * 1024 - 10];
    h.rack.writer.text(&output).await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    let pinging = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if h.caller.writer.ping(b"").await.is_err() {
                break;
            }
        }
    };
    let stats = within("the stream's end", async {
        tokio::select! {
            () = pinging => unreachable!("the pipe stays open until the relay ends"),
            stats = &mut h.relay => stats.unwrap(),
        }
    })
    .await;
    assert_eq!(stats.closed_by, ClosedBy::Idle);
}

/// A marker line the program printed, then the rack's connection lost before its own line and
/// EOF: the process's exit is unknown, and no code is reported.
#[tokio::test]
async fn a_marker_without_the_racks_end_is_no_exit_code() {
    let mut h = start(RelayConfig::default());
    exit_line_through(&mut h, 0).await;
    drop(h.rack);
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::RackGone);
    assert_eq!(stats.exit_code, None);
}

#[tokio::test]
async fn a_close_is_forwarded_and_its_answer_relayed_back() {
    // A long close timeout: the relay must end on the answer, not on the timer.
    let config = RelayConfig {
        close_timeout: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.caller.writer.close(1000, b"bye").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b"bye"));
    h.rack.writer.text(b"last words").await.unwrap();
    h.rack.writer.close(1000, b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from_static(b"last words"))
    );
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerClosed);
    assert_eq!(stats.bytes_out, 10);
}

/// A rack that reads nothing (a log stream) never answers the caller's close: the gateway
/// answers it after a moment, long before the close timeout would cut the connection.
/// (Exec streams wait most of the close timeout: `an_exec_close_the_rack_never_answers_still_gets_a_close_frame`.)
#[tokio::test]
async fn a_close_the_rack_never_answers_is_answered_by_the_gateway() {
    let config = RelayConfig {
        close_timeout: Duration::from_secs(3600),
        exit_code: false,
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.caller.writer.close(1000, b"bye").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b"bye"));
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::CallerClosed);
}

/// An exec stream waits for the rack's answer to a caller's close for most of the close
/// timeout, then answers the caller itself: a close frame, not a dropped connection.
#[tokio::test]
async fn an_exec_close_the_rack_never_answers_still_gets_a_close_frame() {
    let config = RelayConfig {
        close_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.caller.writer.close(1000, b"bye").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b"bye"));
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::CallerClosed);
}

/// A rack that breaks the protocol while the gateway waits for its answer to the caller's
/// close cut its output short: the caller is told so (1011), and the stream is recorded so.
#[tokio::test]
async fn a_violation_while_a_close_is_answered_is_not_a_normal_close() {
    let config = RelayConfig {
        close_timeout: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.caller.writer.close(1000, b"bye").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b"bye"));
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"orphan")
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1011, b"rack protocol error")
    );
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::RackViolation(Violation::StrayContinuation)
    );
}

/// A revocation while the closing handshake waits for the caller's answer ends the draining
/// there: what the caller sends after it no longer reaches the rack, and the stream ends as
/// cancelled without waiting out the close timeout. The exit line the rack sent before its
/// close still counts.
#[tokio::test]
async fn a_cancel_while_the_close_drains_stops_the_callers_input() {
    let mut h = start(RelayConfig {
        close_timeout: Duration::from_secs(3600),
        exit_code: true,
        ..RelayConfig::default()
    });
    exit_line_through(&mut h, 3).await;
    h.rack.writer.close(1000, b"").await.unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    h.caller.writer.text(b"before").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"before"))
    );
    h.cancel.send(true).unwrap();
    // Once the relay has seen the cancel (a frame already on its way may still pass).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = h.caller.writer.text(b"after").await;
    let stats = ended(h.relay).await;
    assert_eq!(
        (stats.closed_by, stats.exit_code),
        (ClosedBy::Cancelled, Some(3))
    );
    let rest = within("the rack's end", h.rack.reader.read_message()).await;
    assert!(
        !matches!(rest, Ok(Some(Message::Text(_)))),
        "the caller's input went on after the cancel: {rest:?}"
    );
}

#[tokio::test]
async fn a_rack_close_is_forwarded_and_the_callers_answer_relayed_back() {
    let config = RelayConfig {
        close_timeout: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.rack.writer.close(1001, b"").await.unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1001, b""));
    h.caller.writer.close(1001, b"").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackClosed);
}

#[tokio::test]
async fn a_protocol_violation_is_not_forwarded() {
    // A stray continuation from the caller: refused, with 1002 back and 1001 to the rack.
    let mut h = start(RelayConfig::default());
    h.caller
        .writer
        .send(true, PeerOpcode::Continuation, b"orphan")
        .await
        .unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1002, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    let stats = ended(h.relay).await;
    assert_eq!(
        stats.closed_by,
        ClosedBy::CallerViolation(Violation::StrayContinuation)
    );
    assert_eq!(stats.bytes_in, 0);

    // A masked frame from the rack (servers must not mask): 1002 back, 1011 to the caller.
    let (caller_end, rack_end, _cancel, relay) = pipes(RelayConfig::default());
    let mut caller = peer(caller_end, PeerRole::Client);
    let (rack_read, rack_write) = tokio::io::split(rack_end);
    let mut rack = Peer {
        reader: WsReader::new(rack_read, PeerRole::Server),
        writer: WsWriter::new(rack_write, PeerRole::Client),
    };
    rack.writer.text(b"masked").await.unwrap();
    assert_eq!(
        next_message(&mut caller).await,
        close(1011, b"rack protocol error")
    );
    assert_eq!(next_message(&mut rack).await, close(1002, b""));
    let stats = ended(relay).await;
    assert_eq!(stats.closed_by, ClosedBy::RackViolation(Violation::Masked));
    assert_eq!(stats.bytes_out, 0);
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_with_1009() {
    let config = RelayConfig {
        max_from_caller: 1024,
        ..RelayConfig::default()
    };
    let mut h = start(config);
    h.caller.writer.binary(&[0; 1025]).await.unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1009, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::CallerViolation(Violation::TooLarge {
            len: 1025,
            max: 1024
        })
    );
}

/// By default the caller's frames may be 1 MiB and the rack's larger: a caller's frame is held
/// whole until a rack that may not read it does.
#[tokio::test]
async fn the_callers_frames_are_held_to_a_smaller_limit_than_the_racks() {
    let mut h = start(RelayConfig::default());
    let big = vec![b'x'; MAX_CALLER_PAYLOAD + 1];
    h.rack.writer.text(&big).await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::copy_from_slice(&big))
    );
    h.caller.writer.text(&big[1..]).await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::copy_from_slice(&big[1..]))
    );
    // Refused from its header: the relay stops reading, so the rest may not be written.
    let _ = h.caller.writer.text(&big).await;
    assert_eq!(next_message(&mut h.caller).await, close(1009, b""));
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::CallerViolation(Violation::TooLarge {
            len: MAX_CALLER_PAYLOAD as u64 + 1,
            max: MAX_CALLER_PAYLOAD
        })
    );
}

#[tokio::test]
async fn a_message_interleaved_into_a_fragmented_one_is_refused() {
    let mut h = start(RelayConfig::default());
    send(
        &mut h.caller,
        &[
            frame(false, PeerOpcode::Text, b"a"),
            frame(true, PeerOpcode::Text, b"b"),
        ],
    )
    .await;
    assert_eq!(
        next_frame(&mut h.rack).await,
        frame(false, PeerOpcode::Text, b"a")
    );
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::CallerViolation(Violation::InterleavedMessage)
    );
}

#[test]
fn the_relay_and_the_refusal_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    let (a, b) = tokio::io::duplex(1);
    let (_cancel, cancelled) = watch::channel(false);
    send(&relay(a, b, RelayConfig::default(), cancelled, None));
    let (a, _b) = tokio::io::duplex(1);
    send(&refuse(a, "no", Duration::from_secs(1), true));
    let (a, _b) = tokio::io::duplex(1);
    send(&connect_upstream(a, http::Request::new(())));
}

#[tokio::test]
async fn a_frame_half_written_when_the_stream_ends_is_finished_before_the_close() {
    // The rack does not read, so the relay is stuck half-way through writing a 1 MiB frame
    // (the pipe holds 256 KiB) when the cancellation comes: the frame must still arrive whole,
    // and only then the close.
    let (caller_end, mut rack_end, cancel, relay) = pipes(RelayConfig::default());
    let mut caller = peer(caller_end, PeerRole::Client);
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    caller.writer.binary(&big).await.unwrap();
    // A frame is queued for the rack only once it was read whole from the caller.
    let mut wire = vec![0u8; 1];
    within("the first byte", rack_end.read_exact(&mut wire))
        .await
        .unwrap();

    cancel.send_replace(true);
    assert_eq!(
        next_message(&mut caller).await,
        close(1008, b"stream closed by the gateway")
    );
    let mut rest = Vec::new();
    within("the rest", rack_end.read_to_end(&mut rest))
        .await
        .unwrap();
    wire.extend_from_slice(&rest);
    let (first, used) = decode_frame(&wire, PeerRole::Server, 2 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        PeerFrame {
            fin: true,
            opcode: PeerOpcode::Binary,
            payload: big.into()
        }
    );
    let (second, _) = decode_frame(&wire[used..], PeerRole::Server, 125)
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.opcode, &second.payload[..]),
        (PeerOpcode::Close, &b"\x03\xe9"[..])
    );
    assert_eq!(ended(relay).await.closed_by, ClosedBy::Cancelled);
}

/// A transport that takes every write, as a TLS stream takes bytes into its buffer, and holds
/// its flush while `held` is set, as a TLS stream does when the peer does not read.
struct HeldFlush {
    inner: DuplexStream,
    held: std::sync::Arc<std::sync::Mutex<(bool, Option<std::task::Waker>)>>,
}

impl tokio::io::AsyncRead for HeldFlush {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for HeldFlush {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        {
            let mut held = self.held.lock().unwrap();
            if held.0 {
                held.1 = Some(cx.waker().clone());
                return std::task::Poll::Pending;
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A rack reached over TLS: the relay's write to it completes into the TLS buffer, and its
/// flush is what waits while the rack does not read. That is no silence of the caller's either.
#[tokio::test]
async fn a_rack_whose_flush_waits_does_not_make_the_caller_silent() {
    let silence = Duration::from_millis(300);
    let (caller_end, gateway_caller) = tokio::io::duplex(256 * 1024);
    let (gateway_rack, rack_end) = tokio::io::duplex(256 * 1024);
    let held = std::sync::Arc::new(std::sync::Mutex::new((true, None)));
    let rack_io = HeldFlush {
        inner: gateway_rack,
        held: held.clone(),
    };
    let (_cancel, cancelled) = watch::channel(false);
    let relay = tokio::spawn(relay(
        gateway_caller,
        rack_io,
        RelayConfig {
            caller_silence: silence,
            ..RelayConfig::default()
        },
        cancelled,
        None,
    ));
    let mut caller = peer(caller_end, PeerRole::Client);
    let mut rack = peer(rack_end, PeerRole::Server);
    caller.writer.text(b"COPY big FROM stdin;").await.unwrap();
    tokio::time::sleep(silence * 4).await;
    assert!(
        !relay.is_finished(),
        "the stream ended while the rack's flush waited"
    );
    let waker = {
        let mut held = held.lock().unwrap();
        held.0 = false;
        held.1.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
    assert_eq!(
        next_message(&mut rack).await,
        Message::Text(Bytes::from_static(b"COPY big FROM stdin;"))
    );
    // Flushed through: a caller that now says nothing is gone.
    let stats = ended(relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerSilent);
}

/// A close frame no endpoint may send (RFC 6455 §7.4: 1005 is for reports only), or with a
/// reason that is not UTF-8, is a protocol violation: not forwarded, the sender gets 1002, or
/// 1007 (data not of its type) for the reason.
#[tokio::test]
async fn a_close_with_a_reserved_code_or_a_broken_reason_is_not_forwarded() {
    let mut h = start(RelayConfig::default());
    h.caller
        .writer
        .send(true, PeerOpcode::Close, &1005u16.to_be_bytes())
        .await
        .unwrap();
    assert_eq!(next_message(&mut h.caller).await, close(1002, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1001, b""));
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::CallerViolation(Violation::CloseCode { code: 1005 })
    );

    let mut h = start(RelayConfig::default());
    h.rack
        .writer
        .send(true, PeerOpcode::Close, b"\x03\xe8\xff\xfe")
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1011, b"rack protocol error")
    );
    assert_eq!(next_message(&mut h.rack).await, close(1007, b""));
    assert_eq!(
        ended(h.relay).await.closed_by,
        ClosedBy::RackViolation(Violation::CloseReason)
    );
}

/// The rack password in the rack's output (a build printing its repository URL) is replaced
/// before the caller sees it, in any form and in any data frame; frames without it, and the
/// caller's input, pass byte for byte, and the counts are of what the caller got.
#[tokio::test]
async fn the_rack_password_is_taken_out_of_the_racks_output() {
    let password = "s3cr3t-rack-pw/+";
    let mut h = start(RelayConfig {
        scrub: Some(std::sync::Arc::new(crate::proxy::mask::Scrubber::new(
            password,
        ))),
        ..quick()
    });
    h.caller.writer.text(b"s3cr3t-rack-pw/+").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Text(Bytes::from_static(b"s3cr3t-rack-pw/+")),
        "the caller's own input is not the rack's output"
    );
    let sent: [&'static [u8]; 3] = [
        b"pushing to https://convox:s3cr3t-rack-pw/+@api.rack\n",
        b"url=https://convox:s3cr3t-rack-pw%2F%2B@api\xff\n",
        b"nothing here \xff\n",
    ];
    let got: [&'static [u8]; 3] = [
        b"pushing to https://convox:rgw-redacted@api.rack\n",
        b"url=https://convox:rgw-redacted@api\xff\n",
        b"nothing here \xff\n",
    ];
    for piece in sent {
        h.rack.writer.text(piece).await.unwrap();
    }
    h.rack.writer.binary(b"bin s3cr3t-rack-pw/+").await.unwrap();
    h.rack
        .writer
        .send(false, PeerOpcode::Text, b"part ")
        .await
        .unwrap();
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"s3cr3t-rack-pw/+ end")
        .await
        .unwrap();
    for piece in got {
        assert_eq!(
            next_message(&mut h.caller).await,
            Message::Text(Bytes::from_static(piece))
        );
    }
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::from_static(b"bin rgw-redacted"))
    );
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from_static(b"part rgw-redacted end"))
    );
    eof_both_ways(&mut h).await;
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    h.rack.writer.close(1000, b"").await.unwrap();
    h.caller.writer.close(1000, b"").await.unwrap();
    let stats = ended(h.relay).await;
    let out = [
        &got.concat()[..],
        b"bin rgw-redacted",
        b"part rgw-redacted end",
    ]
    .concat();
    assert_eq!(
        (stats.bytes_out, stats.sha256_out),
        (out.len() as u64, sha256(&out))
    );
}

/// The rack password in a control frame from the rack (a close whose reason quotes the rack's
/// URL, a ping's payload) is replaced too, and a payload the replacement lengthens is cut to
/// the 125 bytes a control frame may carry; the caller's control frames pass as they came.
#[tokio::test]
async fn the_rack_password_is_taken_out_of_the_racks_control_frames() {
    let password = "s3cr3t-rack-pw";
    let mut h = start(RelayConfig {
        scrub: Some(std::sync::Arc::new(crate::proxy::mask::Scrubber::new(
            password,
        ))),
        ..quick()
    });
    h.caller.writer.ping(password.as_bytes()).await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Ping(Bytes::from_static(b"s3cr3t-rack-pw"))
    );
    h.rack.writer.ping(b"ping s3cr3t-rack-pw").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Ping(Bytes::from_static(b"ping rgw-redacted"))
    );
    let reason = format!("cannot reach https://convox:{password}@rack.example");
    h.rack.writer.close(1011, reason.as_bytes()).await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        close(
            1011,
            b"cannot reach https://convox:rgw-redacted@rack.example"
        )
    );
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackClosed);

    // A short password (4 bytes, replaced by 12): a full-length reason or ping would grow past
    // the limit, and is cut back to it.
    let mut h = start(RelayConfig {
        scrub: Some(std::sync::Arc::new(crate::proxy::mask::Scrubber::new(
            "pw4x",
        ))),
        ..quick()
    });
    let ping = format!("{} pw4x", "p".repeat(120));
    h.rack.writer.ping(ping.as_bytes()).await.unwrap();
    let want = format!("{} rgw-redacted", "p".repeat(120));
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Ping(Bytes::copy_from_slice(&want.as_bytes()[..125]))
    );
    let reason = format!("{} pw4x", "z".repeat(118));
    assert_eq!(reason.len() + 2, 125);
    h.rack.writer.close(1011, reason.as_bytes()).await.unwrap();
    let want = format!("{} rgw-redacted", "z".repeat(118));
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Close(Some(CloseFrame {
            code: 1011,
            reason: Bytes::copy_from_slice(&want.as_bytes()[..123]),
        }))
    );
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackClosed);
}

fn scrubbing(password: &str) -> RelayConfig {
    RelayConfig {
        scrub: Some(std::sync::Arc::new(crate::proxy::mask::Scrubber::new(
            password,
        ))),
        ..quick()
    }
}

/// The next message `peer` gets is the text `want`.
async fn gets_text(peer: &mut Peer, want: &[u8]) {
    assert_eq!(
        next_message(peer).await,
        Message::Text(Bytes::copy_from_slice(want))
    );
}

/// The rack cuts its output wherever its reads end, so the password can straddle two text
/// frames (even two fragments of one message): it is still replaced. The tail that could
/// begin it is held back and goes on with the next frame; the counts are of what the caller
/// got.
#[tokio::test]
async fn a_password_split_across_frames_is_taken_out() {
    let password = "s3cr3t-rack-pw";
    let mut h = start(scrubbing(password));
    h.rack
        .writer
        .text(b"pushing to https://convox:s3cr")
        .await
        .unwrap();
    h.rack.writer.text(b"3t-rack-pw@api.rack\n").await.unwrap();
    gets_text(&mut h.caller, b"pushing to https://convox:").await;
    gets_text(&mut h.caller, b"rgw-redacted@api.rack\n").await;
    // Within one fragmented message: the held tail travels in the next fragment.
    h.rack
        .writer
        .send(false, PeerOpcode::Text, b"again s3cr3t-r")
        .await
        .unwrap();
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"ack-pw done\n")
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut h.caller).await,
        frame(false, PeerOpcode::Text, b"again ")
    );
    assert_eq!(
        next_frame(&mut h.caller).await,
        frame(true, PeerOpcode::Continuation, b"rgw-redacted done\n")
    );
    eof_both_ways(&mut h).await;
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    h.rack.writer.close(1000, b"").await.unwrap();
    h.caller.writer.close(1000, b"").await.unwrap();
    let stats = ended(h.relay).await;
    let out: &[u8] = b"pushing to https://convox:rgw-redacted@api.rack\nagain rgw-redacted done\n";
    assert_eq!(
        (stats.bytes_out, stats.sha256_out),
        (out.len() as u64, sha256(out))
    );
}

/// A held tail that turns out not to be the password goes on by itself: after a moment when
/// no frame follows (an interactive prompt that happens to end like the password's start),
/// and as the continuation of an open message; a tail that a marker line settles goes on in
/// front of it, whose exit code is still read.
#[tokio::test]
async fn a_held_tail_goes_on_when_nothing_completes_it() {
    let password = "s3cr3t-rack-pw";
    let mut h = start(RelayConfig {
        idle_after_eof: Duration::from_secs(5),
        ..scrubbing(password)
    });
    let sent = std::time::Instant::now();
    h.rack.writer.text(b"$ s3").await.unwrap();
    gets_text(&mut h.caller, b"$ ").await;
    gets_text(&mut h.caller, b"s3").await;
    assert!(
        sent.elapsed() >= super::relay::HOLD_FOR,
        "held for {:?}",
        sent.elapsed()
    );
    h.rack
        .writer
        .send(false, PeerOpcode::Text, b"part s3cr")
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut h.caller).await,
        frame(false, PeerOpcode::Text, b"part ")
    );
    assert_eq!(
        next_frame(&mut h.caller).await,
        frame(false, PeerOpcode::Continuation, b"s3cr")
    );
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"\n")
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut h.caller).await,
        frame(true, PeerOpcode::Continuation, b"\n")
    );
    h.rack.writer.text(b"done s3c").await.unwrap();
    h.rack.writer.text(b"r").await.unwrap();
    gets_text(&mut h.caller, b"done ").await;
    let line = super::marker::exit_line(3);
    h.rack.writer.text(line.as_bytes()).await.unwrap();
    h.rack.writer.binary(b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::new())
    );
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Text(Bytes::from(format!("s3cr{line}")))
    );
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::new())
    );
    h.caller.writer.binary(b"").await.unwrap();
    assert_eq!(
        next_message(&mut h.rack).await,
        Message::Binary(Bytes::new())
    );
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(next_message(&mut h.rack).await, close(1000, b""));
    h.rack.writer.close(1000, b"").await.unwrap();
    let stats = ended(h.relay).await;
    assert_eq!(stats.closed_by, ClosedBy::CallerClosed);
    assert_eq!(stats.exit_code, Some(3));
    let out = format!("$ s3part s3cr\ndone s3cr{line}");
    assert_eq!(
        (stats.bytes_out, stats.sha256_out),
        (out.len() as u64, sha256(out.as_bytes()))
    );
}

/// A rack that closes while a tail is held back: the caller gets the tail before the close,
/// which settles it. A rack that vanishes, or a stream cancelled (a revocation), settles
/// nothing: the tail, which could be all of the password but its last byte, is dropped.
#[tokio::test]
async fn a_held_tail_goes_on_before_the_racks_close_and_is_dropped_at_a_forced_end() {
    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"late s3").await.unwrap();
    h.rack.writer.close(1000, b"").await.unwrap();
    gets_text(&mut h.caller, b"late ").await;
    gets_text(&mut h.caller, b"s3").await;
    assert_eq!(next_message(&mut h.caller).await, close(1000, b""));
    h.caller.writer.close(1000, b"").await.unwrap();
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackClosed);

    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"x s3").await.unwrap();
    drop(h.rack);
    gets_text(&mut h.caller, b"x ").await;
    assert_eq!(
        next_message(&mut h.caller).await,
        close(1011, b"rack connection lost")
    );
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::RackGone);

    // Cancelled as the frame comes: whether the relay read it first or not, its tail never
    // goes on.
    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"y s3cr3").await.unwrap();
    h.cancel.send(true).unwrap();
    loop {
        match next_message(&mut h.caller).await {
            Message::Text(text) => assert_eq!(&text[..], b"y "),
            Message::Close(Some(CloseFrame { code: 1008, .. })) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ended(h.relay).await.closed_by, ClosedBy::Cancelled);
}

/// Each tail gets its own wait: a tail settled by the next frame, whose own tail is held in
/// turn, does not inherit what is left of the first one's wait, so a password the rack's
/// output cuts in two right after is still found.
#[tokio::test(start_paused = true)]
async fn each_held_tail_gets_its_own_wait() {
    let hold = super::relay::HOLD_FOR;
    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"x s3cr").await.unwrap();
    gets_text(&mut h.caller, b"x ").await;
    tokio::time::sleep(hold * 3 / 4).await;
    h.rack.writer.text(b"3t-rack-pw y s3cr3t-ra").await.unwrap();
    gets_text(&mut h.caller, b"rgw-redacted y ").await;
    // Past the first tail's wait, within the second's.
    tokio::time::sleep(hold / 2).await;
    h.rack.writer.text(b"ck-pw\n").await.unwrap();
    gets_text(&mut h.caller, b"rgw-redacted\n").await;
    h.cancel.send(true).unwrap();
    ended(h.relay).await;
}

/// A tail held while the step that holds it waits on a slow caller gets its own wait too: the
/// first tail's deadline, passing meanwhile, does not let the second out early.
#[tokio::test(start_paused = true)]
async fn a_tail_held_behind_a_slow_caller_gets_its_own_wait() {
    let hold = super::relay::HOLD_FOR;
    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"x s3cr").await.unwrap();
    gets_text(&mut h.caller, b"x ").await;
    tokio::time::sleep(hold * 3 / 4).await;
    // More than the pipe to the caller holds: the relay's step waits on the caller.
    let mut big = vec![b'a'; 300 * 1024];
    big.extend_from_slice(b"3t-rack-pw y s3cr3t-ra");
    h.rack.writer.text(&big).await.unwrap();
    // Past the first tail's wait, within the second's; the caller has read nothing yet.
    tokio::time::sleep(hold / 2).await;
    h.rack.writer.text(b"ck-pw\n").await.unwrap();
    gets_big_then_redacted(&mut h, &big).await;
    ended(h.relay).await;
}

/// A caller that reads nothing for longer than a tail's wait does not make the tail go on
/// unsettled: the rack's next frame, sent at once but left unread while the relay waited on
/// the caller, settles it, and the password is taken out whole.
#[tokio::test]
async fn a_caller_reading_nothing_does_not_run_out_a_held_tails_wait() {
    let hold = super::relay::HOLD_FOR;
    let (mut h, big) = password_behind_a_caller_reading_nothing().await;
    // The caller reads nothing for three waits.
    tokio::time::sleep(hold * 3).await;
    gets_big_then_redacted(&mut h, &big).await;
    ended(h.relay).await;
}

/// A relay whose caller has read the text before a held `s3cr`, then is sent more than the
/// pipe to it holds (`big`, ending in the password's start), and right after the rest of it;
/// the caller reads nothing of `big` yet.
async fn password_behind_a_caller_reading_nothing() -> (Harness, Vec<u8>) {
    let mut h = start(scrubbing("s3cr3t-rack-pw"));
    h.rack.writer.text(b"x s3cr").await.unwrap();
    gets_text(&mut h.caller, b"x ").await;
    let mut big = vec![b'a'; 300 * 1024];
    big.extend_from_slice(b" y s3cr3t-ra");
    h.rack.writer.text(&big).await.unwrap();
    h.rack.writer.text(b"ck-pw\n").await.unwrap();
    (h, big)
}

/// The same, with the caller pinging while it reads nothing (the CLI pings every 5 s): each
/// ping cuts the step that waits on the caller short, and that wait still does not count
/// against the tail's; nor does the tail go on when its wait and the rack's next frame are
/// both ready (the frame settles it first).
#[tokio::test]
async fn a_caller_pinging_but_reading_nothing_does_not_run_out_a_held_tails_wait() {
    let hold = super::relay::HOLD_FOR;
    for _ in 0..4 {
        let (mut h, big) = password_behind_a_caller_reading_nothing().await;
        for _ in 0..6 {
            h.caller.writer.ping(b"alive?").await.unwrap();
            tokio::time::sleep(hold / 2).await;
        }
        gets_big_then_redacted(&mut h, &big).await;
        ended(h.relay).await;
    }
}

/// The caller gets `s3cr` (the first tail, which `big` did not continue), `big` without the
/// tail that began the password, and the password taken out whole with the line's end; then
/// the stream is cancelled (its end is the caller's to await).
async fn gets_big_then_redacted(h: &mut Harness, big: &[u8]) {
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        match next_message(&mut h.caller).await {
            Message::Text(text) => got.extend_from_slice(&text),
            other => panic!("{other:?}"),
        }
    }
    let mut want = b"s3cr".to_vec();
    want.extend_from_slice(&big[..big.len() - b"s3cr3t-ra".len()]);
    want.extend_from_slice(b"rgw-redacted\n");
    assert!(got == want, "the password went through in pieces");
    h.cancel.send(true).unwrap();
}

/// A held tail waits for the rack's next frame once that frame has begun to arrive, however
/// long the rest takes: a large frame crossing TCP segments is not a program printing slowly,
/// and releasing the tail on the clock would pass the password on in two pieces.
#[tokio::test]
async fn a_held_tail_waits_for_a_frame_that_has_begun_to_arrive() {
    use tokio::io::AsyncWriteExt;
    let password = "s3cr3t-rack-pw";
    let (caller_end, rack_end, cancel, _relay) = pipes(scrubbing(password));
    let mut caller = peer(caller_end, PeerRole::Client);
    let (_rack_read, mut rack_write) = tokio::io::split(rack_end);
    // A whole frame ending with the start of the password.
    let first = b"pushing https://convox:s3cr";
    let mut raw = vec![0x81, first.len() as u8];
    raw.extend_from_slice(first);
    rack_write.write_all(&raw).await.unwrap();
    // The next frame's head and first bytes now, the rest well after the hold ran out.
    let second = b"3t-rack-pw@api.rack\n";
    let mut raw = vec![0x81, second.len() as u8];
    raw.extend_from_slice(&second[..5]);
    rack_write.write_all(&raw).await.unwrap();
    tokio::time::sleep(super::relay::HOLD_FOR * 5).await;
    rack_write.write_all(&second[5..]).await.unwrap();
    let mut all = Vec::new();
    while !all.ends_with(b"@api.rack\n") {
        all.extend_from_slice(&next_frame(&mut caller).await.payload);
    }
    assert_eq!(
        String::from_utf8_lossy(&all),
        "pushing https://convox:rgw-redacted@api.rack\n"
    );
    cancel.send(true).unwrap();
}

/// A binary message's fragments are one stream to the scrub, as text frames are: the password
/// cut between two of them is found, and the message otherwise arrives as sent.
#[tokio::test]
async fn a_password_split_across_binary_fragments_is_taken_out() {
    let password = "s3cr3t-rack-pw";
    let mut h = start(scrubbing(password));
    h.rack
        .writer
        .send(false, PeerOpcode::Binary, b"url https://convox:s3cr")
        .await
        .unwrap();
    h.rack
        .writer
        .send(false, PeerOpcode::Continuation, b"3t-rack-pw@api ")
        .await
        .unwrap();
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"\xff\xfe end\n")
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::from_static(
            b"url https://convox:rgw-redacted@api \xff\xfe end\n"
        ))
    );
    // A message ending on a tail that might have begun the password gets it back whole.
    h.rack
        .writer
        .send(false, PeerOpcode::Binary, b"ends with s3")
        .await
        .unwrap();
    h.rack
        .writer
        .send(true, PeerOpcode::Continuation, b"")
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut h.caller).await,
        Message::Binary(Bytes::from_static(b"ends with s3"))
    );
    // A close inside a fragmented message: the held tail goes on before it.
    h.rack
        .writer
        .send(false, PeerOpcode::Binary, b"cut at s3cr")
        .await
        .unwrap();
    h.rack
        .writer
        .send(true, PeerOpcode::Close, b"\x03\xe8")
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let f = next_frame(&mut h.caller).await;
        if f.opcode == PeerOpcode::Close {
            break;
        }
        got.extend_from_slice(&f.payload);
    }
    assert_eq!(got, b"cut at s3cr");
}
