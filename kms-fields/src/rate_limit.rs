//! A requests-per-second limit on KMS calls (KMS quotas), shared by every call made through one
//! [`Kms`](crate::Kms) handle made with [`Kms::with_rate_limit`](crate::Kms::with_rate_limit).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces calls `1 / rate` seconds apart (no bursts): each call takes the next free slot.
pub(crate) struct RateLimiter {
    every: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `None` for a rate that is not a positive number.
    pub(crate) fn new(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then(|| Self {
            every: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Wait for the next slot.
    pub(crate) async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    pub(crate) fn per_second(&self) -> f64 {
        1.0 / self.every.as_secs_f64()
    }
}
