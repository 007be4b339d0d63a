//! The demo's front door: a real HAProxy in TCP mode in front of both
//! PostgreSQL servers, when `haproxy` is installed.
//!
//! Clients (the demo's writer) connect to HAProxy's frontend port, and
//! HAProxy sends them to site a's server; site b's server is in maintenance.
//! The failover's `repointed` step turns that round through the runtime API
//! (`[[front_door]] kind = "haproxy"`), which is how the output shows
//! clients moving from a to b.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palisade_actions::haproxy::{AdminState, HaproxyClient, HaproxyEndpoint};
use tokio::process::{Child, Command};

use super::report::Progress;

/// The backend holding the two PostgreSQL servers.
pub const BACKEND: &str = "postgres";
/// HAProxy's server name for each site's PostgreSQL server.
pub const SERVERS: [(&str, &str); 2] = [("a", "pg_a"), ("b", "pg_b")];
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

/// A running HAProxy (its config, socket and log live in the work
/// directory's `haproxy/`).
pub struct Haproxy {
    /// The process; killed by [`Haproxy::stop`] (and on drop).
    child: Child,
    /// The runtime API's unix socket (`level admin`).
    socket: PathBuf,
    /// HAProxy's stderr.
    log: PathBuf,
    /// The loopback port clients connect to.
    frontend: u16,
}

impl Haproxy {
    /// Writes `haproxy.cfg` under `dir/haproxy/` and starts `bin` on it in
    /// the foreground (`-db`), in its own process group so that a
    /// terminal's Ctrl-C reaches only the demo. Call [`Haproxy::prepare`]
    /// next; keep the value where cleanup finds it in between.
    pub fn spawn(bin: &Path, dir: &Path, port_a: u16, port_b: u16) -> anyhow::Result<Haproxy> {
        let dir = dir.join("haproxy");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("admin.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "HAProxy's runtime API socket path {} is longer than a unix socket allows ({MAX_SOCKET_PATH} bytes); set TMPDIR to a shorter directory",
                socket.display()
            );
        }
        let frontend = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port for HAProxy's frontend")?
            .port();
        let (server_a, server_b) = (SERVERS[0].1, SERVERS[1].1);
        let cfg = format!(
            "# Written by `palisade demo`: HAProxy in TCP mode in front of the two\n\
             # PostgreSQL servers, as a front door that sends clients to the primary.\n\
             global\n    stats socket {socket} mode 600 level admin\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
             \x20   # A refused connection (the primary is gone) fails the client at once,\n\
             \x20   # rather than after up to 3 retries 1 s apart against the same server.\n\
             \x20   retries 0\n\
             frontend {BACKEND}\n    bind 127.0.0.1:{frontend}\n    default_backend {BACKEND}\n\
             backend {BACKEND}\n\
             \x20   # {server_b} is put in maintenance through the runtime API at start, not\n\
             \x20   # with `disabled` here: HAProxy 2.6 cannot clear that at runtime.\n\
             \x20   server {server_a} 127.0.0.1:{port_a}\n    server {server_b} 127.0.0.1:{port_b}\n",
            socket = socket.display(),
        );
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let log = dir.join("haproxy.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Haproxy {
            child,
            socket,
            log,
            frontend,
        })
    }

    /// Waits for the runtime API, puts site b's server in maintenance
    /// through it, and reads the backend back to confirm that only site
    /// a's server takes clients. Returns that state, one line per server.
    pub async fn prepare(&mut self) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + READY;
        while !self.socket.exists() {
            if let Some(status) = self.child.try_wait().context("checking haproxy")? {
                bail!(
                    "haproxy exited at start ({status}); {} says:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "haproxy did not open its runtime API {} within {READY:?}",
                    self.socket.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let api = self.client();
        let (_, server_b) = SERVERS[1];
        api.set_server_state(BACKEND, server_b, AdminState::Maint)
            .await
            .with_context(|| format!("putting {BACKEND}/{server_b} in maintenance"))?;
        let servers = api
            .show_servers_state(BACKEND)
            .await
            .with_context(|| format!("reading back backend {BACKEND}"))?;
        let mut lines = Vec::new();
        for (site, name) in SERVERS {
            let s = servers
                .iter()
                .find(|s| s.name == name)
                .with_context(|| format!("backend {BACKEND} has no server {name}"))?;
            let want = if site == "a" {
                AdminState::Ready
            } else {
                AdminState::Maint
            };
            if s.admin() != want {
                bail!("{BACKEND}/{name} is {} after setup, not {want}", s.admin());
            }
            lines.push(format!(
                "{BACKEND}/{name} -> {}:{} (site {site}): {}",
                s.addr,
                s.port.map(|p| p.to_string()).unwrap_or_default(),
                s.admin()
            ));
        }
        Ok(lines)
    }

    fn client(&self) -> HaproxyClient {
        HaproxyClient::new(HaproxyEndpoint::Unix(self.socket.clone()))
    }

    /// The loopback port clients connect to.
    pub fn frontend_port(&self) -> u16 {
        self.frontend
    }

    /// The runtime API socket, for the `[[front_door]]` section.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Kills HAProxy (SIGKILL: it holds no state worth a graceful stop)
    /// and waits for it.
    pub async fn stop(mut self, p: &Progress) {
        if let Err(e) = self.child.kill().await {
            p.detail(format!("could not kill haproxy: {e}"));
        }
    }
}
