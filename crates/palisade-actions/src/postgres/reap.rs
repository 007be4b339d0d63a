//! The site agent as the parent of its PostgreSQL server.
//!
//! `pg_ctl start` leaves the postmaster orphaned, so its parent is init, and
//! a postmaster that was killed (a fence, a hung primary) stays a zombie
//! until init reaps it. PostgreSQL takes a zombie for a live server (its
//! lock files hold the pid and `kill(pid, 0)` succeeds), so the restart in
//! place waits on init: 1.1–1.9 s on our CI machines, most of a hung
//! primary's restart, and forever in a container whose PID 1 never reaps.
//! A process that [`adopt_orphaned_servers`] becomes the parent of the
//! servers it starts (Linux's child subreaper), and reaps their zombies at
//! once with [`reap_exited_servers`].

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Makes this process the parent of the orphans of the processes it starts
/// (the postmaster `pg_ctl` leaves behind, and its backends when the
/// postmaster dies), so that it can reap them at once.
pub fn adopt_orphaned_servers() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Reaps this process's exited PostgreSQL children (zombies whose command
/// is `postgres` or `postmaster`), and returns their pids. Only those: a
/// child that tokio or the standard library started is reaped by them, and
/// reaping it here would steal its exit status. Neither ever starts
/// `postgres` directly: servers are started through `pg_ctl`, which exits.
pub fn reap_exited_servers() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Some((comm, state, ppid)) = stat(pid) else {
            continue;
        };
        if ppid != me || state != 'Z' || !(comm == "postgres" || comm == "postmaster") {
            continue;
        }
        if waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
            reaped.push(pid);
        }
    }
    reaped
}

/// `(comm, state, ppid)` from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(String, char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_stat() {
        let (comm, state, ppid) = stat(std::process::id() as i32).expect("own stat");
        assert!(!comm.is_empty());
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(ppid, nix::unistd::getppid().as_raw());
    }

    #[test]
    fn reaps_nothing_that_is_not_an_exited_server() {
        // A child of ours that exited but is not a server is left to whoever
        // started it.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        while stat(pid).is_some_and(|(_, s, _)| s != 'Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!reap_exited_servers().contains(&pid));
        assert!(child.wait().expect("still ours to wait for").success());
    }
}
