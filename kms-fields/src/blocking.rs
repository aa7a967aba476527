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

use std::future::Future;
use std::sync::OnceLock;

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
    match Handle::try_current() {
        Err(_) => Ok(runtime()?.block_on(future)),
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::MultiThread => {
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

    #[tokio::test(flavor = "current_thread")]
    async fn inside_a_current_thread_runtime_is_a_clear_error() {
        let e = block_on(async { 1 }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Runtime);
        assert!(e.to_string().contains("current-thread"));
    }
}
