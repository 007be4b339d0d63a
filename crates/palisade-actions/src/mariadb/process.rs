//! The server process: whether it runs, the hard fence (SIGKILL), and
//! starting it read-only.
//!
//! `mariadbd` is one process (threads, no children), so killing its pid
//! stops every session at once. Which process that is comes from its pid
//! file, checked against `/proc` so that a pid reused by another program
//! (or another server's `mariadbd`) is never killed.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::Connection;
use tokio::net::{TcpStream, UnixStream};
use tracing::{info, warn};

use super::error::MariaError;
use super::server_process::{alive, live_server_pid, proc_comm, proc_ppid};
use super::{HardFenceOutcome, MariaSite, StartOutcome, POLL};

/// Bound of one TCP or unix-socket connect attempt when checking that a
/// server no longer listens. On loopback or a LAN a refusal is immediate.
const CONNECT_PROBE: Duration = Duration::from_secs(2);

/// How often the hard fence looks whether the killed process is gone: a
/// SIGKILLed `mariadbd` exits within milliseconds, and the fence's
/// confirmation is what the failover waits for.
const KILL_POLL: Duration = Duration::from_millis(5);

/// How many lines of the server log a start error quotes.
const LOG_LINES: usize = 20;

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

impl MariaSite {
    /// The pid in the pid file, if it names a live `mariadbd` of this
    /// server (see [`super::server_process::is_server_process`]).
    pub(super) fn live_server_pid(&self) -> Option<i32> {
        live_server_pid(&self.pid_file, Some(&self.defaults_file))
    }

    /// See [`MariaSite::fence_hard`].
    pub(super) async fn fence_hard_inner(&self) -> Result<HardFenceOutcome, MariaError> {
        let started = Instant::now();
        let Some(pid) = self.live_server_pid() else {
            self.confirm_stopped(None).await?;
            return Ok(HardFenceOutcome::AlreadyStopped {
                elapsed: started.elapsed(),
            });
        };
        // A supervisor that restarts a dead server (mysqld_safe) would
        // undo the fence: it goes first.
        if let Some(parent) = proc_ppid(pid).filter(|p| *p > 1) {
            if proc_comm(parent).is_some_and(|c| c == "mysqld_safe" || c == "mariadbd-safe") {
                warn!(pid = parent, "killing the server's supervisor first");
                let _ = kill(Pid::from_raw(parent), Signal::SIGKILL);
            }
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        warn!(pid, "lease gone: killed mariadbd");
        self.confirm_stopped(Some(pid)).await?;
        Ok(HardFenceOutcome::Killed {
            pid,
            elapsed: started.elapsed(),
        })
    }

    /// Waits (up to `timeout`) until `pid` (when given) is gone, no live
    /// server of this pid file runs, and the server's address refuses
    /// connections.
    async fn confirm_stopped(&self, pid: Option<i32>) -> Result<(), MariaError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let survivor = pid.filter(|p| alive(*p)).or_else(|| self.live_server_pid());
            let listener = self.probe_listener().await?;
            if survivor.is_none() && listener == Listener::Refused {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let (detail, retryable) = match (survivor, listener) {
                    (Some(p), _) => (format!("mariadbd (pid {p}) still runs"), true),
                    (None, Listener::Accepting(addr)) => (
                        format!(
                            "no mariadbd of this pid file runs, yet {addr} accepts connections: \
                             another server answers at this server's address"
                        ),
                        false,
                    ),
                    (None, Listener::Unknown(why)) => (
                        format!("cannot tell whether the address listens: {why}"),
                        true,
                    ),
                    (None, Listener::Refused) => ("inconsistent observations".to_owned(), true),
                };
                return Err(MariaError::FenceNotConfirmed {
                    server: self.server(),
                    detail,
                    retryable,
                });
            }
            tokio::time::sleep(KILL_POLL).await;
        }
    }

    /// Connects to the admin DSN's address (TCP, or its unix socket)
    /// without speaking the protocol.
    pub(super) async fn probe_listener(&self) -> Result<Listener, MariaError> {
        let opts = self.admin_options()?;
        if let Some(path) = opts.get_socket() {
            return Ok(
                match tokio::time::timeout(CONNECT_PROBE, UnixStream::connect(path)).await {
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
        let port = opts.get_port();
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

    /// See [`MariaSite::start`].
    pub(super) async fn start_inner(&self) -> Result<StartOutcome, MariaError> {
        let started = Instant::now();
        if self.live_server_pid().is_some() {
            return Ok(StartOutcome::AlreadyRunning);
        }
        if let Listener::Accepting(addr) = self.probe_listener().await? {
            return Err(MariaError::StartFailed {
                server: self.server(),
                command: self.start_command_line(),
                status: "not started".into(),
                log: format!(
                    ": no mariadbd of {} runs, yet {addr} accepts connections: another \
                     server answers at this server's address",
                    self.pid_file.display()
                ),
            });
        }
        let mut cmd = tokio::process::Command::new(&self.mariadbd);
        cmd.args(self.start_args())
            .stdin(Stdio::null())
            // Its own process group: a signal to the agent's group (a
            // terminal's Ctrl-C) does not reach the server.
            .process_group(0)
            .kill_on_drop(false);
        match &self.log_file {
            Some(path) => {
                let open = |path: &Path| OpenOptions::new().create(true).append(true).open(path);
                let out = open(path).map_err(|e| self.io("opening the log file", path, e))?;
                let err = out
                    .try_clone()
                    .map_err(|e| self.io("opening the log file", path, e))?;
                cmd.stdout(out).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let mut child = cmd.spawn().map_err(|source| MariaError::Spawn {
            server: self.server(),
            command: self.start_command_line(),
            source,
        })?;
        info!(pid = child.id(), command = %self.start_command_line(), "mariadbd spawned");

        // Dropping the child leaves it running; tokio reaps it when it
        // exits. Until it accepts connections, its exit is a failed start.
        let opts = self.admin_options()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(MariaError::StartFailed {
                    server: self.server(),
                    command: self.start_command_line(),
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            let last = match tokio::time::timeout(
                CONNECT_PROBE,
                sqlx::mysql::MySqlConnection::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = tokio::time::timeout(CONNECT_PROBE, conn.close()).await;
                    break;
                }
                Ok(Err(e)) => super::conn::redact(&e.to_string()),
                Err(_) => "connect timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                // Left running: InnoDB crash recovery may simply take
                // longer. A retry finds it running.
                return Err(MariaError::Timeout {
                    server: self.server(),
                    what: "mariadbd accepting an admin connection after start",
                    timeout: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }

        // --read-only makes it so; read it back all the same.
        let mut conn = self.connect().await?;
        let read_only = self.read_only(&mut conn).await;
        self.close(conn).await;
        if !read_only? {
            return Err(MariaError::FenceNotConfirmed {
                server: self.server(),
                detail: "started with --read-only, yet read_only reads OFF".into(),
                retryable: false,
            });
        }
        info!(elapsed = ?started.elapsed(), "mariadbd started read-only");
        Ok(StartOutcome::Started {
            elapsed: started.elapsed(),
        })
    }

    /// `mariadbd`'s arguments: the defaults file first (it must be), then
    /// read-only mode, no replication until asked, the pid file we watch,
    /// and the OS user when we are root (`mariadbd` switches to it itself,
    /// and refuses to run as root without it).
    ///
    /// `--skip-slave-start`: a restarted old writer must not replicate
    /// before its rejoin has checked for errant transactions, or the new
    /// writer would see it "streaming", count it rejoined and resume
    /// pulling from it (errant transactions included). `rejoin` and the
    /// writer's agent start replication with `START SLAVE` when it is due.
    fn start_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--defaults-file={}", self.defaults_file.display()),
            "--read-only".to_owned(),
            "--skip-slave-start".to_owned(),
            format!("--pid-file={}", self.pid_file.display()),
        ];
        if let Some(user) = self
            .os_user
            .as_deref()
            .filter(|_| nix::unistd::geteuid().is_root())
        {
            args.push(format!("--user={user}"));
        }
        args
    }

    fn start_command_line(&self) -> String {
        std::iter::once(self.mariadbd.display().to_string())
            .chain(self.start_args())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The last lines of the log file, prefixed with `: `; empty without
    /// one.
    fn log_tail(&self) -> String {
        let Some(path) = &self.log_file else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    }

    fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> MariaError {
        MariaError::Io {
            server: self.server(),
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
