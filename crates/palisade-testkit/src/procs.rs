//! Processes as `/proc` shows them: is a PID alive, what are its children,
//! which process is a data directory's postmaster. A [`Proc`] carries its
//! start time as well as its PID, so that a PID the kernel has handed to an
//! unrelated process since is never signalled.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process: its PID plus its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    /// The process id.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

/// What `/proc/<pid>/stat` says about a process.
pub(crate) struct ProcStat {
    /// `R`, `S`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: i32,
    pub start_time: u64,
}

pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The live process with this PID. A zombie is not alive: the container's
/// init may take its time to reap an orphan (a killed postmaster).
pub fn live_proc(pid: i32) -> Option<Proc> {
    let stat = proc_stat(pid)?;
    (stat.state != 'Z' && stat.state != 'X').then_some(Proc {
        pid,
        start_time: stat.start_time,
    })
}

/// Whether `pid` is a live process (see [`live_proc`]).
pub fn alive(pid: i32) -> bool {
    live_proc(pid).is_some()
}

/// Whether `pid` is a zombie, waiting to be reaped.
pub(crate) fn is_zombie(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(stat) if stat.state == 'Z')
}

impl Proc {
    /// Whether this very process (same PID, same start) still lives.
    pub fn alive(&self) -> bool {
        live_proc(self.pid).is_some_and(|now| now == *self)
    }

    /// Sends `signal` if this very process still lives; returns whether it
    /// did.
    pub fn signal(&self, signal: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), signal).is_ok()
    }
}

/// The live direct children of `parent` (a postmaster's backends and
/// auxiliary processes).
pub fn children_of(parent: i32) -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = proc_stat(pid)?;
            (stat.ppid == parent && stat.state != 'Z' && stat.state != 'X').then_some(Proc {
                pid,
                start_time: stat.start_time,
            })
        })
        .collect()
}

/// The running postmaster of the cluster in `data_dir`: the PID in
/// `postmaster.pid`, if that process is alive and names `data_dir` on its
/// command line (a PID the kernel reused is never taken for it).
pub fn postmaster(data_dir: &Path) -> Option<Proc> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let proc = live_proc(pid)?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let data_dir = data_dir.to_string_lossy();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg) == data_dir)
        .then_some(proc)
}

/// The postmaster of `data_dir` and all its children, postmaster first (to
/// freeze or kill a whole server at once, as a VM pause or a host crash
/// would); empty when the server does not run.
pub fn server_processes(data_dir: &Path) -> Vec<Proc> {
    match postmaster(data_dir) {
        Some(pm) => std::iter::once(pm).chain(children_of(pm.pid)).collect(),
        None => Vec::new(),
    }
}

/// Waits until every process of `procs` is gone; SIGKILLs whatever is left
/// after `grace`, so that no process outlives a test.
pub(crate) fn wait_gone(procs: &[Proc], grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let alive: Vec<Proc> = procs.iter().copied().filter(Proc::alive).collect();
        if alive.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for proc in alive {
                tracing::warn!(
                    pid = proc.pid,
                    "process still alive after {grace:?}; SIGKILL"
                );
                proc.signal(Signal::SIGKILL);
            }
            return;
        }
        // Synchronous on purpose: called from `Drop`, where nothing can be
        // awaited.
        std::thread::sleep(Duration::from_millis(20));
    }
}
