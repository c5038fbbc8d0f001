//! TCP keepalive on every connection the gateway holds: callers' and the rack's.
//!
//! A peer that vanishes without a FIN (a laptop put to sleep, a NAT mapping dropped) leaves a
//! connection that nothing reads from or writes to looking alive for ever. Most connections
//! have a deadline of their own, but a relayed WebSocket that is quiet both ways (a log stream
//! with nothing to say, an exec whose process neither reads nor prints) has none, and would
//! hold its stream slot, its connection place and the rack's socket until the token expires.
//!
//! **Invariant:** a connection whose peer stops answering for [`IDLE`] plus [`COUNT`] probes
//! [`INTERVAL`] apart fails its next read, which ends whatever holds it. A healthy but quiet
//! peer answers the probes and is never cut.

use std::os::fd::AsFd;
use std::time::Duration;

/// How long a connection is quiet before the first probe.
pub const IDLE: Duration = Duration::from_secs(60);
/// Between probes.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Probes left unanswered before the connection is dropped.
pub const COUNT: u32 = 6;

/// Turns keepalive on for `socket` with the bounds above. A socket that refuses (not TCP)
/// is left as it is: keepalive only shortens how long a dead peer is held.
pub fn keep_alive(socket: impl AsFd) -> std::io::Result<()> {
    use rustix::net::sockopt;
    let fd = socket.as_fd();
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, IDLE)?;
    sockopt::set_tcp_keepintvl(fd, INTERVAL)?;
    sockopt::set_tcp_keepcnt(fd, COUNT)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a loopback connection, the accepted one and the dialled one, take the
    /// bounds.
    #[tokio::test]
    async fn a_connection_probes_a_quiet_peer() {
        use rustix::net::sockopt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        for stream in [&accepted, &dialled] {
            assert!(!sockopt::socket_keepalive(stream).unwrap());
            keep_alive(stream).unwrap();
            assert!(sockopt::socket_keepalive(stream).unwrap());
            assert_eq!(sockopt::tcp_keepidle(stream).unwrap(), IDLE);
            assert_eq!(sockopt::tcp_keepintvl(stream).unwrap(), INTERVAL);
            assert_eq!(sockopt::tcp_keepcnt(stream).unwrap(), COUNT);
        }
    }
}
