//! Stopping a server so that it certainly takes no writes (the fence),
//! proving it is stopped, and starting it again.
//!
//! Why stop and not read-only mode: `default_transaction_read_only = on` is
//! a default, not a barrier. Any session may `SET default_transaction_read_only
//! = off` or `BEGIN; SET TRANSACTION READ WRITE` and write (PostgreSQL
//! documentation, "default_transaction_read_only" and "SET TRANSACTION"; the
//! test `read_only_mode_is_not_a_fence` in `tests/postgres.rs` shows it), and
//! sessions opened before the change keep their old default. A stopped
//! server takes no writes from anybody.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::net::{TcpStream, UnixStream};
use tracing::{info, warn};

use super::error::DbError;
use super::exec::Cmd;
use super::{FenceOutcome, PgSite, ShutdownMode, StartOutcome};

/// Extra time we give a `pg_ctl ... -w -t N` beyond its own N seconds before
/// we kill it: pg_ctl rounds, and runuser adds a little.
const PG_CTL_GRACE: Duration = Duration::from_secs(5);

/// How often we re-check a condition we wait for.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// Bound of one TCP or unix-socket connect attempt when checking that a
/// server no longer listens. On loopback or a LAN a refusal is immediate.
const CONNECT_PROBE: Duration = Duration::from_secs(2);

/// What `pg_ctl status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CtlStatus {
    /// Exit 0: a postmaster runs for this data directory.
    Running,
    /// Exit 3: no postmaster runs for it.
    NotRunning,
    /// Exit 4: the directory is missing or is not a cluster; no postmaster
    /// can be running from it (one started from it earlier may still run,
    /// which is why fencing also checks the listen address).
    NoCluster(String),
}

/// Whether anything answers at the server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Listener {
    /// Every address refused the connection: nothing listens.
    Refused,
    /// Something accepted a connection at this address.
    Accepting(String),
    /// We could not tell (timeout, resolution failure): not a proof.
    Unknown(String),
}

impl PgSite {
    /// `pg_ctl status`, interpreted.
    pub(super) async fn ctl_status(&self) -> Result<CtlStatus, DbError> {
        let cmd = Cmd::new("pg_ctl")
            .arg("status")
            .path_arg("-D", &self.data_dir);
        let done = self.runner().run(cmd, self.timeout).await?;
        match done.code() {
            Some(0) => Ok(CtlStatus::Running),
            Some(3) => Ok(CtlStatus::NotRunning),
            Some(4) => Ok(CtlStatus::NoCluster(done.tail())),
            _ => Err(done.into_error(&self.server())),
        }
    }

    /// Connects to the admin DSN's address (TCP, or the unix socket when
    /// the DSN names a socket directory) without speaking the protocol.
    /// This checks the address clients use, which `pg_ctl status` cannot:
    /// it only knows about the postmaster of this data directory.
    pub(super) async fn probe_listener(&self) -> Result<Listener, DbError> {
        let opts = self.admin_options()?;
        let port = opts.get_port();
        let socket_dir = opts.get_socket().cloned().or_else(|| {
            opts.get_host()
                .starts_with('/')
                .then(|| opts.get_host().into())
        });
        if let Some(dir) = socket_dir {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            return Ok(
                match tokio::time::timeout(CONNECT_PROBE, UnixStream::connect(&path)).await {
                    Ok(Ok(_)) => Listener::Accepting(path.display().to_string()),
                    Ok(Err(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                        ) =>
                    {
                        Listener::Refused
                    }
                    Ok(Err(e)) => Listener::Unknown(format!("{}: {e}", path.display())),
                    Err(_) => Listener::Unknown(format!("{}: connect timed out", path.display())),
                },
            );
        }
        let host = opts.get_host().to_owned();
        let addrs = match tokio::time::timeout(
            CONNECT_PROBE,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(e)) => return Ok(Listener::Unknown(format!("resolving {host}: {e}"))),
            Err(_) => return Ok(Listener::Unknown(format!("resolving {host}: timed out"))),
        };
        if addrs.is_empty() {
            return Ok(Listener::Unknown(format!("{host} resolves to no address")));
        }
        for addr in addrs {
            match tokio::time::timeout(CONNECT_PROBE, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => return Ok(Listener::Accepting(addr.to_string())),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Ok(Err(e)) => return Ok(Listener::Unknown(format!("{addr}: {e}"))),
                Err(_) => return Ok(Listener::Unknown(format!("{addr}: connect timed out"))),
            }
        }
        Ok(Listener::Refused)
    }

    /// True when no postmaster runs for this data directory: `pg_ctl
    /// status` says so, or the pid it goes by is not a live postmaster of
    /// this directory (dead but not yet reaped, which `pg_ctl`'s
    /// `kill(pid, 0)` still finds; or reused by another process).
    pub(super) async fn postmaster_gone(&self) -> Result<bool, DbError> {
        Ok(match self.ctl_status().await? {
            CtlStatus::NotRunning => true,
            CtlStatus::Running | CtlStatus::NoCluster(_) => self.live_postmaster().is_none(),
        })
    }

    /// The fence itself; see [`super::DatabaseControl::fence`]. `urgent`:
    /// skip the shutdown attempts and kill at once (see
    /// [`super::PgSite::fence_urgently`]).
    pub(super) async fn fence_server(&self, urgent: bool) -> Result<FenceOutcome, DbError> {
        let started = Instant::now();
        if self.postmaster_gone().await? {
            // A postmaster that died (SIGKILL, OOM killer) can leave backends
            // that finish what they were doing for their clients.
            let strays = server_processes(&self.data_dir);
            if strays.is_empty() {
                self.confirm_stopped().await?;
                return Ok(FenceOutcome::AlreadyStopped {
                    elapsed: started.elapsed(),
                });
            }
            warn!(pids = ?strays, "server processes outlived their postmaster; killing them");
            let pids = self.kill_server_processes(None).await?;
            self.confirm_stopped().await?;
            return Ok(FenceOutcome::Killed {
                pids,
                elapsed: started.elapsed(),
            });
        }

        if urgent {
            // The lease is gone: no polite shutdown. A postmaster that is
            // hung can leave backends serving old sessions for as long as a
            // shutdown attempt waits (pg_ctl counts whole seconds), which
            // the lease does not have. Kill the postmaster and every server
            // process now; PostgreSQL recovers from the WAL on next start.
            let pids = self.kill_server_processes(self.live_postmaster()).await?;
            warn!(?pids, "lease gone: killed the postmaster and its children");
            self.confirm_stopped().await?;
            return Ok(FenceOutcome::Killed {
                pids,
                elapsed: started.elapsed(),
            });
        }

        for mode in [ShutdownMode::Fast, ShutdownMode::Immediate] {
            let cmd = Cmd::new("pg_ctl")
                .arg("stop")
                .path_arg("-D", &self.data_dir)
                .arg("-m")
                .arg(mode.as_pg_ctl_arg())
                .arg("-w")
                .arg("-t")
                .arg(self.pg_ctl_wait_secs());
            match self.runner().run(cmd, self.timeout + PG_CTL_GRACE).await {
                Ok(done) if done.success() => {}
                // Handled by escalating to the next mode, or by the check
                // below when the server stopped anyway.
                Ok(done) => warn!(?mode, output = %done.tail(), "pg_ctl stop failed"),
                Err(error) => warn!(?mode, %error, "pg_ctl stop failed"),
            }
            if self.postmaster_gone().await? && server_processes(&self.data_dir).is_empty() {
                self.confirm_stopped().await?;
                return Ok(FenceOutcome::ShutDown {
                    mode,
                    elapsed: started.elapsed(),
                });
            }
        }

        // The postmaster ignores even SIGQUIT: it is hung (SIGSTOP, stuck in
        // the kernel) or its children are. Kill it and every child.
        let pids = self.kill_server_processes(self.live_postmaster()).await?;
        warn!(
            ?pids,
            "server did not stop; killed the postmaster and its children"
        );
        self.confirm_stopped().await?;
        Ok(FenceOutcome::Killed {
            pids,
            elapsed: started.elapsed(),
        })
    }

    /// Waits (up to `timeout`) until no postmaster runs for the data
    /// directory, no server process runs in it, *and* the server's address
    /// refuses connections. Each check covers a gap of the others: `pg_ctl
    /// status` misses a postmaster whose `postmaster.pid` is gone and
    /// backends that outlived their postmaster; the address check misses a
    /// server listening elsewhere.
    async fn confirm_stopped(&self) -> Result<(), DbError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let gone = self.postmaster_gone().await?;
            let strays = server_processes(&self.data_dir);
            let listener = self.probe_listener().await?;
            if gone && strays.is_empty() && listener == Listener::Refused {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let (detail, retryable) = if !gone {
                    (
                        "pg_ctl status still reports a running postmaster".to_owned(),
                        true,
                    )
                } else if !strays.is_empty() {
                    (
                        format!("server processes {strays:?} still run in the data directory"),
                        true,
                    )
                } else {
                    match listener {
                        Listener::Accepting(addr) => (
                            format!(
                                "no server process runs in this data directory, yet {addr} \
                                 accepts connections: another server answers at this server's \
                                 address"
                            ),
                            false,
                        ),
                        Listener::Unknown(why) => (
                            format!("cannot tell whether the address listens: {why}"),
                            true,
                        ),
                        Listener::Refused => ("inconsistent observations".to_owned(), true),
                    }
                };
                return Err(DbError::FenceNotConfirmed {
                    server: self.server(),
                    detail,
                    retryable,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// True when the server is fenced: no postmaster and nothing listening.
    pub(super) async fn fenced(&self) -> Result<bool, DbError> {
        Ok(self.postmaster_gone().await?
            && server_processes(&self.data_dir).is_empty()
            && self.probe_listener().await? == Listener::Refused)
    }

    /// `pg_ctl start -w`; see [`super::DatabaseControl::start`].
    pub(super) async fn start_server(&self) -> Result<StartOutcome, DbError> {
        let started = Instant::now();
        if !self.postmaster_gone().await? {
            return Ok(StartOutcome::AlreadyRunning);
        }
        self.release_stale_lock().await?;
        let mut cmd = Cmd::new("pg_ctl")
            .arg("start")
            .path_arg("-D", &self.data_dir)
            .arg("-w")
            .arg("-t")
            .arg(self.pg_ctl_wait_secs());
        cmd = match &self.log_file {
            Some(log) => cmd.arg("-l").arg(log.as_os_str()),
            None => cmd.discard_output(),
        };
        self.runner()
            .run_ok(cmd, self.timeout + PG_CTL_GRACE)
            .await?;
        info!(elapsed = ?started.elapsed(), "server started");
        Ok(StartOutcome::Started {
            elapsed: started.elapsed(),
        })
    }

    /// Makes sure a dead postmaster no longer holds the data directory's
    /// lock. PostgreSQL's lock checks (`kill(pid, 0)` on the pid in
    /// `postmaster.pid` and in the socket's `.s.PGSQL.<port>.lock`) take a
    /// zombie for a live server, so a postmaster we killed blocks `pg_ctl
    /// start` and pg_rewind's single-user crash recovery until its parent
    /// reaps it: at once when that is this process (see `reap`), but init
    /// reaps lazily on some machines (1.1–1.9 s on our CI machines, most of
    /// a hung primary's restart in place). A zombie runs no code and holds
    /// no socket; once no server process of the directory lives (nothing
    /// attaches the old shared memory) both lock files are stale and are
    /// removed at once. While a backend still lives (one in uninterruptible
    /// sleep), we wait for it, up to `timeout`.
    pub(super) async fn release_stale_lock(&self) -> Result<(), DbError> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.timeout;
        // Our own zombie (see `reap`) is gone at once.
        super::reap::reap_exited_servers();
        while proc_state(pid) == Some('Z')
            && !server_processes(&self.data_dir).is_empty()
            && Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
            super::reap::reap_exited_servers();
        }
        if proc_state(pid) == Some('Z') && server_processes(&self.data_dir).is_empty() {
            info!(
                pid,
                "dead postmaster not reaped yet by its parent; removing its stale lock files"
            );
            let pid_file = self.data_dir.join("postmaster.pid");
            // Lines 4 and 5 of postmaster.pid: the port and the first
            // socket directory, whose lock file names the same pid.
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            let mut lines = text.lines().skip(3);
            if let (Some(port), Some(dir)) = (lines.next(), lines.next()) {
                let (port, dir) = (port.trim(), dir.trim());
                if !port.is_empty() && !dir.is_empty() {
                    let lock = Path::new(dir).join(format!(".s.PGSQL.{port}.lock"));
                    let holder = std::fs::read_to_string(&lock)
                        .ok()
                        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
                    if holder.map(i32::abs) == Some(pid) {
                        self.remove_stale(&lock)?;
                    }
                }
            }
            self.remove_stale(&pid_file)?;
        }
        Ok(())
    }

    fn remove_stale(&self, path: &Path) -> Result<(), DbError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("removing", path, e)),
        }
    }

    /// The postmaster's pid from `postmaster.pid` (first line; negative in
    /// single-user mode), `None` when there is no readable pid file.
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Some(pid.abs()).filter(|pid| *pid > 1)
    }

    /// The pid of this data directory's postmaster if it is alive: the pid
    /// file's pid, checked to be a live process running from this
    /// directory (never a stranger that inherited a stale pid).
    pub(super) fn live_postmaster(&self) -> Option<i32> {
        let pid = self.postmaster_pid()?;
        (alive(pid) && is_postmaster_of(pid, &self.data_dir)).then_some(pid)
    }

    /// SIGKILLs the postmaster `pm` (if any), its children, and any other
    /// server process running in the data directory, and waits until they
    /// are gone. Returns the pids killed, the postmaster's first.
    ///
    /// Postmaster children do *not* share its process group: each calls
    /// `setsid()` in `InitPostmasterChild()` so that the postmaster can
    /// signal a child and whatever that child started (an archive_command
    /// shell) together. So we find the children by parent pid, freeze the
    /// postmaster first (SIGSTOP) so it forks no new ones while we look, and
    /// kill each child's process group, then the postmaster. Killing the
    /// children matters: a backend outlives a dead postmaster long enough to
    /// commit a client's write.
    async fn kill_server_processes(&self, pm: Option<i32>) -> Result<Vec<i32>, DbError> {
        if let Some(pm) = pm {
            let _ = kill(Pid::from_raw(pm), Signal::SIGSTOP);
            let freeze_deadline = Instant::now() + Duration::from_secs(1);
            while !matches!(proc_state(pm), None | Some('T' | 't' | 'Z' | 'X'))
                && Instant::now() < freeze_deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut children = pm.map(children_of).unwrap_or_default();
        for pid in server_processes(&self.data_dir) {
            if Some(pid) != pm && !children.contains(&pid) {
                children.push(pid);
            }
        }
        for &child in &children {
            // The group first (covers the child's own children), then the
            // child itself in case it has not called setsid() yet.
            let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
        let mut pids = Vec::with_capacity(children.len() + 1);
        if let Some(pm) = pm {
            // killpg reaches only a group pm leads (pg_ctl makes it one);
            // otherwise it fails with ESRCH and harms nobody.
            let _ = killpg(Pid::from_raw(pm), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
            pids.push(pm);
        }
        pids.extend(children);

        let deadline = Instant::now() + self.timeout;
        loop {
            let survivors: Vec<i32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
            if survivors.is_empty() {
                return Ok(pids);
            }
            if Instant::now() >= deadline {
                return Err(DbError::FenceNotConfirmed {
                    server: self.server(),
                    detail: format!("processes {survivors:?} survived SIGKILL"),
                    retryable: true,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl ShutdownMode {
    fn as_pg_ctl_arg(self) -> &'static str {
        match self {
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// The state letter from `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...),
/// `None` when no such process exists.
pub(super) fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Parent pid from `/proc/<pid>/stat`.
fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// True when `pid` runs (a zombie has exited: it holds no sockets, runs
/// no code, and only waits for its parent to reap it).
pub(super) fn alive(pid: i32) -> bool {
    !matches!(proc_state(pid), None | Some('Z' | 'X'))
}

/// Pids of all live processes, from `/proc`.
fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Every live process whose parent is `parent`.
pub(super) fn children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| proc_ppid(*pid) == Some(parent) && alive(*pid))
        .collect()
}

/// Every live server process (postmaster, backend, auxiliary process) of
/// this data directory: a `postgres` executable whose working directory is
/// the data directory (the postmaster `chdir()`s there and its children
/// inherit it). Processes whose `/proc` entries we may not read are not
/// ours to judge, and are skipped; as root we read them all.
pub(super) fn server_processes(data_dir: &Path) -> Vec<i32> {
    let Ok(want) = std::fs::canonicalize(data_dir) else {
        return Vec::new();
    };
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == want)
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
                    exe.file_name().is_some_and(|name| {
                        let name = name.to_string_lossy();
                        name.starts_with("postgres") || name.starts_with("postmaster")
                    })
                })
                && alive(*pid)
        })
        .collect()
}

/// True when `pid` is a postmaster running from `data_dir`: a postmaster
/// makes the data directory its working directory. When we may not read
/// another user's `cwd` we settle for its command name.
fn is_postmaster_of(pid: i32, data_dir: &Path) -> bool {
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => {
            let want = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
            cwd == want
        }
        Err(_) => std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmd| {
                let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
                let argv0 = String::from_utf8_lossy(argv0);
                argv0.ends_with("postgres") || argv0.ends_with("postmaster")
            })
            .unwrap_or(false),
    }
}

/// What `pg_controldata` says of a stopped server: whether it was shut down
/// cleanly, and where its last checkpoint record starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state: shut down`: a clean shutdown wrote a final
    /// checkpoint and nothing was written after it. Anything else (a crash,
    /// a kill, a standby) leaves the end of the WAL unknown from here.
    pub shut_down_cleanly: bool,
    /// `Latest checkpoint location`: after a clean shutdown, the start of
    /// the last record this server ever wrote.
    pub checkpoint_lsn: u64,
}

/// Parses `pg_controldata` output (its labels are not translated when
/// `LC_ALL=C`, which the runner sets).
pub(super) fn parse_control_data(out: &str) -> Result<ControlData, String> {
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim_start_matches(':').trim())
            .ok_or_else(|| format!("no \"{label}\" line in pg_controldata output"))
    };
    let state = field("Database cluster state")?;
    let lsn = field("Latest checkpoint location")?;
    let checkpoint_lsn = palisade_core::observe::parse_lsn(lsn)
        .ok_or_else(|| format!("\"Latest checkpoint location\" is not an LSN: {lsn:?}"))?;
    Ok(ControlData {
        shut_down_cleanly: state == "shut down",
        checkpoint_lsn,
    })
}

impl PgSite {
    /// Whether any process of this server runs (its postmaster, or a
    /// backend that outlived it), from `/proc` alone: no command is run,
    /// so a lease guard can ask every few milliseconds.
    pub fn has_server_processes(&self) -> bool {
        self.live_postmaster().is_some() || !server_processes(&self.data_dir).is_empty()
    }

    /// Reads the control file of the (stopped) server with `pg_controldata`.
    pub async fn control_data(&self) -> Result<ControlData, DbError> {
        let cmd = Cmd::new("pg_controldata")
            .env("LC_ALL", "C")
            .path_arg("-D", &self.data_dir);
        let done = self.runner().run(cmd, self.timeout).await?;
        if !done.success() {
            return Err(done.into_error(&self.server()));
        }
        parse_control_data(&done.stdout).map_err(|detail| DbError::InvalidInput {
            server: self.server(),
            what: "pg_controldata output",
            detail,
        })
    }
}

#[cfg(test)]
mod control_data_tests {
    use super::*;

    const STOPPED: &str = "pg_control version number:            1300\n\
Database cluster state:               shut down\n\
Latest checkpoint location:           0/3000148\n\
Latest checkpoint's REDO location:    0/3000148\n";

    #[test]
    fn reads_a_clean_shutdown() {
        let c = parse_control_data(STOPPED).unwrap();
        assert!(c.shut_down_cleanly);
        assert_eq!(c.checkpoint_lsn, 0x300_0148);
    }

    #[test]
    fn a_crashed_server_is_not_clean() {
        let out = STOPPED.replace("shut down", "in production");
        assert!(!parse_control_data(&out).unwrap().shut_down_cleanly);
        let standby = STOPPED.replace("shut down", "shut down in recovery");
        assert!(!parse_control_data(&standby).unwrap().shut_down_cleanly);
    }

    #[test]
    fn garbage_is_an_error_naming_the_field() {
        let e = parse_control_data("nothing here").unwrap_err();
        assert!(e.contains("Database cluster state"), "{e}");
        let bad = STOPPED.replace("0/3000148\n", "zz\n");
        let e = parse_control_data(&bad).unwrap_err();
        assert!(e.contains("Latest checkpoint location"), "{e}");
    }
}
