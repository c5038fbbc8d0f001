//! Seeing that a caller's TCP connection ended while input it sent waits unread.
//!
//! A relay blocked writing the caller's input to a rack that is not reading it reads no
//! further than its read-ahead, so a FIN (or a reset) behind more input than that sits in the
//! socket unseen: a read would have to get through the data first. The kernel knows as soon as
//! it arrives, and says so to a poll of the socket (`EPOLLRDHUP`, `EPOLLHUP`) whatever waits
//! before it. A [`Hangup`] asks: it holds a second descriptor of the caller's socket,
//! registered apart from the one the relay reads, so waiting on it never takes a readiness the
//! relay's reads need, and it reads nothing.
//!
//! What it cannot see: a FIN the caller's kernel has not sent. Once this socket's receive
//! window is full, the caller's input that did not fit and the FIN behind it wait in the
//! caller's own send queue (TCP sends nothing past a closed window but probes), so such a
//! caller is seen only as the rack reads again (a kernel that gives up on the orphaned
//! connection may drop it without a reset). A reset, which ignores the window, is seen at once,
//! and so is a FIN behind input that fits this socket.
//!
//! **Invariant:** a `Hangup` never reads from or writes to the socket, and lives no longer
//! than the relay's own handle of it: its descriptor alone would keep the connection open.

use std::io;
use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A watch on one caller socket for the end of its input: a FIN or a reset.
#[derive(Debug)]
pub struct Hangup {
    /// Registered as any socket is (readable and writable: tokio's safe registration offers no
    /// other), so the caller's acknowledgements reach the I/O driver for it too, and wake no
    /// task.
    socket: TcpStream,
}

// === impl Hangup ===

impl Hangup {
    /// A watch on `socket`, through a descriptor of its own; fails only when the process has
    /// no descriptor to spare (the relay then sees the caller's end only as it reads).
    ///
    /// Must be called inside the runtime that will poll [`Hangup::wait`].
    pub fn of(socket: &TcpStream) -> io::Result<Hangup> {
        // The descriptor shares the socket's file status (non-blocking already).
        let fd = socket.as_fd().try_clone_to_owned()?;
        let socket = TcpStream::from_std(std::net::TcpStream::from(fd))?;
        Ok(Hangup { socket })
    }

    /// Resolves once the caller can send nothing more: its FIN (a half-close too: a WebSocket
    /// has its own close, and the relay takes the end of the caller's TCP input for the
    /// caller's end, as it does when it reads it) or a reset has arrived, or the runtime is
    /// shutting down. Input still unread before it does not delay this.
    ///
    /// Cancel-safe: dropped and called again, it waits on from where the socket stands.
    pub async fn wait(&self) {
        loop {
            match self.socket.ready(Interest::READABLE).await {
                Ok(ready) if !ready.is_read_closed() => {
                    // Only input waits, which the relay reads through its own descriptor: this
                    // registration's readiness is cleared, so the next event on the socket
                    // (more input, the FIN, a reset) wakes this wait, not the input already
                    // seen. Its closed state is never cleared.
                    let _ = self.socket.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::Hangup;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// Input waiting unread is no hangup; a FIN behind it is, seen without reading the input.
    #[tokio::test]
    async fn a_fin_behind_unread_input_is_seen_and_the_input_stays() {
        let (mut client, server) = pair().await;
        let hangup = Hangup::of(&server).unwrap();
        client.write_all(&[7u8; 100_000]).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), hangup.wait())
                .await
                .is_err(),
            "input alone was taken for a hangup"
        );
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), hangup.wait())
            .await
            .expect("the FIN behind unread input was not seen");
        // Nothing was read through the watch: all of the input is still there, then the end.
        let mut got = Vec::new();
        let mut server = server;
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got)
            .await
            .unwrap();
        assert_eq!(got.len(), 100_000);
    }

    /// The watch holds a descriptor of its own and reads nothing: the relay's handle, which
    /// reads, still gets what arrives while the watch waits.
    #[tokio::test]
    async fn waiting_takes_no_readiness_from_the_reader() {
        let (mut client, mut server) = pair().await;
        let hangup = Hangup::of(&server).unwrap();
        let watching = tokio::spawn(async move {
            hangup.wait().await;
        });
        for round in 0..3u8 {
            client.write_all(&[round; 10]).await.unwrap();
            let mut buf = [0u8; 10];
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::AsyncReadExt::read_exact(&mut server, &mut buf),
            )
            .await
            .expect("the reader missed input the watch saw")
            .unwrap();
            assert_eq!(buf, [round; 10]);
        }
        assert!(!watching.is_finished(), "input was taken for a hangup");
        client.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), watching)
            .await
            .expect("the FIN was not seen")
            .unwrap();
    }
}
