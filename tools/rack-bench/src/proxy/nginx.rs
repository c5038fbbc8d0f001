//! nginx as a plain reverse proxy: the config rendered from the committed template, nginx run
//! as a child process in the foreground, and stopped at the end.
//!
//! **Invariant:** the config nginx runs is exactly `nginx.conf.template` with its three
//! placeholders filled (no placeholder may survive), every file nginx writes lives under
//! `DIR/nginx`, and a started nginx is always stopped, gracefully (SIGQUIT to its master, so
//! the workers exit too) and, failing that, killed, also when the bench fails half-way.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::fs_check::Refusal;

/// The committed config template (`tools/rack-bench/nginx.conf.template`).
pub const TEMPLATE: &str = include_str!("../../nginx.conf.template");
/// Debian's nginx.
pub const DEFAULT_BIN: &str = "/usr/sbin/nginx";

const READY_WITHIN: Duration = Duration::from_secs(10);
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A running nginx.
pub struct Nginx {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub config: PathBuf,
    pub version: String,
}

/// Refuses (exit 2) when the nginx binary is missing, saying how to install it; else its
/// version line.
pub fn check_installed(bin: &Path) -> Result<String> {
    let missing = || {
        Refusal(format!(
            "refusing to run: nginx is not installed at {} (the benchmark's reverse-proxy \
             baseline); install Debian's nginx with `apt-get install -y nginx`, or pass --nginx \
             PATH",
            bin.display()
        ))
    };
    if !bin.is_file() {
        return Err(missing().into());
    }
    let out = Command::new(bin)
        .arg("-v")
        .output()
        .map_err(|_| missing())?;
    // `nginx -v` prints `nginx version: nginx/1.22.1` on stderr.
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Ok(text
        .strip_prefix("nginx version: ")
        .unwrap_or(&text)
        .to_owned())
}

/// The template with its placeholders filled.
pub fn render(prefix: &Path, listen: SocketAddr, upstream: SocketAddr) -> Result<String> {
    let prefix = prefix
        .to_str()
        .context("the data directory's path is not UTF-8")?;
    if prefix.contains('"') || prefix.contains('\\') {
        bail!("the data directory's path cannot be quoted in an nginx config: {prefix}");
    }
    let config = TEMPLATE
        .replace("@PREFIX@", prefix)
        .replace("@LISTEN@", &listen.to_string())
        .replace("@UPSTREAM@", &upstream.to_string());
    if config.contains('@') {
        bail!("nginx.conf.template has a placeholder rack-bench does not fill");
    }
    Ok(config)
}

// === impl Nginx ===

impl Nginx {
    /// Writes `DIR/nginx/nginx.conf`, starts nginx, and returns once it accepts connections.
    pub fn start(bin: &Path, data: &Path, upstream: SocketAddr, version: String) -> Result<Nginx> {
        let prefix = std::path::absolute(data.join("nginx"))?;
        fs::create_dir_all(&prefix)
            .with_context(|| format!("cannot create {}", prefix.display()))?;
        let listen = free_port()?;
        let config = prefix.join("nginx.conf");
        fs::write(&config, render(&prefix, listen, upstream)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let error_log = prefix.join("error.log");
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut nginx = Nginx {
            child: Some(child),
            listen,
            config,
            version,
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = fs::read_to_string(&error_log).unwrap_or_default();
                bail!(
                    "nginx exited at start ({status}); {}:\n{log}",
                    error_log.display()
                );
            }
            if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {listen} within {READY_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops nginx and waits for it; an error if it had to be killed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SIGQUIT is nginx's graceful shutdown; std can only SIGKILL, which would orphan the
        // workers, so the signal goes through kill(1).
        let signalled = Command::new("kill")
            .arg("-QUIT")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_WITHIN;
        while signalled && Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("nginx did not stop on SIGQUIT within {STOP_WITHIN:?}; killed its master")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("rack-bench: {e:#}");
        }
    }
}

/// A loopback port free right now (bound, then released for nginx to take).
fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_every_placeholder() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let up: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let conf = render(Path::new("/var/tmp/rb/nginx"), listen, up).unwrap();
        assert!(conf.contains("listen 127.0.0.1:8080;"));
        assert!(conf.contains("server 127.0.0.1:9090;"));
        assert!(conf.contains("pid \"/var/tmp/rb/nginx/nginx.pid\";"));
        for required in [
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "worker_processes 2;",
            "access_log off;",
            "daemon off;",
        ] {
            assert!(conf.contains(required), "{required}");
        }
        assert!(render(Path::new("/a\"b"), listen, up).is_err());
    }
}
