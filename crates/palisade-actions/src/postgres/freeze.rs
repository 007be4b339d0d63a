//! Freezing a server (SIGSTOP of every one of its processes) and thawing it
//! (SIGCONT): the lease guard's reversible fence.
//!
//! Why freeze and not kill when a lease runs out: a lease that lapses for a
//! moment (a link flap, a renewal that came late) is not a failover. A
//! SIGKILL there costs crash recovery, every client's connection and an
//! outage that the fault did not call for (DESIGN.md safety rule 1's
//! mirror). A frozen server acknowledges nothing, since no process of it
//! runs a single instruction, yet it keeps its sessions, its shared memory
//! and its locks, so a thaw resumes it exactly where it stopped: the write
//! that was in flight completes, nothing restarts.
//!
//! Why it is a fence: a stopped process runs no code, so no backend can
//! send a commit acknowledgement, and the stopped postmaster forks no new
//! backend (the kernel still completes TCP handshakes into the listen
//! backlog, but nobody answers them). Only SIGCONT or SIGKILL change that;
//! the guard that froze the server decides which.
//!
//! Everything here is synchronous and cheap (signals and `/proc` reads, no
//! commands), so the lease guard can run it from a plain thread within
//! milliseconds of a deadline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::DbError;
use super::fence::{alive, children_of, proc_state, server_processes};
use super::PgSite;

/// Longest we wait for the kernel to stop (or resume) every process. A
/// signal takes effect in microseconds; only a process in uninterruptible
/// sleep (`D`, e.g. in an fsync) stops later, once its I/O is done, and it
/// cannot acknowledge anything before then either. The bound is also capped
/// by [`PgSite::timeout`].
const SIGNAL_BOUND: Duration = Duration::from_secs(2);

/// How often we re-read process states while waiting for them to change.
const STATE_POLL: Duration = Duration::from_millis(1);

/// What [`PgSite::freeze_server`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum FreezeOutcome {
    /// No server process ran: nothing to freeze (a stopped server takes no
    /// writes either).
    NotRunning,
    /// Every server process is stopped (state `T`).
    Frozen {
        /// The postmaster's pid, when it was alive.
        postmaster: Option<i32>,
        /// Every other server process stopped (backends, auxiliary
        /// processes, and backends that outlived a dead postmaster).
        others: Vec<i32>,
        /// From the call until the last process was seen stopped.
        elapsed: Duration,
    },
}

/// What [`PgSite::thaw_server`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum ThawOutcome {
    /// No server process exists: nothing to thaw.
    NotRunning,
    /// Every server process was resumed and none is stopped any more.
    Thawed {
        /// The postmaster's pid, when it was alive.
        postmaster: Option<i32>,
        /// Every other server process resumed.
        others: Vec<i32>,
        /// From the call until no process was seen stopped.
        elapsed: Duration,
    },
}

/// The server's processes as `/proc` shows them, without running anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    /// No server process exists.
    Stopped,
    /// At least one server process can run: it may acknowledge writes.
    /// A server only partly stopped (a freeze under way, or somebody
    /// resumed one process) is running.
    Running,
    /// Server processes exist and every one is stopped (SIGSTOP or a
    /// tracer's stop). Who stopped them, `/proc` does not say.
    Frozen,
}

/// True for the states of a process that runs no code: stopped by a
/// signal (`T`) or a tracer (`t`).
fn is_stopped(state: Option<char>) -> bool {
    matches!(state, Some('T' | 't'))
}

/// True for a process that is gone (or a zombie: it runs no code either).
fn is_gone(state: Option<char>) -> bool {
    matches!(state, None | Some('Z' | 'X'))
}

impl PgSite {
    /// Stops every process of this server with SIGSTOP, and confirms that
    /// each one is stopped: the postmaster first, so that it forks nothing
    /// new while we look for its children, then every child (with its own
    /// process group: each child calls `setsid()`, so this also stops what
    /// it started, such as an `archive_command` shell) and every other
    /// server process of the data directory.
    ///
    /// Idempotent: freezing a frozen server confirms it is frozen.
    /// Undo with [`PgSite::thaw_server`]; a frozen server can also be
    /// killed ([`PgSite::fence_urgently`]: SIGKILL ends stopped processes).
    ///
    /// Errors: [`DbError::Io`] when we may not signal a process (not root
    /// and not its owner), [`DbError::Timeout`] when a process did not stop
    /// within the bound (the caller should kill the server: it may still
    /// run).
    #[tracing::instrument(skip_all, fields(data_dir = %self.data_dir.display()))]
    pub fn freeze_server(&self) -> Result<FreezeOutcome, DbError> {
        let started = Instant::now();
        let deadline = started + self.timeout.min(SIGNAL_BOUND);
        let pm = self.live_postmaster();
        if let Some(pm) = pm {
            self.signal_tree(pm, Signal::SIGSTOP)?;
            self.wait_states(&[pm], deadline, "the postmaster stopped (SIGSTOP)", |s| {
                is_stopped(s) || is_gone(s)
            })?;
        }
        // The postmaster is stopped, so the set of its children is final,
        // except for a fork that was under way; look again until a pass
        // finds nobody new.
        let mut others: Vec<i32> = Vec::new();
        loop {
            let found: Vec<i32> = self
                .other_processes(pm)
                .into_iter()
                .filter(|pid| !others.contains(pid))
                .collect();
            if found.is_empty() {
                break;
            }
            for &pid in &found {
                self.signal_tree(pid, Signal::SIGSTOP)?;
            }
            others.extend(found);
            if Instant::now() >= deadline {
                break;
            }
        }
        if pm.is_none() && others.is_empty() {
            return Ok(FreezeOutcome::NotRunning);
        }
        self.wait_states(
            &others,
            deadline,
            "every server process stopped (SIGSTOP)",
            |s| is_stopped(s) || is_gone(s),
        )?;
        let elapsed = started.elapsed();
        tracing::debug!(?pm, ?others, ?elapsed, "server frozen");
        Ok(FreezeOutcome::Frozen {
            postmaster: pm,
            others,
            elapsed,
        })
    }

    /// Resumes every process of this server with SIGCONT, children first
    /// and the postmaster last (so that it accepts new connections only
    /// once the processes they need run again), and confirms that none is
    /// stopped any more. Sessions carry on where they stopped; nothing
    /// restarts.
    ///
    /// Idempotent. It resumes whatever stopped the processes, so only call
    /// it to undo a freeze of your own.
    #[tracing::instrument(skip_all, fields(data_dir = %self.data_dir.display()))]
    pub fn thaw_server(&self) -> Result<ThawOutcome, DbError> {
        let started = Instant::now();
        let deadline = started + self.timeout.min(SIGNAL_BOUND);
        let pm = self.live_postmaster();
        let others = self.other_processes(pm);
        if pm.is_none() && others.is_empty() {
            return Ok(ThawOutcome::NotRunning);
        }
        for &pid in &others {
            self.signal_tree(pid, Signal::SIGCONT)?;
        }
        if let Some(pm) = pm {
            self.signal_tree(pm, Signal::SIGCONT)?;
        }
        let all: Vec<i32> = pm.into_iter().chain(others.iter().copied()).collect();
        self.wait_states(
            &all,
            deadline,
            "every server process resumed (SIGCONT)",
            |s| !is_stopped(s),
        )?;
        let elapsed = started.elapsed();
        tracing::debug!(?pm, ?others, ?elapsed, "server thawed");
        Ok(ThawOutcome::Thawed {
            postmaster: pm,
            others,
            elapsed,
        })
    }

    /// True when server processes exist and every one of them is stopped.
    pub fn is_frozen(&self) -> bool {
        self.process_state() == ProcessState::Frozen
    }

    /// Running, frozen or stopped, from `/proc` alone: no command runs, so
    /// a lease guard can ask every few milliseconds. A running postmaster
    /// answers at once (a few file reads); only a stopped or missing one
    /// needs a scan of every process.
    pub fn process_state(&self) -> ProcessState {
        let pm = self.live_postmaster();
        if let Some(pm) = pm {
            if !is_stopped(proc_state(pm)) {
                return ProcessState::Running;
            }
        }
        let others: Vec<i32> = server_processes(&self.data_dir)
            .into_iter()
            .filter(|pid| Some(*pid) != pm)
            .collect();
        if pm.is_none() && others.is_empty() {
            ProcessState::Stopped
        } else if others
            .iter()
            .all(|pid| is_stopped(proc_state(*pid)) || !alive(*pid))
        {
            ProcessState::Frozen
        } else {
            ProcessState::Running
        }
    }

    /// Every live server process but the postmaster `pm`: its children
    /// and every other process running from the data directory.
    fn other_processes(&self, pm: Option<i32>) -> Vec<i32> {
        let mut pids = pm.map(children_of).unwrap_or_default();
        for pid in server_processes(&self.data_dir) {
            if Some(pid) != pm && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends `signal` to the process group `pid` leads, if any (a child
    /// that called `setsid()` and what it started; a postmaster that
    /// `pg_ctl` made a group leader), then to `pid` itself. A process that
    /// is gone is not an error; one we may not signal is.
    fn signal_tree(&self, pid: i32, signal: Signal) -> Result<(), DbError> {
        // ESRCH: `pid` leads no group; nothing else can be in a group of
        // that id, so this reaches nobody else.
        let _ = killpg(Pid::from_raw(pid), signal);
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(DbError::Io {
                server: self.server(),
                action: match signal {
                    Signal::SIGSTOP => "sending SIGSTOP to",
                    Signal::SIGCONT => "sending SIGCONT to",
                    _ => "signalling",
                },
                path: PathBuf::from(format!("/proc/{pid}")),
                source: std::io::Error::from(errno),
            }),
        }
    }

    /// Waits until every pid's state satisfies `ok`, or fails with
    /// [`DbError::Timeout`] naming the pids that did not.
    fn wait_states(
        &self,
        pids: &[i32],
        deadline: Instant,
        what: &'static str,
        ok: impl Fn(Option<char>) -> bool,
    ) -> Result<(), DbError> {
        loop {
            let laggards: Vec<(i32, char)> = pids
                .iter()
                .filter_map(|&pid| {
                    let state = proc_state(pid);
                    (!ok(state)).then(|| (pid, state.unwrap_or('?')))
                })
                .collect();
            if laggards.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DbError::Timeout {
                    server: self.server(),
                    what,
                    timeout: self.timeout.min(SIGNAL_BOUND),
                    last: format!("processes (pid, state) {laggards:?}"),
                });
            }
            std::thread::sleep(STATE_POLL);
        }
    }
}
