//! Waiting for something a test cannot be told about (a record indexed, a store closed):
//! poll, with a deadline that names what was awaited. Included with `#[path]` by
//! `tests/e2e/support.rs` and `tests/token_api.rs`.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every 5 ms until it returns `Some`, failing after `deadline` with `what`.
pub async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "gave up after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
