//! The lease guard's hold on a MariaDB server (`--mariadb-pid-file`):
//! freeze, thaw and kill the `mariadbd` its pid file names, with signals
//! and `/proc` reads only (no SQL, no admin account: the guard must work
//! when nothing else does).
//!
//! * **Which process.** The pid in the pid file, acted on only while it is
//!   a live `mariadbd` (or `mysqld`): its executable's name (or, when we
//!   may not read that link, `/proc/<pid>/comm`) says so, and a
//!   `--pid-file=` on its command line names this pid file. A pid file
//!   left by a killed server whose pid now belongs to another program, or
//!   to the other server of a pair on the same host, is no server: it is
//!   never signalled. The same check as `MariaSite`'s hard fence
//!   (`palisade_actions::mariadb::server_process`).
//!   A starting server is seen once it writes its pid file, which it does
//!   before it serves its first client.
//! * **Freeze** is SIGSTOP of `mariadbd` alone, confirmed by its state
//!   `T`. It is one process (threads, no children), so every session stops
//!   at once. A `mysqld_safe` parent is left running: it is a shell waiting
//!   for its child, runs no database code, and a stopped child is not an
//!   exited one, so it restarts nothing.
//! * **Thaw** is SIGCONT, confirmed by the state leaving `T`: sessions go
//!   on where they stopped, nothing restarts.
//! * **Kill** is SIGKILL (a frozen `mariadbd` too), confirmed by the
//!   process being gone (a zombie counts as gone: it runs no code and holds
//!   no socket). A `mysqld_safe` (`mariadbd-safe`) parent is killed first,
//!   as `MariaSite` does, or it would start the server again at once,
//!   writable. A service manager that restarts the server (systemd's
//!   `Restart=`) must not be configured to: the guard would kill each new
//!   server again while the order stays hard.
//! * **No exit on a missing pid file.** A stopped `mariadbd` has none, and
//!   its directory (`/run/mysqld`, systemd's `RuntimeDirectory=`) goes
//!   away when the service stops; the guard keeps watching for the next
//!   server and exits only on SIGTERM or SIGINT.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use palisade_actions::mariadb::server_process::{
    live_server_pid, proc_comm, proc_ppid, proc_state,
};
use palisade_actions::postgres::ProcessState;

use super::Signalled;

/// Longest we wait for SIGSTOP or SIGCONT to take effect: microseconds,
/// unless the process is in an uninterruptible sleep (an fsync), where it
/// acknowledges nothing either.
const SIGNAL_BOUND: Duration = Duration::from_secs(2);

/// Longest we wait for a SIGKILLed `mariadbd` to be gone (it exits within
/// milliseconds; freeing a large buffer pool may take a little longer).
const KILL_BOUND: Duration = Duration::from_secs(5);

/// How often we re-read a process's state while waiting for it to change.
const STATE_POLL: Duration = Duration::from_millis(1);

/// The `mariadbd` of one pid file, as the guard sees it.
#[derive(Clone, Debug)]
pub(super) struct MariaProcess {
    pid_file: PathBuf,
}

/// Why signalling `mariadbd` failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum MariaGuardError {
    /// The kernel refused the signal (EPERM: neither root nor the server's
    /// owner). Fatal until the guard runs as a user that may signal it.
    #[error("mariadbd (pid {pid}, pid file {}): sending {signal}: {errno}", pid_file.display())]
    Signal {
        pid: i32,
        pid_file: PathBuf,
        signal: Signal,
        errno: Errno,
    },
    /// The signal was sent but its effect was not seen within the bound.
    /// Retryable.
    #[error("mariadbd (pid {pid}, pid file {}): not {what} within {bound:?} (state {state})", pid_file.display())]
    Timeout {
        pid: i32,
        pid_file: PathBuf,
        what: &'static str,
        bound: Duration,
        state: char,
    },
}

impl fmt::Display for MariaProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mariadbd of pid file {}", self.pid_file.display())
    }
}

impl MariaProcess {
    pub(super) fn new(pid_file: PathBuf) -> Self {
        MariaProcess { pid_file }
    }

    /// The pid the pid file names, if it is a live server of this pid file.
    pub(super) fn live_pid(&self) -> Option<i32> {
        live_server_pid(&self.pid_file, None)
    }

    /// Running, frozen or stopped, from the pid file and `/proc` alone.
    pub(super) fn process_state(&self) -> ProcessState {
        match self.live_pid() {
            None => ProcessState::Stopped,
            Some(pid) if is_stopped(proc_state(pid)) => ProcessState::Frozen,
            Some(_) => ProcessState::Running,
        }
    }

    /// SIGSTOP, confirmed; `None` when no server runs. Idempotent.
    pub(super) fn freeze(&self) -> Result<Option<Signalled>, MariaGuardError> {
        self.signal_and_wait(Signal::SIGSTOP, "stopped (SIGSTOP)", |s| {
            is_stopped(s) || is_gone(s)
        })
    }

    /// SIGCONT, confirmed; `None` when no server runs. Idempotent.
    pub(super) fn thaw(&self) -> Result<Option<Signalled>, MariaGuardError> {
        self.signal_and_wait(Signal::SIGCONT, "resumed (SIGCONT)", |s| !is_stopped(s))
    }

    /// SIGKILL of a `mysqld_safe` parent, then of `mariadbd`, and waits
    /// until it is gone. Returns the time taken; blocks up to
    /// [`KILL_BOUND`].
    pub(super) fn kill(&self) -> Result<Duration, MariaGuardError> {
        let started = Instant::now();
        let Some(pid) = self.live_pid() else {
            return Ok(started.elapsed());
        };
        if let Some(parent) = proc_ppid(pid).filter(|p| *p > 1) {
            if proc_comm(parent).is_some_and(|c| c == "mysqld_safe" || c == "mariadbd-safe") {
                tracing::warn!(pid = parent, pid_file = %self.pid_file.display(),
                    "lease guard: killing mariadbd's supervisor first, or it would restart it");
                let _ = kill(Pid::from_raw(parent), Signal::SIGKILL);
            }
        }
        self.send(pid, Signal::SIGKILL)?;
        self.wait(
            pid,
            started + KILL_BOUND,
            "gone (SIGKILL)",
            KILL_BOUND,
            is_gone,
        )?;
        Ok(started.elapsed())
    }

    fn signal_and_wait(
        &self,
        signal: Signal,
        what: &'static str,
        ok: impl Fn(Option<char>) -> bool,
    ) -> Result<Option<Signalled>, MariaGuardError> {
        let started = Instant::now();
        let Some(pid) = self.live_pid() else {
            return Ok(None);
        };
        self.send(pid, signal)?;
        self.wait(pid, started + SIGNAL_BOUND, what, SIGNAL_BOUND, ok)?;
        Ok(Some(Signalled {
            pid: Some(pid),
            processes: 1,
            elapsed: started.elapsed(),
        }))
    }

    fn send(&self, pid: i32, signal: Signal) -> Result<(), MariaGuardError> {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(MariaGuardError::Signal {
                pid,
                pid_file: self.pid_file.clone(),
                signal,
                errno,
            }),
        }
    }

    fn wait(
        &self,
        pid: i32,
        deadline: Instant,
        what: &'static str,
        bound: Duration,
        ok: impl Fn(Option<char>) -> bool,
    ) -> Result<(), MariaGuardError> {
        loop {
            let state = proc_state(pid);
            if ok(state) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MariaGuardError::Timeout {
                    pid,
                    pid_file: self.pid_file.clone(),
                    what,
                    bound,
                    state: state.unwrap_or('?'),
                });
            }
            std::thread::sleep(STATE_POLL);
        }
    }
}

/// Stopped by a signal (`T`) or a tracer (`t`): runs no code.
fn is_stopped(state: Option<char>) -> bool {
    matches!(state, Some('T' | 't'))
}

/// Gone, or a zombie (runs no code, holds no socket).
fn is_gone(state: Option<char>) -> bool {
    matches!(state, None | Some('Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_another_program_is_no_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("mysqld.pid");
        let site = MariaProcess::new(pid_file.clone());
        assert_eq!(site.process_state(), ProcessState::Stopped, "no pid file");
        // Our own pid: alive, but not mariadbd; never signalled.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).expect("write");
        assert_eq!(site.live_pid(), None);
        assert_eq!(site.process_state(), ProcessState::Stopped);
        assert!(site.freeze().expect("nothing to freeze").is_none());
        std::fs::write(&pid_file, "not a pid\n").expect("write");
        assert_eq!(site.live_pid(), None);
        std::fs::write(&pid_file, "1\n").expect("write");
        assert_eq!(site.live_pid(), None, "init is never the server");
    }
}
