//! Repointing an HAProxy front door through its runtime API.
//!
//! The leader moves users to the surviving site by putting the surviving
//! site's server `ready` and every other server of the backend in `maint`
//! (`set server BACKEND/SERVER state …`), or by changing a server's address
//! (`set server … addr`), and then reads `show servers state` back to check
//! HAProxy really did it. The API is reached over the `stats socket` (unix
//! path or `host:port`); each command opens its own connection, sends one
//! `\n`-terminated line, and reads the answer until HAProxy closes (the
//! non-interactive mode, which needs no prompt parsing).
//!
//! Runtime API changes live in the running process only: an HAProxy reload
//! or restart reverts them to the config file unless the config uses
//! `server-state-file` / `load-server-state-from-file`. The repoint step is
//! idempotent and verified, so re-running it after a reload restores the
//! routing; deployments should still pair it with a state file. Do not
//! start the standby's server as `disabled` in the config: that is a
//! configured maintenance, which HAProxy 2.6's runtime API cannot clear, so
//! the repoint could never make it `ready` (docs/configuration.md,
//! `[[front_door]]`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::retry::{self, RetryPolicy, Retryable};

/// `srv_admin_state` bit: forced into maintenance (`set server … state maint`).
pub const ADMIN_FMAINT: u32 = 0x01;
/// `srv_admin_state` bit: maintenance inherited from a tracked server.
pub const ADMIN_IMAINT: u32 = 0x02;
/// `srv_admin_state` bit: disabled in the configuration.
pub const ADMIN_CMAINT: u32 = 0x04;
/// `srv_admin_state` bit: forced into drain (`set server … state drain`).
pub const ADMIN_FDRAIN: u32 = 0x08;
/// `srv_admin_state` bit: drain inherited from a tracked server.
pub const ADMIN_IDRAIN: u32 = 0x10;
/// `srv_admin_state` bit: down because its address did not resolve.
pub const ADMIN_RMAINT: u32 = 0x20;
/// Any bit that keeps new traffic off a server for maintenance.
pub const ADMIN_ANY_MAINT: u32 = ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_CMAINT | ADMIN_RMAINT;
/// Any drain bit.
pub const ADMIN_ANY_DRAIN: u32 = ADMIN_FDRAIN | ADMIN_IDRAIN;

/// Where the runtime API listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaproxyEndpoint {
    /// A unix socket (`stats socket /run/haproxy/admin.sock level admin`).
    Unix(PathBuf),
    /// A TCP socket, `host:port` (`stats socket ipv4@127.0.0.1:9999 level admin`).
    Tcp(String),
}

impl fmt::Display for HaproxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaproxyEndpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            HaproxyEndpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl FromStr for HaproxyEndpoint {
    type Err = HaproxyError;

    /// `unix:/path`, `/path` or `./path` for a unix socket; `tcp:host:port`
    /// or `host:port` for TCP.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(HaproxyEndpoint::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') || s.starts_with("./") {
            return Ok(HaproxyEndpoint::Unix(PathBuf::from(s)));
        }
        // `tcp://host:port` is the URL form operators write; `tcp:` ours.
        let addr = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("tcp:"))
            .unwrap_or(s);
        // The host must be one a connection can be made to: a name or an
        // IPv4 address, or an IPv6 one in brackets. HAProxy's own bind
        // syntax (`ipv4@10.0.3.20:9999`) or a URL with a path would pass a
        // looser check and then fail at the first failover's repointing.
        let host_ok = |h: &str| {
            let bracketed = h.starts_with('[') && h.ends_with(']') && h.len() > 2;
            bracketed
                || (!h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
        };
        match addr.rsplit_once(':') {
            Some((host, port)) if host_ok(host) && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(HaproxyEndpoint::Tcp(addr.to_owned()))
            }
            _ => Err(HaproxyError::InvalidEndpoint {
                endpoint: s.to_owned(),
            }),
        }
    }
}

/// The administrative state palisade sets on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Takes traffic.
    Ready,
    /// Takes no traffic at all.
    Maint,
    /// Keeps existing sessions (and persistent clients), takes no new ones.
    Drain,
}

impl AdminState {
    fn keyword(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Maint => "maint",
            AdminState::Drain => "drain",
        }
    }

    /// Classifies a `srv_admin_state` bit set: maintenance wins over drain.
    pub fn from_bits(bits: u32) -> Self {
        if bits & ADMIN_ANY_MAINT != 0 {
            AdminState::Maint
        } else if bits & ADMIN_ANY_DRAIN != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// One line of `show servers state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// `be_name`.
    pub backend: String,
    /// `srv_name`.
    pub name: String,
    /// `srv_addr`: the address HAProxy connects to.
    pub addr: String,
    /// `srv_port`; `None` when the HAProxy version does not report it.
    pub port: Option<u16>,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// `srv_admin_state`: bit set, see the `ADMIN_*` constants.
    pub admin_state: u32,
}

impl ServerState {
    /// The administrative state the bits amount to.
    pub fn admin(&self) -> AdminState {
        AdminState::from_bits(self.admin_state)
    }

    /// True when the server may get new traffic (not in maintenance, not
    /// draining). Its health checks may still mark it down.
    pub fn is_routable(&self) -> bool {
        self.admin_state & (ADMIN_ANY_MAINT | ADMIN_ANY_DRAIN) == 0
    }
}

/// One administrative change made by [`HaproxyClient::route_to`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerChange {
    /// The server.
    pub server: String,
    /// Its state before.
    pub from: AdminState,
    /// Its state after.
    pub to: AdminState,
}

/// What [`HaproxyClient::route_to`] did, and the verified result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteOutcome {
    /// The backend.
    pub backend: String,
    /// The server that now takes the traffic.
    pub active: String,
    /// The changes made; empty when the backend was already routed so.
    pub changes: Vec<ServerChange>,
    /// The backend's servers as read back after the change.
    pub servers: Vec<ServerState>,
}

impl RouteOutcome {
    /// True when anything was changed.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Why a runtime API operation failed. Socket trouble is retryable
/// (HAProxy reloading, socket not yet there); an answer from HAProxy that
/// refuses the command is not.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// The endpoint string is neither a path nor `host:port`. Fatal.
    #[error("invalid HAProxy runtime API endpoint {endpoint:?}: expected unix:/path, /path, host:port or tcp://host:port (HAProxy's own `ipv4@` form is for its config, not for here)")]
    InvalidEndpoint {
        /// The rejected string.
        endpoint: String,
    },
    /// A backend or server name that cannot be sent safely (the CLI treats
    /// `;` as a command separator and whitespace as an argument break). Fatal.
    #[error("invalid HAProxy {what} name {name:?}: only letters, digits and - _ . : are allowed")]
    InvalidName {
        /// `backend` or `server`.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// Could not connect, write or read. Retryable.
    #[error("HAProxy runtime API at {endpoint}: {source} (command `{command}`)")]
    Socket {
        /// The endpoint.
        endpoint: String,
        /// The command being sent.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No complete answer within the timeout. Retryable.
    #[error("HAProxy runtime API at {endpoint} did not answer `{command}` within {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The command.
        command: String,
        /// The timeout.
        timeout: Duration,
    },
    /// HAProxy answered with an error ("No such backend.", "No such
    /// server.", "Can't find backend."). Fatal.
    #[error("HAProxy refused `{command}` for {target}: {answer}")]
    Refused {
        /// `backend be` or `server be/srv`.
        target: String,
        /// The command.
        command: String,
        /// HAProxy's answer.
        answer: String,
    },
    /// A server named in the call is not in the backend. Fatal.
    #[error("HAProxy backend {backend} has no server {server} (it has: {known:?})")]
    UnknownServer {
        /// The backend.
        backend: String,
        /// The missing server.
        server: String,
        /// The servers it does have.
        known: Vec<String>,
    },
    /// `show servers state` did not look like the format we parse. Fatal.
    #[error("cannot parse `show servers state {backend}` from {endpoint}: {reason}")]
    Parse {
        /// The endpoint.
        endpoint: String,
        /// The backend.
        backend: String,
        /// What was wrong.
        reason: String,
    },
    /// The change was accepted but the state read back differs (a concurrent
    /// operator or a reload). Retryable: the next run re-applies it.
    #[error("HAProxy {backend}/{server}: expected {expected} after the change, found {found}")]
    Verify {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// What we set.
        expected: String,
        /// What we read back.
        found: String,
    },
}

impl HaproxyError {
    /// True when trying again may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HaproxyError::Socket { .. }
                | HaproxyError::Timeout { .. }
                | HaproxyError::Verify { .. }
        )
    }
}

impl Retryable for HaproxyError {
    fn is_retryable(&self) -> bool {
        HaproxyError::is_retryable(self)
    }
}

/// A client of one HAProxy's runtime API.
#[derive(Clone, Debug)]
pub struct HaproxyClient {
    endpoint: HaproxyEndpoint,
    timeout: Duration,
    retry: RetryPolicy,
}

impl HaproxyClient {
    /// A client with a 2 s per-command timeout and the default retry policy.
    pub fn new(endpoint: HaproxyEndpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }

    /// Sets the per-command timeout (connect, send, read the whole answer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how socket errors are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &HaproxyEndpoint {
        &self.endpoint
    }

    /// Sends one command, retrying socket errors, and returns HAProxy's raw
    /// answer. Every runtime API operation goes through here.
    pub async fn command(&self, command: &str) -> Result<String, HaproxyError> {
        retry::retry(&self.retry, "haproxy runtime api", |_| {
            self.command_once(command)
        })
        .await
        .map(|ok| ok.value)
        .map_err(|failed| failed.value)
    }

    async fn command_once(&self, command: &str) -> Result<String, HaproxyError> {
        let endpoint = self.endpoint.to_string();
        let socket_err = |source| HaproxyError::Socket {
            endpoint: endpoint.clone(),
            command: command.to_owned(),
            source,
        };
        let exchange = async {
            match &self.endpoint {
                HaproxyEndpoint::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(socket_err)?;
                    exchange(s, command).await.map_err(socket_err)
                }
                HaproxyEndpoint::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr.as_str())
                        .await
                        .map_err(socket_err)?;
                    exchange(s, command).await.map_err(socket_err)
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HaproxyError::Timeout {
                endpoint: endpoint.clone(),
                command: command.to_owned(),
                timeout: self.timeout,
            })?
    }

    /// `set server BACKEND/SERVER state ready|maint|drain`.
    pub async fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), HaproxyError> {
        check_name("backend", backend)?;
        check_name("server", server)?;
        let command = format!("set server {backend}/{server} state {}", state.keyword());
        let answer = self.command(&command).await?;
        expect_empty(&command, &format!("server {backend}/{server}"), &answer)
    }

    /// `shutdown sessions server BACKEND/SERVER`: closes the established
    /// connections to a server, which `maint` alone leaves open.
    pub async fn shutdown_sessions(&self, backend: &str, server: &str) -> Result<(), HaproxyError> {
        check_name("backend", backend)?;
        check_name("server", server)?;
        let command = format!("shutdown sessions server {backend}/{server}");
        let answer = self.command(&command).await?;
        expect_empty(&command, &format!("server {backend}/{server}"), &answer)
    }

    /// `set server BACKEND/SERVER addr IP [port PORT]`, then reads the state
    /// back to check it. Returns whether the address (or port) changed.
    pub async fn set_server_addr(
        &self,
        backend: &str,
        server: &str,
        ip: IpAddr,
        port: Option<u16>,
    ) -> Result<bool, HaproxyError> {
        check_name("backend", backend)?;
        check_name("server", server)?;
        let command = match port {
            Some(p) => format!("set server {backend}/{server} addr {ip} port {p}"),
            None => format!("set server {backend}/{server} addr {ip}"),
        };
        let answer = self.command(&command).await?;
        let text = answer.trim();
        // HAProxy 2.x answers "IP changed from 'x' to 'y', port changed from
        // … by 'stats socket command'" or "no need to change the addr, …";
        // anything else ("No such server.", "Invalid addr …") is a refusal.
        let changed = text.contains("changed from");
        if !changed && !text.contains("no need to change") {
            return Err(HaproxyError::Refused {
                target: format!("server {backend}/{server}"),
                command,
                answer: text.to_owned(),
            });
        }
        let state = self.server(backend, server).await?;
        let addr_ok = state.addr.parse::<IpAddr>().ok() == Some(ip);
        let port_ok = port.is_none() || state.port.is_none() || state.port == port;
        if !(addr_ok && port_ok) {
            return Err(HaproxyError::Verify {
                backend: backend.to_owned(),
                server: server.to_owned(),
                expected: match port {
                    Some(p) => format!("addr {ip} port {p}"),
                    None => format!("addr {ip}"),
                },
                found: format!(
                    "addr {} port {}",
                    state.addr,
                    state.port.map_or("?".into(), |p| p.to_string())
                ),
            });
        }
        Ok(changed)
    }

    /// `show servers state BACKEND`, parsed by the header's column names.
    pub async fn show_servers_state(
        &self,
        backend: &str,
    ) -> Result<Vec<ServerState>, HaproxyError> {
        check_name("backend", backend)?;
        let command = format!("show servers state {backend}");
        let answer = self.command(&command).await?;
        parse_servers_state(&answer).map_err(|reason| {
            if looks_like_state(&answer) {
                HaproxyError::Parse {
                    endpoint: self.endpoint.to_string(),
                    backend: backend.to_owned(),
                    reason,
                }
            } else {
                HaproxyError::Refused {
                    target: format!("backend {backend}"),
                    command,
                    answer: answer.trim().to_owned(),
                }
            }
        })
    }

    async fn server(&self, backend: &str, server: &str) -> Result<ServerState, HaproxyError> {
        let servers = self.show_servers_state(backend).await?;
        find(&servers, backend, server).cloned()
    }

    /// Sends the backend's traffic to `active` only: every server in `others`
    /// is put in `maint` and its established sessions are shut down, then
    /// `active` is made `ready`, then the result is read back and checked.
    ///
    /// Idempotent: servers already in the wanted state are not touched, and
    /// a second call reports no changes. The order is deliberate: the old
    /// servers go out *before* the new one comes in, so there is never a
    /// moment when both take traffic (DESIGN rule 1); a failure in between
    /// leaves the backend with no server, which the next run repairs, rather
    /// than with two.
    #[tracing::instrument(skip_all, fields(backend, active))]
    pub async fn route_to(
        &self,
        backend: &str,
        active: &str,
        others: &[&str],
    ) -> Result<RouteOutcome, HaproxyError> {
        check_name("backend", backend)?;
        check_name("server", active)?;
        for o in others {
            check_name("server", o)?;
        }
        let before = self.show_servers_state(backend).await?;
        // Every named server must exist before anything is changed: a typo
        // in the active server's name must not take the others out first.
        find(&before, backend, active)?;
        for o in others {
            find(&before, backend, o)?;
        }
        let mut changes = Vec::new();

        for &other in others.iter().filter(|o| **o != active) {
            let cur = find(&before, backend, other)?;
            if cur.admin_state & ADMIN_FMAINT == 0 {
                self.set_server_state(backend, other, AdminState::Maint)
                    .await?;
                changes.push(ServerChange {
                    server: other.to_owned(),
                    from: cur.admin(),
                    to: AdminState::Maint,
                });
            }
            // Always: a previous run may have died between `maint` and
            // this, and a session left open to the old site's server is a
            // client still writing to the old primary. Cheap when there are
            // none.
            self.shutdown_sessions(backend, other).await?;
        }

        let cur = find(&before, backend, active)?;
        if cur.admin_state & (ADMIN_FMAINT | ADMIN_FDRAIN) != 0 {
            self.set_server_state(backend, active, AdminState::Ready)
                .await?;
            changes.push(ServerChange {
                server: active.to_owned(),
                from: cur.admin(),
                to: AdminState::Ready,
            });
        }

        let after = self.show_servers_state(backend).await?;
        let now = find(&after, backend, active)?;
        if !now.is_routable() {
            return Err(HaproxyError::Verify {
                backend: backend.to_owned(),
                server: active.to_owned(),
                expected: "ready".into(),
                found: format!("{} (admin state 0x{:02x})", now.admin(), now.admin_state),
            });
        }
        for &other in others.iter().filter(|o| **o != active) {
            let now = find(&after, backend, other)?;
            if now.admin_state & ADMIN_FMAINT == 0 {
                return Err(HaproxyError::Verify {
                    backend: backend.to_owned(),
                    server: other.to_owned(),
                    expected: "maint".into(),
                    found: format!("{} (admin state 0x{:02x})", now.admin(), now.admin_state),
                });
            }
        }
        if !changes.is_empty() {
            tracing::info!(backend, active, changes = ?changes, "front door rerouted");
        }
        Ok(RouteOutcome {
            backend: backend.to_owned(),
            active: active.to_owned(),
            changes,
            servers: after,
        })
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    command: &str,
) -> std::io::Result<String> {
    s.write_all(format!("{command}\n").as_bytes()).await?;
    s.flush().await?;
    let mut answer = Vec::new();
    // Bounded: a backend with thousands of servers answers in a few hundred
    // KiB; anything beyond 16 MiB is not an answer we can use.
    (&mut s)
        .take(16 * 1024 * 1024)
        .read_to_end(&mut answer)
        .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn check_name(what: &'static str, name: &str) -> Result<(), HaproxyError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(HaproxyError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

fn expect_empty(command: &str, target: &str, answer: &str) -> Result<(), HaproxyError> {
    // Commands that only change state answer with an empty line on success
    // and a sentence on failure.
    let text = answer.trim();
    if text.is_empty() {
        Ok(())
    } else {
        Err(HaproxyError::Refused {
            target: target.to_owned(),
            command: command.to_owned(),
            answer: text.to_owned(),
        })
    }
}

fn find<'a>(
    servers: &'a [ServerState],
    backend: &str,
    server: &str,
) -> Result<&'a ServerState, HaproxyError> {
    servers
        .iter()
        .find(|s| s.name == server)
        .ok_or_else(|| HaproxyError::UnknownServer {
            backend: backend.to_owned(),
            server: server.to_owned(),
            known: servers.iter().map(|s| s.name.clone()).collect(),
        })
}

fn looks_like_state(answer: &str) -> bool {
    let mut lines = answer.lines();
    matches!(lines.next(), Some(v) if v.trim().parse::<u32>().is_ok())
        && matches!(lines.next(), Some(h) if h.starts_with('#'))
}

/// Parses the answer of `show servers state`: a version line (`1`), a
/// `# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …`
/// header, then one line per server. Columns are found by their header
/// names, so versions that add columns still parse.
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines();
    let version = lines.next().ok_or("empty answer")?.trim();
    if version.parse::<u32>().is_err() {
        return Err(format!("expected a version line, got {version:?}"));
    }
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or("missing `#` header line")?;
    let columns: HashMap<&str, usize> = header
        .split_whitespace()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let col = |name: &str| {
        columns
            .get(name)
            .copied()
            .ok_or(format!("header has no {name} column"))
    };
    let (be, name, addr, op, admin) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_addr")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
    );
    let port = columns.get("srv_port").copied();

    let mut out = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| fields.get(i).copied().ok_or(format!("short line {line:?}"));
        out.push(ServerState {
            backend: get(be)?.to_owned(),
            name: get(name)?.to_owned(),
            addr: get(addr)?.to_owned(),
            port: port
                .and_then(|i| fields.get(i))
                .and_then(|p| p.parse().ok()),
            op_state: get(op)?
                .parse()
                .map_err(|_| format!("bad srv_op_state in {line:?}"))?,
            admin_state: get(admin)?
                .parse()
                .map_err(|_| format!("bad srv_admin_state in {line:?}"))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 be 1 a 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 18081 - 0 0 - - 0\n3 be 2 b 127.0.0.2 2 8 1 1 2 1 0 2 0 0 0 0 - 18082 - 0 0 - - 0\n\n";

    #[test]
    fn parses_haproxy_2_6_output() {
        let s = parse_servers_state(SAMPLE).expect("parse");
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].admin(), s[0].port),
            ("a", AdminState::Maint, Some(18081))
        );
        assert_eq!(
            (s[1].addr.as_str(), s[1].admin(), s[1].op_state),
            ("127.0.0.2", AdminState::Drain, 2)
        );
        assert!(!s[1].is_routable());
    }

    #[test]
    fn rejects_error_answers() {
        assert!(parse_servers_state("Can't find backend.\n\n").is_err());
        assert!(!looks_like_state("Can't find backend.\n\n"));
        assert!(looks_like_state(SAMPLE));
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "/run/h.sock".parse::<HaproxyEndpoint>().ok(),
            Some(HaproxyEndpoint::Unix("/run/h.sock".into()))
        );
        assert_eq!(
            "unix:rel.sock".parse::<HaproxyEndpoint>().ok(),
            Some(HaproxyEndpoint::Unix("rel.sock".into()))
        );
        assert_eq!(
            "127.0.0.1:9999".parse::<HaproxyEndpoint>().ok(),
            Some(HaproxyEndpoint::Tcp("127.0.0.1:9999".into()))
        );
        assert_eq!(
            "tcp:[::1]:9999".parse::<HaproxyEndpoint>().ok(),
            Some(HaproxyEndpoint::Tcp("[::1]:9999".into()))
        );
        assert!("nonsense".parse::<HaproxyEndpoint>().is_err());
        assert_eq!(
            "tcp://lb-c.example:9999".parse::<HaproxyEndpoint>().ok(),
            Some(HaproxyEndpoint::Tcp("lb-c.example:9999".into()))
        );
        // Forms that pass a loose host:port check but cannot connect.
        for bad in [
            "ipv4@10.0.3.20:9999",
            "tcp://ipv4@10.0.3.20:9999",
            "tcp:///10.0.3.20:9999",
            "http://10.0.3.20:9999",
            "10.0.3.20:0",
            ":9999",
        ] {
            let e = bad.parse::<HaproxyEndpoint>().expect_err(bad);
            assert!(e.to_string().contains("host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_that_could_inject_commands_are_refused() {
        for bad in ["", "a b", "a;shutdown", "a/b", "a\nb"] {
            assert!(check_name("server", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("server", "pg-b_1.site:x").is_ok());
    }
}
