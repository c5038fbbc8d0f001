//! `mock-rack`: serves the fake Convox v3 rack of the `mock_rack` library on one address until
//! killed (or interrupted), printing `listening on http://ADDR` once the socket is bound.
//!
//! Invariant: the binary is a thin shell over `MockRack`; it adds no behaviour of its own (it
//! only turns off the request log no one could read), so what the gateway's tests see in
//! process is what a developer sees over the network.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use mock_rack::MockRack;

/// A stateful fake Convox v3 rack over HTTP and WebSockets.
#[derive(Debug, Parser)]
#[command(name = "mock-rack", version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The rack password clients must send as their Basic-auth password.
    #[arg(long)]
    password: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rack = MockRack::start(args.listen, &args.password)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // The request log is for tests in the same process; here nothing can read it, and it would
    // hold every request body for the life of the process.
    rack.set_recording(false);
    println!("listening on http://{}", rack.addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for the interrupt signal")?;
    rack.shutdown().await;
    Ok(())
}
