//! The demo's database pair, whichever engine `--db` chose: the test kit's
//! PostgreSQL primary and streaming standby ([`PgPair`]), or its MariaDB
//! master-master pair as the HA/DR guide sets it up ([`MariaPair`]). Site
//! a's server is the primary (the writer), site b's the standby (for
//! MariaDB: the other master, read-only, replicating both ways).

use std::path::Path;

use palisade_testkit::mariadb::MariaPair;
use palisade_testkit::pg::PgPair;

use crate::{Db, Replication};

/// The running pair.
pub enum DbPair {
    /// PostgreSQL: `primary` at site a, `standby` at site b.
    Pg(PgPair),
    /// MariaDB: `a` (server-id 1, the writer) and `b` (server-id 2).
    Maria(MariaPair),
}

impl DbPair {
    /// Which engine it is.
    pub fn db(&self) -> Db {
        match self {
            DbPair::Pg(_) => Db::Postgresql,
            DbPair::Maria(_) => Db::Mariadb,
        }
    }

    /// The pair's temporary directory (`palisade-pg-*` or
    /// `palisade-maria-*`), removed when the pair is dropped.
    pub fn dir(&self) -> &Path {
        match self {
            DbPair::Pg(p) => p.dir(),
            DbPair::Maria(p) => p.dir(),
        }
    }

    /// The loopback port of site `a`'s server (`"a"`) or site b's (any
    /// other site).
    pub fn port(&self, site: &str) -> u16 {
        match (self, site) {
            (DbPair::Pg(p), "a") => p.primary.port(),
            (DbPair::Pg(p), _) => p.standby.port(),
            (DbPair::Maria(p), "a") => p.a.port(),
            (DbPair::Maria(p), _) => p.b.port(),
        }
    }

    /// SIGKILLs site a's server (the postmaster, or `mariadbd`) and waits
    /// until it is gone. Blocking: call it off the runtime's threads.
    pub fn kill_a(&self) {
        match self {
            DbPair::Pg(p) => p.primary.kill9(),
            DbPair::Maria(p) => p.a.kill9(),
        }
    }

    /// The `[failover]` and `[[database]]` sections that hand the pair to
    /// the witnesses.
    pub fn sections(&self, mode: Replication) -> String {
        match self {
            DbPair::Pg(p) => crate::postgres::database_sections(p, mode),
            DbPair::Maria(p) => crate::mariadb::database_sections(p, mode),
        }
    }
}
