//! Finding a MariaDB server's process from `/proc` alone: no command, no
//! connection. The site agent (`MariaSite`) and the lease guard process
//! (which must act while the witness is dead) both need it, and both must
//! never signal a pid the kernel has reused for another program.

use std::path::{Path, PathBuf};

/// The pid in `pid_file`, if it names a live (not zombie) `mariadbd` of
/// this server ([`is_server_process`]; `defaults_file`, when given, must
/// match its command line's too).
pub fn live_server_pid(pid_file: &Path, defaults_file: Option<&Path>) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|pid| *pid > 1)?;
    (alive(pid) && is_server_process(pid, defaults_file, pid_file)).then_some(pid)
}

/// The state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...),
/// `None` when no such process exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Parent pid from `/proc/<pid>/stat`.
pub fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The command name from `/proc/<pid>/comm`.
pub fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// True when `pid` runs (a zombie has exited: it holds no sockets, no
/// files, runs no code, and only waits for its parent to reap it).
pub fn alive(pid: i32) -> bool {
    !matches!(proc_state(pid), None | Some('Z' | 'X'))
}

/// True when `pid` is a MariaDB server of this site: its executable (or,
/// when we may not read that link, its `argv[0]`) is `mariadbd` or
/// `mysqld`, and where its command line names a defaults file or pid
/// file, they are ours. A pid reused by another program, or by the other
/// server of a pair on the same host, is not.
pub fn is_server_process(pid: i32, defaults_file: Option<&Path>, pid_file: &Path) -> bool {
    let is_server_name = |path: &Path| {
        path.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            // After a package upgrade the link reads `... (deleted)`.
            let n = n.trim_end_matches(" (deleted)");
            n == "mariadbd" || n == "mysqld"
        })
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let named_server = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => is_server_name(&exe),
        Err(_) => args.first().is_some_and(|a| is_server_name(Path::new(a))),
    };
    if !named_server {
        return false;
    }
    let same = |given: &str, ours: &Path| {
        let given = PathBuf::from(given);
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        canon(&given) == canon(ours)
    };
    args.iter().all(|arg| {
        if let Some(f) = arg.strip_prefix("--defaults-file=") {
            defaults_file.is_none_or(|ours| same(f, ours))
        } else if let Some(f) = arg.strip_prefix("--pid-file=") {
            same(f, pid_file)
        } else {
            true
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_is_not_mariadbd_is_never_ours() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        assert!(!is_server_process(
            me,
            Some(Path::new("/etc/mysql/my.cnf")),
            Path::new("/run/mysqld/mysqld.pid")
        ));
    }

    #[test]
    fn a_missing_process_is_not_alive() {
        assert!(!alive(i32::MAX));
        assert_eq!(proc_state(i32::MAX), None);
    }
}
