//! A real HAProxy in TCP mode as the front door of a PostgreSQL pair: the
//! one config writer and runner that tests, benches, the demo and
//! chaos-tests share.
//!
//! The config has one frontend, one backend ([`BACKEND`]) holding one
//! server per site, and the runtime API on a unix socket at `level admin`,
//! which is how palisade's `[[front_door]] kind = "haproxy"` repoints it.
//! A standby's server is put in maintenance through that API, as an
//! operator does, never with `disabled` in the config: HAProxy 2.6 cannot
//! clear a configured maintenance at runtime.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::wait::{wait_for, Attempt};

/// The backend that holds the PostgreSQL servers.
pub const BACKEND: &str = "postgres";
/// Where Debian and source installs put the binary; `PATH` is searched
/// after these.
const KNOWN_PATHS: [&str; 3] = [
    "/usr/sbin/haproxy",
    "/usr/local/sbin/haproxy",
    "/usr/bin/haproxy",
];
/// How long HAProxy may take to open its runtime API.
const READY: Duration = Duration::from_secs(10);
/// Longest path a unix socket address holds (`sun_path` is 108 bytes,
/// with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The `haproxy` binary, if installed: a known location, else the first on
/// `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("haproxy"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    KNOWN_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
}

/// For a test that needs HAProxy: the binary, or `None` after printing a
/// `SKIP` line saying how to install it. Panics instead when `CI=true`:
/// CI must run every test.
pub fn haproxy_binary() -> Option<PathBuf> {
    let found = find_binary();
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "haproxy is not installed, and CI=true: this test must run (apt-get install -y haproxy)"
        );
        eprintln!("SKIP: haproxy is not installed (apt-get install -y haproxy)");
    }
    found
}

/// An HAProxy config in TCP mode in front of database servers (see the
/// module doc).
#[derive(Clone, Debug)]
pub struct HaproxyConfig {
    /// The runtime API's unix socket.
    pub socket: PathBuf,
    /// Where the frontend listens.
    pub bind: SocketAddr,
    /// The backend's servers: HAProxy's name for each, and its address.
    pub servers: Vec<(String, SocketAddr)>,
    /// `retries` of `defaults`; `None` keeps HAProxy's (3 retries, 1 s
    /// apart, against the same server).
    pub retries: Option<u32>,
    /// Comment lines at the top: who wrote the file and what for.
    pub comment: Vec<String>,
    /// Route by palisade's health endpoints instead of the runtime API
    /// (`option httpchk`): the path (`/primary`) and, per server in
    /// order, the port of the HTTP listener of the witness at its site.
    pub health_check: Option<(String, Vec<u16>)>,
}

impl HaproxyConfig {
    /// A config with the frontend on `bind` and these servers; no
    /// `retries`, no comment.
    pub fn new(socket: PathBuf, bind: SocketAddr, servers: Vec<(String, SocketAddr)>) -> Self {
        Self {
            socket,
            bind,
            servers,
            retries: None,
            comment: Vec::new(),
            health_check: None,
        }
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let mut cfg = String::new();
        for line in &self.comment {
            let _ = writeln!(cfg, "# {line}");
        }
        let _ = write!(
            cfg,
            "global\n    stats socket {} mode 600 level admin\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n",
            self.socket.display()
        );
        if let Some(retries) = self.retries {
            if retries == 0 {
                cfg.push_str(
                    "    # A refused connection (the primary is gone) fails the client at once,\n\
                     \x20   # rather than after up to 3 retries 1 s apart against the same server.\n",
                );
            }
            let _ = writeln!(cfg, "    retries {retries}");
        }
        let _ = write!(
            cfg,
            "frontend {BACKEND}\n    bind {}\n    default_backend {BACKEND}\n\
             backend {BACKEND}\n\
             \x20   # A standby's server is put in maintenance through the runtime API, not\n\
             \x20   # with `disabled` here: HAProxy 2.6 cannot clear that at runtime.\n",
            self.bind
        );
        match &self.health_check {
            None => {
                for (name, addr) in &self.servers {
                    let _ = writeln!(cfg, "    server {name} {addr}");
                }
            }
            Some((path, ports)) => {
                let _ = write!(
                    cfg,
                    "    # Routed by palisade's health endpoints: only the witness whose site\n\
                     \x20   # holds the leased, writable primary answers 200.\n\
                     \x20   option httpchk GET {path}\n\
                     \x20   http-check expect status 200\n\
                     \x20   default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions\n"
                );
                for ((name, addr), port) in self.servers.iter().zip(ports) {
                    let _ = writeln!(cfg, "    server {name} {addr} check port {port}");
                }
            }
        }
        cfg
    }
}

/// A running HAProxy. Dropping it kills it (SIGKILL: it holds no state
/// worth a graceful stop).
#[derive(Debug)]
pub struct Haproxy {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    frontend: SocketAddr,
}

impl Haproxy {
    /// Writes `config` to `dir/haproxy.cfg` and runs `bin` on it in the
    /// foreground (`-db`), stderr in `dir/haproxy.log`, in a process group
    /// of its own (a terminal's Ctrl-C reaches only its parent, which stops
    /// it in order); waits until the runtime API's socket exists. Fails
    /// with HAProxy's log when it exits at start.
    pub async fn start(bin: &Path, dir: &Path, config: &HaproxyConfig) -> Result<Haproxy> {
        if config.socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "HAProxy's runtime API socket path {} is longer than a unix socket allows ({MAX_SOCKET_PATH} bytes); set TMPDIR to a shorter directory",
                config.socket.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config.render())
            .with_context(|| format!("writing {}", cfg.display()))?;
        let log = dir.join("haproxy.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut haproxy = Haproxy {
            child: Some(child),
            socket: config.socket.clone(),
            log,
            frontend: config.bind,
        };
        let what = format!(
            "haproxy to open its runtime API {}",
            haproxy.socket.display()
        );
        wait_for(&what, READY, async || {
            if haproxy.socket.exists() {
                return Attempt::Ready(());
            }
            match haproxy.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Attempt::GiveUp(anyhow!(
                    "haproxy exited at start ({status}); {} says:\n{}",
                    haproxy.log.display(),
                    std::fs::read_to_string(&haproxy.log).unwrap_or_default()
                )),
                Some(Err(e)) => Attempt::GiveUp(anyhow!("checking on haproxy: {e}")),
                _ => Attempt::NotYet(String::new()),
            }
        })
        .await?;
        Ok(haproxy)
    }

    /// The runtime API's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// HAProxy's stderr.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Where clients connect.
    pub fn frontend(&self) -> SocketAddr {
        self.frontend
    }

    /// Kills HAProxy and reaps it; a no-op once stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback address for a frontend (bound once, released at once).
pub fn free_loopback_addr() -> Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port for HAProxy's frontend")
}

/// HAProxy in front of a loopback pair, for tests and benches: its own
/// temporary directory, the frontend on a free loopback port, servers
/// `pg_a` (site a's, `port_a`) and `pg_b` (site b's, `port_b`), both ready
/// (put `pg_b` in maintenance through the runtime API).
#[derive(Debug)]
pub struct FrontDoor {
    /// The runtime API's unix socket.
    pub socket: PathBuf,
    /// The loopback port clients connect to.
    pub frontend: u16,
    /// Declared before the directory: stopped before its files go.
    _haproxy: Haproxy,
    _dir: tempfile::TempDir,
}

/// Where one fresh connection through the front door on `front` lands, as
/// the test pair's superuser: the server's port and whether it is in
/// recovery. `None` when no connection and query succeeded within 1 s.
pub async fn route(front: u16) -> Option<(i32, bool)> {
    use sqlx::ConnectOptions;
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(front)
        .username(crate::pg::SUPERUSER)
        .password(crate::pg::SUPERUSER_PASSWORD)
        .database("postgres");
    tokio::time::timeout(Duration::from_secs(1), async {
        let mut conn = opts.connect().await.ok()?;
        sqlx::query_as::<_, (i32, bool)>("SELECT inet_server_port(), pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// Starts a [`FrontDoor`] on `bin` in front of servers on `port_a` and
/// `port_b`; panics when HAProxy does not start (the test cannot go on).
pub async fn start_haproxy(bin: &Path, port_a: u16, port_b: u16) -> FrontDoor {
    let dir = tempfile::Builder::new()
        .prefix("palisade-haproxy-")
        .tempdir()
        .expect("a temporary directory for haproxy");
    let bind = free_loopback_addr().expect("a free loopback port");
    let server = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let config = HaproxyConfig::new(
        dir.path().join("admin.sock"),
        bind,
        vec![
            ("pg_a".to_owned(), server(port_a)),
            ("pg_b".to_owned(), server(port_b)),
        ],
    );
    let haproxy = Haproxy::start(bin, dir.path(), &config)
        .await
        .unwrap_or_else(|e| panic!("starting haproxy: {e:#}"));
    FrontDoor {
        socket: haproxy.socket().to_path_buf(),
        frontend: bind.port(),
        _haproxy: haproxy,
        _dir: dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_tcp_front_door_with_the_runtime_api() {
        let mut c = HaproxyConfig::new(
            PathBuf::from("/run/h.sock"),
            "127.0.0.1:6000".parse().expect("addr"),
            vec![
                ("pg_a".into(), "127.0.0.1:5001".parse().expect("addr")),
                ("pg_b".into(), "127.0.0.1:5002".parse().expect("addr")),
            ],
        );
        c.retries = Some(0);
        c.comment = vec!["Written by a test.".into()];
        let text = c.render();
        for line in [
            "# Written by a test.",
            "    stats socket /run/h.sock mode 600 level admin",
            "    mode tcp",
            "    retries 0",
            "frontend postgres",
            "    bind 127.0.0.1:6000",
            "    default_backend postgres",
            "backend postgres",
            "    server pg_a 127.0.0.1:5001",
            "    server pg_b 127.0.0.1:5002",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        assert!(!HaproxyConfig { retries: None, ..c }
            .render()
            .contains("retries"));
    }
}
