//! Running PostgreSQL's command-line tools (`pg_ctl`, `pg_rewind`,
//! `pg_basebackup`) for one server: as the cluster's OS user, with a
//! deadline, with their output captured for errors.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::conninfo::redact;
use super::error::DbError;

/// How many lines of a command's output an error message carries.
const TAIL_LINES: usize = 12;

/// libpq and PostgreSQL environment variables that choose where a tool
/// connects or which cluster it acts on.
const LIBPQ_REDIRECTS: [&str; 11] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGTARGETSESSIONATTRS",
    "PGDATA",
];

/// One command to run against a server.
pub(super) struct Cmd {
    /// Binary name inside the site's `bin_dir`, e.g. `pg_ctl`.
    program: &'static str,
    args: Vec<OsString>,
    /// Extra environment, e.g. `PGPASSWORD` (kept out of argv, which any
    /// local user can read from `/proc`).
    env: Vec<(&'static str, String)>,
    /// Send stdout and stderr to `/dev/null` instead of capturing them.
    /// Needed for `pg_ctl start` without a log file: the postmaster inherits
    /// pg_ctl's stdout and would hold our pipe open for its whole life.
    discard_output: bool,
}

impl Cmd {
    /// A command running `program` from the site's binary directory.
    pub(super) fn new(program: &'static str) -> Self {
        Self {
            program,
            args: Vec::new(),
            env: Vec::new(),
            discard_output: false,
        }
    }

    /// Appends one argument.
    pub(super) fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends `name` immediately followed by `path` (`-D/data`), so the
    /// pair stays one argument whatever characters the path holds.
    pub(super) fn path_arg(mut self, name: &str, path: &Path) -> Self {
        let mut arg = OsString::from(name);
        arg.push(path.as_os_str());
        self.args.push(arg);
        self
    }

    /// Sets an environment variable for the command only.
    pub(super) fn env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// Discards stdout and stderr (see the field).
    pub(super) fn discard_output(mut self) -> Self {
        self.discard_output = true;
        self
    }
}

/// Who runs the command and on behalf of which server.
pub(super) struct Runner<'a> {
    /// Directory holding the PostgreSQL binaries.
    pub bin_dir: &'a Path,
    /// `Some(user)` when commands must run as that user through `runuser`
    /// (we are root and PostgreSQL refuses to run as root).
    pub run_as: Option<&'a str>,
    /// Names the server in errors: its data directory.
    pub server: String,
}

/// A command that ran to completion, successfully or not.
pub(super) struct Finished {
    /// The command line, passwords redacted.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code, `None` when killed by a signal.
    pub(super) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// True for exit code 0.
    pub(super) fn success(&self) -> bool {
        self.status.success()
    }

    /// The last lines of stdout and stderr, for messages.
    pub(super) fn tail(&self) -> String {
        tail(&self.stdout, &self.stderr)
    }

    /// Turns a failed run into [`DbError::CommandFailed`].
    pub(super) fn into_error(self, server: &str) -> DbError {
        DbError::CommandFailed {
            server: server.to_owned(),
            output: prefixed(&self.tail()),
            status: self.status.to_string(),
            command: self.command,
        }
    }
}

impl Runner<'_> {
    /// Runs `cmd`, killing its whole process group if it has not finished
    /// after `timeout` (or if the returned future is dropped). Returns the
    /// finished command whatever its exit code: callers decide what a code
    /// means (`pg_ctl status` exits 3 for "not running").
    pub(super) async fn run(&self, cmd: Cmd, timeout: Duration) -> Result<Finished, DbError> {
        let program = self.bin_dir.join(cmd.program);
        let mut shown = vec![program.display().to_string()];
        shown.extend(cmd.args.iter().map(|a| redact(&a.to_string_lossy())));
        let command = shown.join(" ");

        let mut proc = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&program);
                // The test process's or daemon's working directory may not be
                // readable by the cluster's user; pg_ctl then warns and some
                // tools refuse to run. All our paths are absolute.
                c.current_dir("/");
                c
            }
            None => Command::new(&program),
        };
        proc.args(&cmd.args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            // Own process group, so that a timeout kills runuser, pg_ctl and
            // whatever they started. The postmaster itself is not affected:
            // pg_ctl starts it with setsid().
            .process_group(0);
        // Ambient libpq settings of the daemon's environment must not
        // redirect our tools: every connection is named explicitly. (The
        // password file and TLS settings are kept: they supply credentials,
        // not destinations.)
        for var in LIBPQ_REDIRECTS {
            proc.env_remove(var);
        }
        for (key, value) in &cmd.env {
            proc.env(key, value);
        }
        if cmd.discard_output {
            proc.stdout(Stdio::null()).stderr(Stdio::null());
        } else {
            proc.stdout(Stdio::piped()).stderr(Stdio::piped());
        }

        let mut child = proc.spawn().map_err(|source| DbError::Spawn {
            server: self.server.clone(),
            command: command.clone(),
            source,
        })?;
        let mut killer = GroupKiller {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        };
        let mut stdout_pipe = child.stdout.take();
        let mut stderr_pipe = child.stderr.take();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let waited = tokio::time::timeout(timeout, async {
            let (out, err, status) = tokio::join!(
                read_all(&mut stdout_pipe, &mut stdout),
                read_all(&mut stderr_pipe, &mut stderr),
                child.wait()
            );
            // A read error only loses output; the exit status is what counts.
            let _ = (out, err);
            status
        })
        .await;
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        match waited {
            Ok(Ok(status)) => {
                // The group leader is gone and reaped; its id may be reused.
                killer.pgid = None;
                Ok(Finished {
                    command,
                    status,
                    stdout,
                    stderr,
                })
            }
            Ok(Err(source)) => Err(DbError::Spawn {
                server: self.server.clone(),
                command,
                source,
            }),
            Err(_elapsed) => {
                drop(killer);
                Err(DbError::CommandTimedOut {
                    server: self.server.clone(),
                    command,
                    timeout,
                    output: prefixed(&tail(&stdout, &stderr)),
                })
            }
        }
    }

    /// Runs `cmd` and fails unless it exits 0.
    pub(super) async fn run_ok(&self, cmd: Cmd, timeout: Duration) -> Result<Finished, DbError> {
        let done = self.run(cmd, timeout).await?;
        if done.success() {
            Ok(done)
        } else {
            Err(done.into_error(&self.server))
        }
    }
}

/// SIGKILLs a process group when dropped, unless disarmed by clearing
/// `pgid` (done once the leader exited normally, after which the id could
/// name somebody else's group).
struct GroupKiller {
    pgid: Option<i32>,
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (already gone) is the common, harmless case.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

async fn read_all<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    match pipe {
        Some(pipe) => pipe.read_to_end(buf).await.map(|_| ()),
        None => Ok(()),
    }
}

/// The last [`TAIL_LINES`] non-empty lines of stdout then stderr, joined
/// with ` | ` so that a message stays one log line.
pub(super) fn tail(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    redact(&lines[start..].join(" | "))
}

fn prefixed(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}
