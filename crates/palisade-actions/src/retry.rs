//! Retrying an effect with exponential backoff.
//!
//! Front-door repointers and webhooks talk to things that restart, reload and
//! drop connections; a failover must not give up on the first refused
//! connection, and must not hammer a receiver either. Only errors that say
//! they are retryable ([`Retryable::is_retryable`]) are retried: an answer
//! that will not change on a second try ("No such backend", HTTP 400) fails
//! at once.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Whether an error is worth another attempt.
pub trait Retryable {
    /// True for transient failures (connection refused or reset, timeout,
    /// HTTP 5xx); false for answers that a retry will not change.
    fn is_retryable(&self) -> bool;
}

/// How often and how patiently to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total number of attempts, the first one included; `1` never retries.
    /// `0` is treated as `1`.
    pub attempts: u32,
    /// Delay before the second attempt; doubled before each further one.
    pub initial_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
    /// Spread each delay randomly over `[delay/2, delay]`, so that several
    /// witnesses retrying the same receiver do not retry in lock step.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// Five attempts, 100 ms doubling up to 2 s, with jitter: about 3 s of
    /// patience, small next to a failover's budget.
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt.
    pub fn once() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The delay to wait after failed attempt number `attempt` (1-based),
    /// before jitter.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let delay = self.initial_delay.saturating_mul(1u32 << exp);
        delay.min(self.max_delay)
    }

    fn jittered(&self, delay: Duration) -> Duration {
        if !self.jitter || delay.is_zero() {
            return delay;
        }
        // `RandomState` is seeded randomly per instance by std: good enough
        // for spreading retries, and saves a dependency on `rand`.
        let random = RandomState::new().build_hasher().finish();
        let half = delay / 2;
        let spread = half.as_nanos() as u64;
        let extra = if spread == 0 {
            0
        } else {
            random % (spread + 1)
        };
        half + Duration::from_nanos(extra)
    }
}

/// The result of [`retry`]: the last outcome, and how many attempts it took.
#[derive(Debug)]
pub struct Attempts<T> {
    /// The value of the successful attempt, or the error of the last one.
    pub value: T,
    /// How many attempts were made (at least 1).
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the
/// policy's attempts are used up. `op` gets the 1-based attempt number.
///
/// Each retried failure is logged at `WARN` here, because this is where it is
/// handled; the final error is returned to the caller to log or propagate.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: F,
) -> Result<Attempts<T>, Attempts<E>>
where
    E: Retryable + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(value) => {
                return Ok(Attempts {
                    value,
                    attempts: attempt,
                })
            }
            Err(err) if err.is_retryable() && attempt < attempts => {
                let delay = policy.jittered(policy.delay_after(attempt));
                tracing::warn!(
                    what,
                    attempt,
                    of = attempts,
                    delay_ms = delay.as_millis() as u64,
                    error = %err,
                    "retrying after a transient failure"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(err) => {
                return Err(Attempts {
                    value: err,
                    attempts: attempt,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e({})", self.0)
        }
    }
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            jitter: true,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            jitter: false,
        };
        let d: Vec<u64> = (1..=5)
            .map(|a| p.delay_after(a).as_millis() as u64)
            .collect();
        assert_eq!(d, vec![100, 200, 400, 700, 700]);
        assert_eq!(p.delay_after(1000), Duration::from_millis(700));
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let p = fast(3);
        for _ in 0..1000 {
            let j = p.jittered(Duration::from_millis(100));
            assert!(
                j >= Duration::from_millis(50) && j <= Duration::from_millis(100),
                "{j:?}"
            );
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = Cell::new(0);
        let r = retry(&fast(5), "t", |_| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(E(true))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        let ok = r.expect("third attempt succeeds");
        assert_eq!((ok.value, ok.attempts), (3, 3));
    }

    #[tokio::test]
    async fn fatal_errors_are_not_retried() {
        let r: Result<Attempts<()>, _> = retry(&fast(5), "t", |_| async { Err(E(false)) }).await;
        assert_eq!(r.expect_err("fatal").attempts, 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let r: Result<Attempts<()>, _> = retry(&fast(4), "t", |_| async { Err(E(true)) }).await;
        assert_eq!(r.expect_err("exhausted").attempts, 4);
    }
}
