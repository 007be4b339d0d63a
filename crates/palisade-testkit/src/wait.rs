//! Waiting on a condition, with a deadline and a reason: the one
//! [`wait_for`] that tests, benches, the demo and chaos-tests share.
//!
//! Never sleep for "long enough" where a condition can be awaited: poll the
//! condition until it holds, and fail naming what was awaited (and what was
//! last seen instead) once the deadline passes.

use std::fmt::Display;
use std::time::Duration;

use anyhow::{anyhow, Result};

/// The first pause between two polls; each pause doubles up to the
/// longest ([`MAX_POLL`] unless [`Patience::pause_up_to`] says otherwise),
/// so a condition that is nearly there is seen at once and a slow one is
/// not polled more than ten times a second.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two polls, by default.
const MAX_POLL: Duration = Duration::from_millis(100);

/// How long a [`wait_for`] may take, and how often it polls. A plain
/// `Duration` is a timeout with the default pacing.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    timeout: Duration,
    max_pause: Duration,
}

impl Patience {
    /// Up to `timeout`, polling at least ten times a second.
    pub fn new(timeout: Duration) -> Self {
        Patience {
            timeout,
            max_pause: MAX_POLL,
        }
    }

    /// Pauses up to `max_pause` between polls: for a poll that is costly
    /// itself (it runs processes), on a machine whose load the test
    /// measures.
    pub fn pause_up_to(self, max_pause: Duration) -> Self {
        Patience { max_pause, ..self }
    }
}

impl From<Duration> for Patience {
    fn from(timeout: Duration) -> Self {
        Patience::new(timeout)
    }
}

/// What one poll of an awaited condition found.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The condition holds: the wait returns this value.
    Ready(T),
    /// Not yet. The text says what was seen instead (empty when there is
    /// nothing to say); the last one is quoted when the wait times out.
    NotYet(String),
    /// Waiting longer cannot help (a process the condition depends on has
    /// died, say): the wait fails at once with this error.
    GiveUp(anyhow::Error),
}

/// What a poll may return: an [`Attempt`], an `Option` (`None`: not yet)
/// or a `Result` (`Err(e)`: not yet, and `e` is what was seen instead).
pub trait IntoAttempt {
    /// What the wait returns once the condition holds.
    type Value;
    /// This poll's result as an [`Attempt`].
    fn into_attempt(self) -> Attempt<Self::Value>;
}

impl<T> IntoAttempt for Attempt<T> {
    type Value = T;
    fn into_attempt(self) -> Attempt<T> {
        self
    }
}

impl<T> IntoAttempt for Option<T> {
    type Value = T;
    fn into_attempt(self) -> Attempt<T> {
        match self {
            Some(v) => Attempt::Ready(v),
            None => Attempt::NotYet(String::new()),
        }
    }
}

impl<T, E: Display> IntoAttempt for Result<T, E> {
    type Value = T;
    fn into_attempt(self) -> Attempt<T> {
        match self {
            Ok(v) => Attempt::Ready(v),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        }
    }
}

/// Polls `poll` until the condition holds and returns its value; fails with
/// `timed out after TIMEOUT waiting for: WHAT (last: ...)` once the
/// timeout has passed, or at once when a poll gives up.
///
/// The pause between polls starts at 10 ms and doubles up to 100 ms (see
/// [`Patience`]). Time is tokio's, so a test on a paused clock waits no
/// wall-clock time. A poll is an async closure, and may borrow what it
/// looks at:
///
/// ```no_run
/// # async fn demo(ready: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
/// use std::sync::atomic::Ordering;
/// use std::time::Duration;
/// palisade_testkit::wait_for("the flag to be set", Duration::from_secs(5), || async {
///     ready.load(Ordering::SeqCst).then_some(())
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn wait_for<F, R>(
    what: &str,
    patience: impl Into<Patience>,
    mut poll: F,
) -> Result<R::Value>
where
    F: AsyncFnMut() -> R,
    R: IntoAttempt,
{
    let Patience { timeout, max_pause } = patience.into();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    loop {
        let seen = match poll().await.into_attempt() {
            Attempt::Ready(v) => return Ok(v),
            Attempt::NotYet(seen) => seen,
            Attempt::GiveUp(e) => return Err(e.context(format!("waiting for: {what}"))),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(if seen.is_empty() {
                anyhow!("timed out after {timeout:?} waiting for: {what}")
            } else {
                anyhow!("timed out after {timeout:?} waiting for: {what} (last: {seen})")
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(max_pause);
    }
}

/// Prints a `--- step` line so that a long test's output tells its story.
pub fn step(what: &str) {
    eprintln!("--- {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_condition_holds() {
        let mut polls = 0;
        let v = wait_for("the third poll", Duration::from_secs(1), async || {
            polls += 1;
            (polls == 3).then_some(polls * 10)
        })
        .await
        .expect("the condition holds on the third poll");
        assert_eq!(v, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_naming_what_and_the_last_thing_seen() {
        let mut n = 0;
        let e = wait_for("a miracle", Duration::from_secs(2), async || {
            n += 1;
            Err::<(), _>(format!("poll {n} saw nothing"))
        })
        .await
        .expect_err("never holds");
        let text = format!("{e:#}");
        assert!(
            text.starts_with("timed out after 2s waiting for: a miracle (last: poll "),
            "{text}"
        );
        // 10 + 20 + 40 + 80 ms, then every 100 ms: about 23 polls in 2 s.
        assert!((20..=26).contains(&n), "{n} polls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_costly_poll_may_be_paced_slower() {
        let mut n = 0;
        let patience =
            Patience::new(Duration::from_secs(2)).pause_up_to(Duration::from_millis(250));
        let _ = wait_for("nothing", patience, async || {
            n += 1;
            None::<()>
        })
        .await;
        // 10 + 20 + 40 + 80 + 160 ms, then every 250 ms: 12 polls in 2 s.
        assert!((11..=13).contains(&n), "{n} polls");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_once() {
        let started = tokio::time::Instant::now();
        let e = wait_for("a dead process", Duration::from_secs(60), || async {
            Attempt::<()>::GiveUp(anyhow!("it exited"))
        })
        .await
        .expect_err("gives up");
        assert_eq!(format!("{e:#}"), "waiting for: a dead process: it exited");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
