//! A witness's probe of one database, whatever its engine: PostgreSQL's
//! observation as it is, or a MariaDB master's projected onto what the
//! detector, the operation checks and the status read
//! (`palisade_core::master_master::detector_view`), with the full MariaDB
//! observation kept beside it for the site agent and `palisadectl status`
//! (replication in both directions, GTID positions, semi-sync).

use std::time::Duration;

use palisade_core::master_master::MariaObservation;
use palisade_core::observe::PgObservation;
use palisade_probe::mariadb::MariaProbe;
use palisade_probe::postgres::PgProbe;
use palisade_probe::ProbeConfigError;

use crate::config::DatabaseConfig;

/// Probes one database server.
#[derive(Clone, Debug)]
pub enum DbProbe {
    /// A PostgreSQL server.
    Postgres(PgProbe),
    /// A MariaDB master of a master-master pair.
    MariaDb(MariaProbe),
}

impl DbProbe {
    /// The probe of `db` (its probe DSN and password), bounded by
    /// `timeout`.
    pub fn new(db: &DatabaseConfig, timeout: Duration) -> Result<Self, ProbeConfigError> {
        if db.is_mariadb() {
            let probe = MariaProbe::new(db.dsn.text(), timeout)?;
            Ok(Self::MariaDb(match db.dsn.password() {
                Some(p) => probe.with_password(p),
                None => probe,
            }))
        } else {
            PgProbe::new(db.dsn.clone(), timeout).map(Self::Postgres)
        }
    }

    /// One probe, as the detector reads it.
    pub async fn probe(&self) -> PgObservation {
        self.observe().await.0
    }

    /// One probe: as the detector reads it, and for MariaDB the whole
    /// observation too.
    pub async fn observe(&self) -> (PgObservation, Option<MariaObservation>) {
        match self {
            Self::Postgres(p) => (p.probe().await, None),
            Self::MariaDb(p) => {
                let full = p.probe().await;
                (full.detector_view(), Some(full))
            }
        }
    }
}

/// MariaDB: refuses to start on two servers that are not the guide's
/// master-master pair (`palisade_core::master_master::pair::check`: each
/// replicating from the other, distinct `server_id`s, binary logs on,
/// `auto_increment` settings under which the masters' keys never
/// collide), naming every problem. palisade never reconfigures the pair,
/// so it would otherwise run half-configured. When a server does not
/// answer, the check cannot be made now: a warning, and the witness starts
/// (a site may well be down while its witness restarts).
pub async fn check_mariadb_pair(settings: &crate::config::DatabaseSettings) -> anyhow::Result<()> {
    use palisade_core::master_master::pair::{check, Member, PairProblem};
    if !settings.is_mariadb() {
        return Ok(());
    }
    let mut seen = Vec::new();
    for db in settings.all() {
        let probe = DbProbe::new(db, settings.probe_timeout)?;
        let (_, full) = probe.observe().await;
        let (host, port) = host_port(db.dsn.text());
        seen.push((
            db,
            host,
            port,
            full.expect("a MariaDB probe returns its observation"),
        ));
    }
    let member = |i: usize| Member {
        site: &seen[i].0.site.0,
        host: &seen[i].1,
        port: seen[i].2,
        seen: &seen[i].3,
    };
    let problems = check(&member(0), &member(1));
    let (unknown, fatal): (Vec<_>, Vec<_>) = problems
        .into_iter()
        .partition(|p| matches!(p, PairProblem::Unknown { .. }));
    for p in &unknown {
        tracing::warn!(problem = %p, "cannot check the MariaDB pair now");
    }
    if fatal.is_empty() {
        if unknown.is_empty() {
            tracing::info!("the MariaDB servers are the guide's master-master pair");
        }
        return Ok(());
    }
    let list: Vec<String> = fatal.iter().map(|p| format!("  - {p}")).collect();
    anyhow::bail!(
        "the two [[database]] servers are not a master-master pair palisade can protect (docs/mariadb.md):\n{}",
        list.join("\n")
    )
}

/// The host and port of a `mysql://` URL (port 3306 by default).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(['[', ']']).to_owned(),
            p.parse().unwrap_or(3306),
        ),
        _ => (host_port.trim_matches(['[', ']']).to_owned(), 3306),
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn the_pair_check_reads_host_and_port_from_the_dsn() {
        assert_eq!(
            host_port("mysql://palisade@127.0.0.1:3307/"),
            ("127.0.0.1".into(), 3307)
        );
        assert_eq!(
            host_port("mysql://db.site-a/app"),
            ("db.site-a".into(), 3306)
        );
        assert_eq!(host_port("mysql://u@[::1]:3308"), ("::1".into(), 3308));
    }
}
