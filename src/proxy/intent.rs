//! The audit-first step: a permitted call becomes forwardable only once its `CommandRequested`
//! is durable.
//!
//! **Invariant:** [`Recorded`] has no public constructor; [`record`] is the only way to make one,
//! and it returns one only after the store acknowledged the append (durable and applied).
//! The forwarder accepts nothing else, so an unrecorded call cannot reach the rack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use events::event::Event;
use events::seq::Seq;
use events::store::{AppendError, Appended, EventStore, Guard};
use projections::Projections;

/// A call whose intent is durable in the log.
#[derive(Debug)]
pub struct Recorded<T> {
    call: T,
    seq: Seq,
}

// === impl Recorded ===

impl<T> Recorded<T> {
    pub fn call(&self) -> &T {
        &self.call
    }

    /// The `seq` of the `CommandRequested` that allowed this call.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn into_call(self) -> T {
        self.call
    }
}

/// Appends `intent` (a `CommandRequested` with decision allow) and, once it is durable, hands
/// back the call it allows. With `still_allowed`, only if that guard holds when the intent is
/// sequenced: the guard sees every record before it, so a revocation or demotion appended
/// while the gateway looked something up for the call stops the call here.
///
/// The guard is for calls that waited on something after they were checked (a rack lookup):
/// the sequencer writes what it staged before evaluating a guard, so every guarded intent
/// costs a journal write of its own, where unguarded ones share one per batch.
///
/// The append runs to its end even if the caller's future is dropped while it waits (hyper
/// drops a handler whose client hung up; a stop aborts what outlasts its drain): the intent,
/// once handed to the store, is durable whether or not anyone waits, and a durable intent of a
/// call that was never forwarded must still have its end in the log. So when the append
/// succeeds with nobody waiting, `if_abandoned` runs, after the intent is durable, to record
/// that end.
///
/// # Errors
/// `Rejected` when the guard refused (nothing appended); otherwise the store's error: the
/// caller answers 503 and forwards nothing.
pub async fn record<S, T>(
    store: &Arc<S>,
    intent: Event,
    still_allowed: Option<Guard<Projections>>,
    call: T,
    if_abandoned: impl FnOnce() + Send + Unpin + 'static,
) -> Result<Recorded<T>, AppendError>
where
    S: EventStore<Projections> + 'static,
{
    let store = store.clone();
    let append = async move {
        match still_allowed {
            Some(guard) => store.append_if(vec![intent], guard).await,
            None => store.append(vec![intent]).await,
        }
    };
    let appended = RunsToEnd::new(append, move |appended: &Result<Appended, AppendError>| {
        if appended.is_ok() {
            if_abandoned();
        }
    })
    .await?;
    Ok(Recorded {
        call,
        seq: appended.first,
    })
}

/// A future that, dropped after its first poll and before its end, is finished on a task of its
/// own, whose output then goes to `if_dropped`. Not polled at all, it is dropped as it is: it
/// had started nothing.
struct RunsToEnd<F, G>
where
    F: Future + Send + 'static,
    F::Output: Send,
    G: FnOnce(&F::Output) + Send + Unpin + 'static,
{
    future: Option<Pin<Box<F>>>,
    polled: bool,
    if_dropped: Option<G>,
}

impl<F, G> RunsToEnd<F, G>
where
    F: Future + Send + 'static,
    F::Output: Send,
    G: FnOnce(&F::Output) + Send + Unpin + 'static,
{
    fn new(future: F, if_dropped: G) -> RunsToEnd<F, G> {
        RunsToEnd {
            future: Some(Box::pin(future)),
            polled: false,
            if_dropped: Some(if_dropped),
        }
    }
}

impl<F, G> Future for RunsToEnd<F, G>
where
    F: Future + Send + 'static,
    F::Output: Send,
    G: FnOnce(&F::Output) + Send + Unpin + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            // Polled after its end: futures need not answer that, and this one never ends twice.
            return Poll::Pending;
        };
        this.polled = true;
        let output = std::task::ready!(future.as_mut().poll(cx));
        this.future = None;
        this.if_dropped = None;
        Poll::Ready(output)
    }
}

impl<F, G> Drop for RunsToEnd<F, G>
where
    F: Future + Send + 'static,
    F::Output: Send,
    G: FnOnce(&F::Output) + Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let (Some(future), Some(if_dropped), true) =
            (self.future.take(), self.if_dropped.take(), self.polled)
        else {
            return;
        };
        // Handlers are dropped on the runtime they ran on; without one (a runtime shutting
        // down drops its tasks) nothing can wait, and the store's own shutdown sequences what
        // was handed to it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let output = future.await;
                if_dropped(&output);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A future that ends with `value` once `release` is sent.
    fn held(
        value: u32,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        impl Future<Output = u32> + Send,
    ) {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        (release, async move {
            let _ = wait.await;
            value
        })
    }

    fn counter() -> (Arc<AtomicU32>, impl FnOnce(&u32) + Send + Unpin + 'static) {
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        (seen, move |v: &u32| s.store(*v, Ordering::SeqCst))
    }

    async fn until(seen: &AtomicU32, want: u32) {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while seen.load(Ordering::SeqCst) != want {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the dropped future ran to its end");
    }

    #[tokio::test]
    async fn dropped_while_waiting_it_runs_to_its_end_and_reports() {
        let (release, future) = held(7);
        let (seen, report) = counter();
        let mut wrapped = Box::pin(RunsToEnd::new(future, report));
        let waker = std::task::Waker::noop();
        assert!(
            wrapped
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(wrapped);
        assert_eq!(seen.load(Ordering::SeqCst), 0, "not before its end");
        release.send(()).unwrap();
        until(&seen, 7).await;
    }

    #[tokio::test]
    async fn awaited_to_its_end_it_does_not_report() {
        let (release, future) = held(7);
        let (seen, report) = counter();
        release.send(()).unwrap();
        assert_eq!(RunsToEnd::new(future, report).await, 7);
        tokio::task::yield_now().await;
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn dropped_before_its_first_poll_it_starts_nothing() {
        let started = Arc::new(AtomicU32::new(0));
        let s = started.clone();
        let future = async move {
            s.store(1, Ordering::SeqCst);
            5
        };
        let (seen, report) = counter();
        drop(RunsToEnd::new(future, report));
        // On this one-thread runtime a task spawned at the drop would run at this yield.
        tokio::task::yield_now().await;
        assert_eq!(started.load(Ordering::SeqCst), 0);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }
}
