//! The demo's front door: a real HAProxy in TCP mode in front of both
//! database servers (PostgreSQL, or the two MariaDB masters), when
//! `haproxy` is installed (the test kit's
//! [`palisade_testkit::haproxy`] writes its config and runs it).
//!
//! Clients (the demo's writer) connect to HAProxy's frontend port, and
//! HAProxy sends them to site a's server; site b's server is in maintenance.
//! The failover's `repointed` step turns that round through the runtime API
//! (`[[front_door]] kind = "haproxy"`), which is how the output shows
//! clients moving from a to b.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{bail, Context};
use palisade_actions::haproxy::{AdminState, HaproxyClient, HaproxyEndpoint};
use palisade_testkit::haproxy::{free_loopback_addr, HaproxyConfig};

pub use palisade_testkit::haproxy::{find_binary, BACKEND};

use crate::report::Progress;
use crate::Db;

/// HAProxy's server name for each site's database server.
pub fn servers(db: Db) -> [(&'static str, &'static str); 2] {
    match db {
        Db::Postgresql => [("a", "pg_a"), ("b", "pg_b")],
        Db::Mariadb => [("a", "mariadb_a"), ("b", "mariadb_b")],
    }
}

/// A running HAProxy (its config, socket and log live in the work
/// directory's `haproxy/`).
pub struct Haproxy {
    proc: palisade_testkit::haproxy::Haproxy,
    /// Its servers' names, by site.
    servers: [(&'static str, &'static str); 2],
}

impl Haproxy {
    /// Writes `haproxy.cfg` under `dir/haproxy/` and starts `bin` on it,
    /// its runtime API ready. Call [`Haproxy::prepare`] next.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        db: Db,
        port_a: u16,
        port_b: u16,
    ) -> anyhow::Result<Haproxy> {
        let dir = dir.join("haproxy");
        let servers = servers(db);
        let server = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut config = HaproxyConfig::new(
            dir.join("admin.sock"),
            free_loopback_addr()?,
            vec![
                (servers[0].1.to_owned(), server(port_a)),
                (servers[1].1.to_owned(), server(port_b)),
            ],
        );
        config.retries = Some(0);
        config.comment = vec![
            "Written by `palisade demo`: HAProxy in TCP mode in front of the two".into(),
            format!(
                "{} servers, as a front door that sends clients to the primary.",
                db.name()
            ),
        ];
        Ok(Haproxy {
            proc: palisade_testkit::haproxy::Haproxy::start(bin, &dir, &config).await?,
            servers,
        })
    }

    /// Puts site b's server in maintenance through the runtime API, and
    /// reads the backend back to confirm that only site a's server takes
    /// clients. Returns that state, one line per server.
    pub async fn prepare(&mut self) -> anyhow::Result<Vec<String>> {
        let api = HaproxyClient::new(HaproxyEndpoint::Unix(self.socket().to_path_buf()));
        let (_, server_b) = self.servers[1];
        api.set_server_state(BACKEND, server_b, AdminState::Maint)
            .await
            .with_context(|| format!("putting {BACKEND}/{server_b} in maintenance"))?;
        let servers = api
            .show_servers_state(BACKEND)
            .await
            .with_context(|| format!("reading back backend {BACKEND}"))?;
        let mut lines = Vec::new();
        for (site, name) in self.servers {
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

    /// The loopback port clients connect to.
    pub fn frontend_port(&self) -> u16 {
        self.proc.frontend().port()
    }

    /// Its servers' names, by site, for the `[[front_door]]` section.
    pub fn servers(&self) -> [(&'static str, &'static str); 2] {
        self.servers
    }

    /// The runtime API socket, for the `[[front_door]]` section.
    pub fn socket(&self) -> &Path {
        self.proc.socket()
    }

    /// Kills HAProxy (SIGKILL: it holds no state worth a graceful stop)
    /// and waits for it.
    pub fn stop(mut self, p: &Progress) {
        self.proc.stop();
        p.detail("stopped haproxy");
    }
}
