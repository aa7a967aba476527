//! The blocking facade: run kms-fields' async operations from synchronous code (Diesel).
//!
//! - Outside any tokio runtime: the future runs on a small runtime owned by kms-fields
//!   (created on first use, two worker threads, kept for the life of the process so pooled
//!   HTTP connections stay valid).
//! - Inside a multi-thread runtime (a task or a `spawn_blocking` thread): the calling thread is
//!   handed over with `block_in_place` and the future runs on the caller's runtime.
//! - Inside a current-thread runtime: blocking would stall every task of that runtime, so this
//!   is refused with an [`ErrorKind::Runtime`] error that names the
//!   remedy (use the async method, or a multi-thread runtime).
//!
//! A future with nothing to wait for — an operation whose keys are in-process (the test key, a
//! local master key) or already unwrapped — completes on its first poll: that poll happens on
//! the calling thread, in the runtime's context, and its result is returned without handing
//! the future to the runtime (`block_on`) or the thread over (`block_in_place`). Anything else
//! continues on the runtime as above.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::error::{Error, ErrorKind, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("kms-fields")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::new(
                ErrorKind::Runtime,
                format!("cannot start the kms-fields runtime: {e}"),
            )
        })
}

/// Run `future` to completion from synchronous code.
///
/// ```
/// let n = kms_fields::blocking::block_on(async { 40 + 2 })?;
/// assert_eq!(n, 42);
/// # Ok::<(), kms_fields::Error>(())
/// ```
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let mut future = std::pin::pin!(future);
    match Handle::try_current() {
        Err(_) => {
            let rt = runtime()?;
            {
                let _context = rt.enter();
                if let Poll::Ready(v) = poll_once(future.as_mut()) {
                    return Ok(v);
                }
            }
            Ok(rt.block_on(future))
        }
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::MultiThread => {
                if let Poll::Ready(v) = poll_once(future.as_mut()) {
                    return Ok(v);
                }
                Ok(tokio::task::block_in_place(|| handle.block_on(future)))
            }
            _ => Err(Error::new(
                ErrorKind::Runtime,
                "a blocking kms-fields method was called inside a current-thread tokio runtime, \
                 where blocking would stall every task: call the async method instead, or use a \
                 multi-thread runtime",
            )),
        },
    }
}

/// Poll `future` once with a waker that does nothing: a future that is not ready registers that
/// waker and is polled again (with the runtime's waker, which replaces it) by the caller.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// [`block_on`] for fallible futures, flattening the result.
pub fn run<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    block_on(future)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime() {
        assert_eq!(block_on(async { 1 }).unwrap(), 1);
        let handles: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || block_on(async move { i * 2 }).unwrap()))
            .collect();
        let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 56);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inside_a_multi_thread_runtime() {
        assert_eq!(
            block_on(async {
                tokio::task::yield_now().await;
                5
            })
            .unwrap(),
            5
        );
        let v = tokio::task::spawn_blocking(|| block_on(async { 6 }).unwrap())
            .await
            .unwrap();
        assert_eq!(v, 6);
    }

    /// Issue 14: the first poll happens outside the runtime's `block_on`; a future that is not
    /// ready then — it waits on a timer, spawns a task — still completes through the runtime,
    /// outside one and inside one (the first poll's no-op waker is replaced by the runtime's).
    #[test]
    fn futures_that_wait_after_the_first_poll_complete_on_the_runtime() {
        assert_eq!(block_on(async { 6 }).unwrap(), 6);
        let slept = block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            7
        })
        .unwrap();
        assert_eq!(slept, 7);
        // a task spawned by the first poll runs on the kms-fields runtime
        let spawned = block_on(async { tokio::spawn(async { 8 }).await.unwrap() }).unwrap();
        assert_eq!(spawned, 8);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inside = rt.block_on(async {
            tokio::task::spawn_blocking(|| {
                block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    9
                })
                .unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(inside, 9);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn inside_a_current_thread_runtime_is_a_clear_error() {
        let e = block_on(async { 1 }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Runtime);
        assert!(e.to_string().contains("current-thread"));
    }
}
