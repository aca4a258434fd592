//! The one retry policy: attempts, a first delay, and a backoff factor. It serves
//! automatic step retries now, and backend readiness and remote API calls later.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt.
    pub delay: Duration,
    /// Each later wait is the previous one times this (1.0: constant).
    pub backoff: f64,
}

impl RetryPolicy {
    /// A step with `retries: N` and `retry_delay_seconds: D`: doubling waits.
    pub(crate) fn for_step(retries: u32, delay_seconds: u64) -> Self {
        Self {
            attempts: retries + 1,
            delay: Duration::from_secs(delay_seconds),
            backoff: 2.0,
        }
    }

    /// The readiness check of the desktop app (`--skip-config`): 5 attempts, 2 s apart.
    pub fn readiness() -> Self {
        Self {
            attempts: 5,
            delay: Duration::from_secs(2),
            backoff: 1.0,
        }
    }

    /// Azure Resource Manager requests answered 5xx: 5 attempts, 2 s doubling.
    pub fn arm() -> Self {
        Self {
            attempts: 5,
            delay: Duration::from_secs(2),
            backoff: 2.0,
        }
    }

    /// The wait before attempt `next` (2 for the first retry); `None` when the
    /// attempts are used up.
    pub fn delay_before(&self, next: u32) -> Option<Duration> {
        if next < 2 || next > self.attempts {
            return None;
        }
        let factor = self
            .backoff
            .powi(i32::try_from(next - 2).unwrap_or(i32::MAX));
        // Never panics: a wait too long for a Duration is the longest one.
        let seconds = self.delay.as_secs_f64() * factor.min(1e6);
        Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_by_the_backoff_and_stop_after_the_last_attempt() {
        let p = RetryPolicy::for_step(3, 2);
        let waits: Vec<Option<u64>> = (1..=5)
            .map(|n| p.delay_before(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(waits, [None, Some(2), Some(4), Some(8), None]);
        assert_eq!(RetryPolicy::for_step(0, 5).delay_before(2), None);
        let r = RetryPolicy::readiness();
        let waits: Vec<Option<u64>> = (1..=6)
            .map(|n| r.delay_before(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(waits, [None, Some(2), Some(2), Some(2), Some(2), None]);
    }
}
