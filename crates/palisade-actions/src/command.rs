//! Running an operator-configured command: app restart / stop / start,
//! config reload, STONITH hooks.
//!
//! Commands are argv vectors, never shell strings, so a site name or an
//! address interpolated into an argument cannot become shell syntax (an
//! operator who wants a shell writes `["sh", "-c", "…"]` explicitly). Each
//! runs in its own process group with a timeout; on timeout the whole group
//! gets `SIGTERM`, then `SIGKILL` after a grace period, so a wrapper script's
//! children do not outlive it. Output is captured but bounded (the last
//! [`DEFAULT_OUTPUT_LIMIT`] bytes of each stream are kept: the end of a log
//! is where the error is).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of each of stdout and stderr kept by default (the tail).
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

/// How long we keep reading a command's pipes after it exited. A restart
/// script that leaves a daemon running in the background hands it our pipes;
/// waiting for their EOF would wait for the daemon's death.
const PIPE_DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// A configured command. (The daemon's config maps its own TOML keys onto
/// this; it is not itself a config format.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no
    /// slash.
    pub argv: Vec<String>,
    /// Extra environment variables, added to palisade's own environment.
    pub env: Vec<(String, String)>,
    /// Working directory; palisade's own when `None`.
    pub cwd: Option<PathBuf>,
    /// How long the command may run before its process group is killed.
    pub timeout: Duration,
    /// After the timeout, how long `SIGTERM` gets before `SIGKILL`.
    pub kill_grace: Duration,
    /// Bytes kept from the end of each of stdout and stderr.
    pub output_limit: usize,
}

fn default_kill_grace() -> Duration {
    Duration::from_secs(2)
}

impl CommandSpec {
    /// A command with the given argv and timeout, default grace and limits.
    pub fn new<I, S>(argv: I, timeout: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            timeout,
            kill_grace: default_kill_grace(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// Adds one environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command as a human reads it in logs and errors (argv joined,
    /// arguments with spaces quoted).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The command, as displayed.
    pub command: String,
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// The tail of stdout (lossy UTF-8).
    pub stdout: String,
    /// The tail of stderr (lossy UTF-8).
    pub stderr: String,
    /// True when stdout or stderr was longer than the limit and cut.
    pub truncated: bool,
    /// Wall time from spawn to exit (serialised as milliseconds).
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

impl CommandOutput {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why a command did not run to a successful end. Each variant names the
/// command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The configuration is unusable (empty argv). Fatal.
    #[error("invalid command {command:?}: {reason}")]
    Invalid {
        /// The command.
        command: String,
        /// Why.
        reason: &'static str,
    },
    /// The program could not be started (not found, not executable). Fatal.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Waiting for the process failed. Retryable.
    #[error("lost track of `{command}`: {source}")]
    Wait {
        /// The command.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// It ran longer than its timeout and its process group was killed.
    /// Retryable: a hung restart may well succeed the second time.
    #[error("`{command}` timed out after {timeout:?} and was killed; stderr tail: {}", tail(&output.stderr))]
    Timeout {
        /// The command.
        command: String,
        /// The configured timeout.
        timeout: Duration,
        /// What it printed before it was killed.
        output: Box<CommandOutput>,
    },
    /// It exited non-zero or was killed by a signal (only from
    /// [`run_checked`]). Retryable: whether a retry helps is the command's
    /// business, and a bounded retry of an app restart is what an operator
    /// would do.
    #[error("`{command}` failed ({}); stderr tail: {}", status(output), tail(&output.stderr))]
    Failed {
        /// The command.
        command: String,
        /// Its output and status.
        output: Box<CommandOutput>,
    },
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

fn status(o: &CommandOutput) -> String {
    match (o.code, o.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "unknown status".into(),
    }
}

fn tail(s: &str) -> &str {
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(500);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl CommandError {
    /// True when running the command again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CommandError::Wait { .. } | CommandError::Timeout { .. } | CommandError::Failed { .. }
        )
    }
}

impl crate::retry::Retryable for CommandError {
    fn is_retryable(&self) -> bool {
        CommandError::is_retryable(self)
    }
}

/// Keeps the last `limit` bytes written to it.
struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        if self.buf.len() > self.limit {
            let excess = self.buf.len() - self.limit;
            self.buf.drain(..excess);
            self.truncated = true;
        }
    }

    fn into_string(self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, into: &mut Tail) {
    let Some(mut reader) = reader else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => into.push(&chunk[..n]),
        }
    }
}

/// Runs the command to its end (or its timeout) and returns how it ended,
/// whatever the exit code. Errors only when it could not be started or was
/// killed on timeout.
#[tracing::instrument(skip_all, fields(command = %spec.display()))]
pub async fn run(spec: &CommandSpec) -> Result<CommandOutput, CommandError> {
    let command = spec.display();
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(CommandError::Invalid {
            command,
            reason: "argv is empty",
        });
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout can kill the command's
        // children too, and a terminal's Ctrl-C aimed at palisade does not.
        .process_group(0)
        // If palisade itself is cancelled mid-command, do not leak it.
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out = Tail::new(spec.output_limit);
    let mut err = Tail::new(spec.output_limit);

    let (status, timed_out) = {
        let readers = async {
            tokio::join!(pump(stdout, &mut out), pump(stderr, &mut err));
        };
        tokio::pin!(readers);
        let mut readers_done = false;
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);

        let mut timed_out = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                () = &mut readers, if !readers_done => readers_done = true,
                () = &mut deadline => {
                    if timed_out {
                        signal_group(pgid, Signal::SIGKILL);
                        // Far future: from now on only the exit wakes us.
                        deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                    } else {
                        timed_out = true;
                        tracing::warn!(
                            timeout_ms = spec.timeout.as_millis() as u64,
                            "command timed out; killing its process group"
                        );
                        signal_group(pgid, Signal::SIGTERM);
                        deadline.as_mut().reset(tokio::time::Instant::now() + spec.kill_grace);
                    }
                }
            }
        };
        if timed_out {
            // The leader is gone; make sure none of its children linger
            // either, even ones that ignored SIGTERM.
            signal_group(pgid, Signal::SIGKILL);
        }
        if !readers_done {
            let _ = tokio::time::timeout(PIPE_DRAIN_AFTER_EXIT, &mut readers).await;
        }
        (status, timed_out)
    };
    let duration = started.elapsed();
    let status = status.map_err(|source| CommandError::Wait {
        command: command.clone(),
        source,
    })?;

    use std::os::unix::process::ExitStatusExt;
    let truncated = out.truncated || err.truncated;
    let output = CommandOutput {
        command: command.clone(),
        code: status.code(),
        signal: status.signal(),
        stdout: out.into_string(),
        stderr: err.into_string(),
        truncated,
        duration,
    };
    if timed_out {
        return Err(CommandError::Timeout {
            command,
            timeout: spec.timeout,
            output: Box::new(output),
        });
    }
    tracing::debug!(
        code = ?output.code,
        duration_ms = duration.as_millis() as u64,
        "command finished"
    );
    Ok(output)
}

/// Like [`run`], but a non-zero exit is an error too.
pub async fn run_checked(spec: &CommandSpec) -> Result<CommandOutput, CommandError> {
    let output = run(spec).await?;
    if output.success() {
        Ok(output)
    } else {
        Err(CommandError::Failed {
            command: output.command.clone(),
            output: Box::new(output),
        })
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (group already gone) is the outcome we want.
        let _ = killpg(pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(4);
        t.push(b"abc");
        t.push(b"defg");
        assert!(t.truncated);
        assert_eq!(t.into_string(), "defg");
    }

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let c = CommandSpec::new(["sh", "-c", "echo hi"], Duration::from_secs(1));
        assert_eq!(c.display(), "sh -c \"echo hi\"");
    }
}
