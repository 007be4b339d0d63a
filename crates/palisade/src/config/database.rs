//! The `[failover]`, `[lease]`, `[probe]` and `[[database]]` sections: the
//! database pair palisade protects and how it decides to fail over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::detector::{CrashPolicy, DetectorConfig, ReplicationMode};
use palisade_core::lease::LeaseConfig;
use palisade_core::secret::ClientTls;
use palisade_core::{ConnString, Secret, SiteId};
use serde::Deserialize;

use super::secrets::{
    client_tls, read_certificates, read_private_key, resolve, RawSecret, SecretKeys, TlsFiles,
};

/// `[probe]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProbe {
    interval_ms: u64,
    timeout_ms: u64,
    local_timeout_ms: Option<u64>,
}

impl Default for RawProbe {
    fn default() -> Self {
        Self {
            interval_ms: 250,
            timeout_ms: 1000,
            local_timeout_ms: None,
        }
    }
}

/// Default of `probe.local_timeout_ms`: a server on the witness's own site
/// answers a connection and a query in a few ms; one that has not in
/// 400 ms is not answering (two such probes in a row are a hang).
const LOCAL_PROBE_TIMEOUT_MS: u64 = 400;

/// `[lease]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLease {
    ttl_ms: u64,
    drift: f64,
    renew_interval_ms: Option<u64>,
}

impl Default for RawLease {
    fn default() -> Self {
        Self {
            ttl_ms: 2000,
            drift: 0.1,
            renew_interval_ms: None,
        }
    }
}

/// `[failover]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFailover {
    down_after_ms: u64,
    report_ttl_ms: Option<u64>,
    on_primary_crash: CrashPolicy,
    restart_budget_ms: u64,
    cooldown_ms: u64,
    cooldown_down_after_ms: u64,
    max_lag_bytes: u64,
    max_lag_seconds: f64,
    replication: ReplicationMode,
    sync_standby_down: SyncStandbyDown,
    sync_degrade_after_ms: u64,
    automatic: bool,
    rejoin: RejoinPolicy,
    switchover_catchup_timeout_ms: u64,
    errant_transactions: ErrantTransactions,
}

impl Default for RawFailover {
    fn default() -> Self {
        Self {
            down_after_ms: 1000,
            report_ttl_ms: None,
            on_primary_crash: CrashPolicy::Restart,
            restart_budget_ms: 10_000,
            cooldown_ms: 300_000,
            cooldown_down_after_ms: 30_000,
            max_lag_bytes: 16 * 1024 * 1024,
            max_lag_seconds: 30.0,
            replication: ReplicationMode::Async,
            sync_standby_down: SyncStandbyDown::Degrade,
            sync_degrade_after_ms: 3000,
            automatic: true,
            rejoin: RejoinPolicy::Automatic,
            switchover_catchup_timeout_ms: 10_000,
            errant_transactions: ErrantTransactions::Refuse,
        }
    }
}

/// MariaDB: what an old writer's rejoin does with errant transactions
/// (committed on it, never received by the new writer before the
/// failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrantTransactions {
    /// Refuse the rejoin and report them: an operator decides (they would
    /// otherwise replicate into the new writer's newer history).
    Refuse,
    /// Rejoin all the same: master-master replication carries them to the
    /// new writer, where they may conflict with what it wrote since.
    Replicate,
}

/// What happens to the old primary after a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejoinPolicy {
    /// Its site agent rebuilds it as a standby of the new primary
    /// (`pg_rewind`, else `pg_basebackup`) as soon as it can.
    Automatic,
    /// It stays stopped until an operator rebuilds it by hand; the leader
    /// records it as the standby once it sees it stream.
    Manual,
}

/// What `sync` replication does when the standby is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStandbyDown {
    /// Keep `synchronous_standby_names` set: writes block until the standby
    /// is back (no acknowledged write can ever be lost).
    Block,
    /// Clear it so writes go on, and record the degradation: a failover in
    /// that window may lose what the standby never got.
    Degrade,
}

/// One `[[database]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    site: String,
    engine: Option<String>,
    role: String,
    dsn: String,
    password: Option<RawSecret>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    admin_dsn: Option<String>,
    admin_password: Option<RawSecret>,
    admin_password_file: Option<PathBuf>,
    admin_password_env: Option<String>,
    data_dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    os_user: Option<String>,
    replication_conninfo: Option<String>,
    replication_password: Option<RawSecret>,
    replication_password_file: Option<PathBuf>,
    replication_password_env: Option<String>,
    log_file: Option<PathBuf>,
    application_name: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<PathBuf>,
    sslcert: Option<PathBuf>,
    sslkey: Option<PathBuf>,
    defaults_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    mariadbd: Option<PathBuf>,
}

/// One `[[stonith]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStonith {
    site: String,
    command: Option<Vec<String>>,
    url: Option<String>,
    timeout_ms: Option<u64>,
    username: Option<String>,
    password: Option<RawSecret>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

/// A STONITH hook: how the leader powers off (or isolates) a site whose
/// agent cannot confirm a fence. Success of the command (exit 0) or of the
/// HTTP call (2xx) counts as a confirmed fence.
#[derive(Debug, Clone, PartialEq)]
pub struct StonithConfig {
    /// The site it fences.
    pub site: SiteId,
    /// argv; `{epoch}`, `{site}` are replaced.
    pub command: Option<Vec<String>>,
    /// URL to POST `{"epoch", "site"}` to.
    pub url: Option<String>,
    /// Bound of each attempt.
    pub timeout: Duration,
    /// HTTP basic auth `(username, password)` for `url`.
    pub auth: Option<(String, Secret)>,
    /// CA bundle and client identity for an `https://` `url` (`ca_file`,
    /// `client_cert_file`, `client_key_file`).
    pub tls: ClientTls,
}

/// One database server, as every witness and its own site's agent see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The site it runs at.
    pub site: SiteId,
    /// Probe DSN (every witness connects with it; needs only `pg_monitor`).
    /// Its text carries no password: that is held apart as a `Secret`.
    pub dsn: ConnString,
    /// Superuser DSN the site agent uses for promotion and its test write
    /// (default: `dsn`, with its password unless `admin_password*` is set).
    pub admin_dsn: ConnString,
    /// Data directory, for the site agent's `pg_ctl`.
    pub data_dir: PathBuf,
    /// Directory of `pg_ctl` and friends.
    pub bin_dir: PathBuf,
    /// OS user the server runs as (`runuser` when palisade runs as root).
    pub os_user: Option<String>,
    /// How a standby of this server connects to it (for rejoin); its
    /// password apart, as in `dsn`. Shared (`Arc`) so that clones of the
    /// settings hold one copy of the secret.
    pub replication_conninfo: Option<Arc<ConnString>>,
    /// The `application_name` this server uses when it streams as a
    /// standby (in its `primary_conninfo`): what `synchronous_standby_names`
    /// must name in `sync` mode. Default: the site name.
    pub application_name: String,
    /// Where `pg_ctl start` sends the server's output when the agent
    /// starts it (`pg_ctl -l`); default: `<data_dir>/palisade-postmaster.log`.
    /// MariaDB: where a `mariadbd` the agent starts writes its output;
    /// default: `palisade-mariadbd.log` beside the pid file.
    pub log_file: PathBuf,
    /// `engine = "mariadb"`: the server's files. `None`: PostgreSQL (and
    /// then `data_dir`, `bin_dir`, `replication_conninfo` and
    /// `application_name` are its; for MariaDB they are unused).
    pub mariadb: Option<MariaFiles>,
}

impl DatabaseConfig {
    /// Whether this is a MariaDB master of a master-master pair.
    pub fn is_mariadb(&self) -> bool {
        self.mariadb.is_some()
    }
}

/// Where a MariaDB master's agent finds its server.
#[derive(Debug, Clone, PartialEq)]
pub struct MariaFiles {
    /// The server's option file (`mariadbd --defaults-file`).
    pub defaults_file: PathBuf,
    /// The pid file the running `mariadbd` writes: how the agent, the hard
    /// fence and the lease guard find the process.
    pub pid_file: PathBuf,
    /// The server binary the agent starts.
    pub mariadbd: PathBuf,
}

/// The validated database settings.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The configured primary (used once, to record the initial roles).
    pub primary: DatabaseConfig,
    /// The configured standby.
    pub standby: DatabaseConfig,
    /// How often every witness probes both databases.
    pub probe_interval: Duration,
    /// Probe timeout (connect + queries).
    pub probe_timeout: Duration,
    /// Probe timeout of the database on the witness's own site (no
    /// network between sites in the way): the site agent's hang watch
    /// needs two unanswered probes in a row, so this bounds how soon it
    /// sees a hung primary.
    pub probe_local_timeout: Duration,
    /// Lease timing.
    pub lease: LeaseConfig,
    /// How often the primary's agent renews its lease.
    pub renew_interval: Duration,
    /// Failure detector settings.
    pub detector: DetectorConfig,
    /// `sync` mode's behaviour with the standby down.
    pub sync_standby_down: SyncStandbyDown,
    /// `sync` mode: how long commits may wait while the standby's
    /// acknowledged position stands still before the standby counts as
    /// down (`palisade_core::sync_degrade`), and how long it must then be
    /// healthy before sync comes back. Without it, a cut link blocks every
    /// commit until PostgreSQL's `wal_sender_timeout`.
    pub sync_degrade_after_ms: u64,
    /// `false`: detect and report, never fail over on our own.
    pub automatic: bool,
    /// STONITH hooks, by site.
    pub stonith: Vec<StonithConfig>,
    /// Whether the old primary's agent rebuilds it as a standby by itself.
    pub rejoin: RejoinPolicy,
    /// How long a switchover waits for the target to replay the old
    /// primary's final WAL before it gives up and the old primary resumes.
    pub switchover_catchup_timeout: Duration,
    /// MariaDB: whether an old writer with errant transactions rejoins.
    pub errant_transactions: ErrantTransactions,
}

impl DatabaseSettings {
    /// The database of `site`, if it has one.
    pub fn at(&self, site: &str) -> Option<&DatabaseConfig> {
        [&self.primary, &self.standby]
            .into_iter()
            .find(|d| d.site.0 == site)
    }

    /// Both databases.
    pub fn all(&self) -> [&DatabaseConfig; 2] {
        [&self.primary, &self.standby]
    }

    /// Whether the pair is a MariaDB master-master pair (both databases
    /// have the same engine: validated).
    pub fn is_mariadb(&self) -> bool {
        self.primary.is_mariadb()
    }
}

type Fail = (String, String);

fn fail(key: impl Into<String>, reason: impl Into<String>) -> Fail {
    (key.into(), reason.into())
}

/// Validates the database sections; `sites` are the witnesses' sites.
pub(super) fn validate(
    probe: &RawProbe,
    lease: &RawLease,
    failover: &RawFailover,
    databases: &[RawDatabase],
    stonith: &[RawStonith],
    sites: &[String],
) -> Result<Option<DatabaseSettings>, Fail> {
    if databases.is_empty() {
        return Ok(None);
    }
    let max = super::MAX_TIMING_MS;
    for (key, value) in [
        ("probe.interval_ms", Some(probe.interval_ms)),
        ("probe.timeout_ms", Some(probe.timeout_ms)),
        ("probe.local_timeout_ms", probe.local_timeout_ms),
        ("lease.ttl_ms", Some(lease.ttl_ms)),
        ("lease.renew_interval_ms", lease.renew_interval_ms),
        ("failover.down_after_ms", Some(failover.down_after_ms)),
        ("failover.report_ttl_ms", failover.report_ttl_ms),
    ] {
        if let Some(v) = value.filter(|v| *v > max) {
            return Err(fail(key, format!("{v} ms is more than an hour ({max} ms)")));
        }
    }
    if probe.interval_ms < 50 {
        return Err(fail(
            "probe.interval_ms",
            format!("{} ms is too short; use at least 50", probe.interval_ms),
        ));
    }
    if probe.timeout_ms == 0 {
        return Err(fail("probe.timeout_ms", "must be at least 1"));
    }
    let local_timeout_ms = probe
        .local_timeout_ms
        .unwrap_or(LOCAL_PROBE_TIMEOUT_MS.min(probe.timeout_ms));
    if local_timeout_ms == 0 || local_timeout_ms > probe.timeout_ms {
        return Err(fail(
            "probe.local_timeout_ms",
            format!(
                "{local_timeout_ms} ms: must be at least 1 and at most probe.timeout_ms ({} ms)",
                probe.timeout_ms
            ),
        ));
    }
    if lease.ttl_ms < 200 {
        return Err(fail(
            "lease.ttl_ms",
            format!("{} ms is too short; use at least 200", lease.ttl_ms),
        ));
    }
    if !(0.0..=1.0).contains(&lease.drift) || lease.drift.is_nan() {
        return Err(fail(
            "lease.drift",
            format!(
                "{} must be between 0.0 and 1.0 (a fraction, 0.1 = 10 %)",
                lease.drift
            ),
        ));
    }
    let renew = lease.renew_interval_ms.unwrap_or(lease.ttl_ms / 4);
    if renew == 0 || renew * 2 > lease.ttl_ms {
        return Err(fail(
            "lease.renew_interval_ms",
            format!("{renew} ms must be positive and at most half of lease.ttl_ms ({} ms), so that one lost renewal does not fence a healthy primary", lease.ttl_ms),
        ));
    }
    if failover.switchover_catchup_timeout_ms < probe.interval_ms {
        return Err(fail(
            "failover.switchover_catchup_timeout_ms",
            format!(
                "{} ms is shorter than probe.interval_ms ({} ms): no catch-up could ever be seen",
                failover.switchover_catchup_timeout_ms, probe.interval_ms
            ),
        ));
    }
    if failover.down_after_ms < probe.interval_ms {
        return Err(fail(
            "failover.down_after_ms",
            format!("{} ms is shorter than probe.interval_ms ({} ms): one failed probe would be an outage", failover.down_after_ms, probe.interval_ms),
        ));
    }
    let report_ttl = failover
        .report_ttl_ms
        .unwrap_or((3 * probe.interval_ms).max(probe.timeout_ms + probe.interval_ms));
    if report_ttl < probe.interval_ms {
        return Err(fail(
            "failover.report_ttl_ms",
            format!(
                "{report_ttl} ms is shorter than probe.interval_ms; every report would be stale"
            ),
        ));
    }
    if failover.max_lag_seconds.is_nan() || failover.max_lag_seconds < 0.0 {
        return Err(fail(
            "failover.max_lag_seconds",
            "must be a non-negative number",
        ));
    }
    // Only where it has an effect: an async cluster with a slow probe
    // need not tune a sync-only key.
    if failover.replication == ReplicationMode::Sync
        && failover.sync_degrade_after_ms <= probe.interval_ms
    {
        return Err(fail(
            "failover.sync_degrade_after_ms",
            format!(
                "{} ms must be longer than probe.interval_ms ({} ms): the standby's acknowledged position is read once per probe, so a stall shorter than that would be judged on a single sample",
                failover.sync_degrade_after_ms, probe.interval_ms
            ),
        ));
    }
    if failover.cooldown_down_after_ms < failover.down_after_ms {
        return Err(fail(
            "failover.cooldown_down_after_ms",
            format!(
                "{} ms must be at least failover.down_after_ms ({} ms)",
                failover.cooldown_down_after_ms, failover.down_after_ms
            ),
        ));
    }

    let mut primary = None;
    let mut standby = None;
    for (i, d) in databases.iter().enumerate() {
        let key = |f: &str| format!("database[{i}].{f}");
        let mariadb = match d.engine.as_deref() {
            None | Some("postgresql") => false,
            Some("mariadb") => true,
            Some(other) => {
                return Err(fail(
                    key("engine"),
                    format!("{other:?} is not a database engine; the engines are \"postgresql\" (the default) and \"mariadb\" (the guide's MySQL master-master pair, on MariaDB)"),
                ))
            }
        };
        if let Some(first) = databases[..i].first() {
            if matches!(first.engine.as_deref(), Some("mariadb")) != mariadb {
                return Err(fail(
                    key("engine"),
                    format!(
                        "{:?} differs from database[0].engine ({:?}): both databases of the pair run the same engine",
                        d.engine.as_deref().unwrap_or("postgresql"),
                        first.engine.as_deref().unwrap_or("postgresql")
                    ),
                ));
            }
        }
        if mariadb {
            mariadb_only_keys(&key, d)?;
        } else {
            for (k, set) in [
                ("defaults_file", d.defaults_file.is_some()),
                ("pid_file", d.pid_file.is_some()),
                ("mariadbd", d.mariadbd.is_some()),
            ] {
                if set {
                    return Err(fail(
                        key(k),
                        "is a MariaDB key; this database's engine is \"postgresql\" (set engine = \"mariadb\" for the guide's master-master pair)",
                    ));
                }
            }
        }
        if !sites.contains(&d.site) {
            return Err(fail(
                key("site"),
                format!(
                    "{:?} is not the site of any [[witness]] (sites: {})",
                    d.site,
                    sites.join(", ")
                ),
            ));
        }
        if databases[..i].iter().any(|o| o.site == d.site) {
            return Err(fail(
                key("site"),
                format!("site {:?} already has a database; one per site", d.site),
            ));
        }
        let dsn = conn_string(
            &key("dsn"),
            &d.dsn,
            &key("password"),
            SecretKeys {
                inline: d.password.as_ref(),
                file: d.password_file.as_ref(),
                env: d.password_env.as_ref(),
            },
        )?;
        check_dsn(&key("dsn"), dsn.text(), mariadb)?;
        let admin_keys = SecretKeys {
            inline: d.admin_password.as_ref(),
            file: d.admin_password_file.as_ref(),
            env: d.admin_password_env.as_ref(),
        };
        let admin_dsn = match &d.admin_dsn {
            Some(a) => {
                let a = conn_string(&key("admin_dsn"), a, &key("admin_password"), admin_keys)?;
                check_dsn(&key("admin_dsn"), a.text(), mariadb)?;
                a
            }
            None => {
                match resolve(&key("admin_password"), admin_keys).map_err(|(k, r)| fail(k, r))? {
                    Some(p) => ConnString::with_password(dsn.text(), p)
                        .map_err(|r| fail(key("admin_password"), r))?,
                    None => dsn.clone(),
                }
            }
        };
        let replication_keys = SecretKeys {
            inline: d.replication_password.as_ref(),
            file: d.replication_password_file.as_ref(),
            env: d.replication_password_env.as_ref(),
        };
        let replication_conninfo = match &d.replication_conninfo {
            Some(r) => Some(Arc::new(conn_string(
                &key("replication_conninfo"),
                r,
                &key("replication_password"),
                replication_keys,
            )?)),
            None => {
                if resolve(&key("replication_password"), replication_keys)
                    .map_err(|(k, r)| fail(k, r))?
                    .is_some()
                {
                    return Err(fail(
                        key("replication_password"),
                        "is the password of replication_conninfo, which is not set",
                    ));
                }
                None
            }
        };
        let tls = pg_tls(&key, d)?;
        let params = tls.params();
        for (conn, conn_key) in [
            (Some(&dsn), "dsn"),
            (d.admin_dsn.as_ref().map(|_| &admin_dsn), "admin_dsn"),
            (replication_conninfo.as_deref(), "replication_conninfo"),
        ] {
            let Some(conn) = conn else { continue };
            if let Some((param, _)) = params.iter().find(|(p, _)| conn.param(p).is_some()) {
                return Err(fail(
                    key(conn_key),
                    format!(
                        "ambiguous: it sets {param} and so does {} ({} = {:?}); give it once, preferably as the key",
                        key(param),
                        param,
                        conn.param(param).unwrap_or_default()
                    ),
                ));
            }
        }
        let dsn = dsn.with_params(&params);
        let admin_dsn = admin_dsn.with_params(&params);
        let replication_conninfo = replication_conninfo.map(|r| Arc::new(r.with_params(&params)));
        let cfg = DatabaseConfig {
            site: SiteId(d.site.clone()),
            dsn,
            admin_dsn,
            data_dir: d
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/postgresql/15/main")),
            bin_dir: d
                .bin_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin")),
            os_user: d.os_user.clone(),
            replication_conninfo,
            application_name: d.application_name.clone().unwrap_or_else(|| d.site.clone()),
            log_file: d.log_file.clone().unwrap_or_else(|| match &d.pid_file {
                Some(pid) if mariadb => pid.with_file_name("palisade-mariadbd.log"),
                _ => d
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/var/lib/postgresql/15/main"))
                    .join("palisade-postmaster.log"),
            }),
            mariadb: mariadb.then(|| MariaFiles {
                defaults_file: d.defaults_file.clone().unwrap_or_default(),
                pid_file: d.pid_file.clone().unwrap_or_default(),
                mariadbd: d
                    .mariadbd
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/usr/sbin/mariadbd")),
            }),
        };
        let slot = match d.role.as_str() {
            "primary" => &mut primary,
            "standby" => &mut standby,
            other => {
                return Err(fail(
                    key("role"),
                    format!("{other:?} is not a role; use \"primary\" or \"standby\""),
                ))
            }
        };
        if slot.is_some() {
            return Err(fail(
                key("role"),
                format!(
                    "a second {}; configure exactly one primary and one standby",
                    d.role
                ),
            ));
        }
        *slot = Some(cfg);
    }
    let mut hooks = Vec::new();
    for (i, h) in stonith.iter().enumerate() {
        let key = |f: &str| format!("stonith[{i}].{f}");
        if !sites.contains(&h.site) {
            return Err(fail(
                key("site"),
                format!("{:?} is not the site of any [[witness]]", h.site),
            ));
        }
        if h.command.is_none() && h.url.is_none() {
            return Err(fail(key("command"), "give a command, a url, or both"));
        }
        if h.command
            .as_ref()
            .is_some_and(|c| c.is_empty() || c[0].trim().is_empty())
        {
            return Err(fail(
                key("command"),
                "must be a non-empty argv list, e.g. [\"/usr/local/bin/power-off\", \"{site}\"]",
            ));
        }
        if let Some(u) = &h.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(fail(
                    key("url"),
                    format!("{u:?} must be an http:// or https:// URL"),
                ));
            }
        }
        let timeout_ms = h.timeout_ms.unwrap_or(10_000);
        if timeout_ms == 0 {
            return Err(fail(key("timeout_ms"), "must be at least 1"));
        }
        let password = resolve(
            &key("password"),
            SecretKeys {
                inline: h.password.as_ref(),
                file: h.password_file.as_ref(),
                env: h.password_env.as_ref(),
            },
        )
        .map_err(|(k, r)| fail(k, r))?;
        let auth = match (&h.username, password) {
            (None, None) => None,
            (Some(u), Some(p)) if h.url.is_some() => Some((u.clone(), p)),
            (Some(_), Some(_)) => {
                return Err(fail(
                    key("username"),
                    "basic auth is for url, which is not set",
                ))
            }
            (Some(_), None) => {
                return Err(fail(
                    key("password"),
                    "username needs password, password_file or password_env",
                ))
            }
            (None, Some(_)) => return Err(fail(key("username"), "required with a password")),
        };
        let tls_files = TlsFiles {
            ca_file: h.ca_file.as_ref(),
            client_cert_file: h.client_cert_file.as_ref(),
            client_key_file: h.client_key_file.as_ref(),
        };
        if h.url.is_none() && (h.ca_file.is_some() || h.client_cert_file.is_some()) {
            let k = if h.ca_file.is_some() {
                "ca_file"
            } else {
                "client_cert_file"
            };
            return Err(fail(key(k), "is for url, which is not set"));
        }
        let tls = client_tls(&key, h.url.as_deref(), tls_files).map_err(|(k, r)| fail(k, r))?;
        hooks.push(StonithConfig {
            site: SiteId(h.site.clone()),
            command: h.command.clone(),
            url: h.url.clone(),
            timeout: Duration::from_millis(timeout_ms),
            auth,
            tls,
        });
    }
    let (Some(primary), Some(standby)) = (primary, standby) else {
        return Err(fail("database", "configure exactly two [[database]] entries: one with role = \"primary\", one with role = \"standby\""));
    };
    Ok(Some(DatabaseSettings {
        primary,
        standby,
        probe_interval: Duration::from_millis(probe.interval_ms),
        probe_timeout: Duration::from_millis(probe.timeout_ms),
        probe_local_timeout: Duration::from_millis(local_timeout_ms),
        lease: LeaseConfig {
            ttl_ms: lease.ttl_ms,
            drift: lease.drift,
        },
        renew_interval: Duration::from_millis(renew),
        detector: DetectorConfig {
            down_after_ms: failover.down_after_ms,
            report_ttl_ms: report_ttl,
            on_primary_crash: failover.on_primary_crash,
            restart_budget_ms: failover.restart_budget_ms,
            cooldown_ms: failover.cooldown_ms,
            cooldown_down_after_ms: failover.cooldown_down_after_ms,
            max_lag_bytes: failover.max_lag_bytes,
            max_lag_seconds: failover.max_lag_seconds,
            replication: failover.replication,
        },
        sync_standby_down: failover.sync_standby_down,
        sync_degrade_after_ms: failover.sync_degrade_after_ms,
        automatic: failover.automatic,
        stonith: hooks,
        rejoin: failover.rejoin,
        switchover_catchup_timeout: Duration::from_millis(failover.switchover_catchup_timeout_ms),
        errant_transactions: failover.errant_transactions,
    }))
}

/// `[[database]]`'s TLS keys, checked: what palisade adds to each of the
/// server's connection strings.
#[derive(Debug, Default)]
struct PgTls {
    /// `sslmode`: as written, else `verify-full` when `sslrootcert` is set,
    /// else unset (libpq's and sqlx's default, `prefer`).
    sslmode: Option<&'static str>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl PgTls {
    /// The connection parameters, in libpq's names.
    fn params(&self) -> Vec<(&'static str, &str)> {
        [
            ("sslmode", self.sslmode),
            ("sslrootcert", self.sslrootcert.as_deref()),
            ("sslcert", self.sslcert.as_deref()),
            ("sslkey", self.sslkey.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// Checks `sslmode`, `sslrootcert`, `sslcert` and `sslkey` of one
/// `[[database]]`; `key` makes a key's full name. The files are read now
/// (the key as a secret file: owner-only), so a broken one stops the start;
/// the PostgreSQL client libraries read them again when they connect.
fn pg_tls(key: &dyn Fn(&str) -> String, d: &RawDatabase) -> Result<PgTls, Fail> {
    const MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];
    let mode = match &d.sslmode {
        None => None,
        Some(m) => Some(*MODES.iter().find(|x| *x == m).ok_or_else(|| {
            fail(
                key("sslmode"),
                format!("{m:?} is not an sslmode; use one of {}", MODES.join(", ")),
            )
        })?),
    };
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let sslrootcert = match &d.sslrootcert {
        Some(p) => {
            read_certificates(&key("sslrootcert"), p).map_err(|(k, r)| fail(k, r))?;
            Some(path(p))
        }
        None => None,
    };
    let (sslcert, sslkey) = match (&d.sslcert, &d.sslkey) {
        (None, None) => (None, None),
        (Some(c), Some(k)) => {
            read_certificates(&key("sslcert"), c).map_err(|(k, r)| fail(k, r))?;
            read_private_key(&key("sslkey"), k).map_err(|(k, r)| fail(k, r))?;
            (Some(path(c)), Some(path(k)))
        }
        (Some(_), None) => return Err(fail(key("sslkey"), "required with sslcert")),
        (None, Some(_)) => return Err(fail(key("sslcert"), "required with sslkey")),
    };
    let sslmode = mode.or(sslrootcert.as_ref().map(|_| "verify-full"));
    match sslmode {
        Some("verify-ca" | "verify-full") if sslrootcert.is_none() => {
            return Err(fail(
                key("sslrootcert"),
                format!(
                    "required with sslmode = {:?}: the CA that signed the server's certificate",
                    sslmode.unwrap_or_default()
                ),
            ))
        }
        Some("disable") if sslrootcert.is_some() || sslcert.is_some() => {
            let k = if sslrootcert.is_some() {
                "sslrootcert"
            } else {
                "sslcert"
            };
            return Err(fail(key(k), "has no effect with sslmode = \"disable\""));
        }
        _ => {}
    }
    Ok(PgTls {
        sslmode,
        sslrootcert,
        sslcert,
        sslkey,
    })
}

/// The connection string at `key` (`dsn`) with its password: inline in
/// the text, or given by `password_key` (`password`, `password_file`,
/// `password_env`), not both.
fn conn_string(
    key: &str,
    text: &str,
    password_key: &str,
    password: SecretKeys<'_>,
) -> Result<ConnString, Fail> {
    match resolve(password_key, password).map_err(|(k, r)| fail(k, r))? {
        None => Ok(ConnString::from_inline(text)),
        Some(p) => ConnString::with_password(text, p)
            .map_err(|reason| fail(key, format!("ambiguous: {reason} ({password_key}* is set)"))),
    }
}

fn check_dsn(key: &str, dsn: &str, mariadb: bool) -> Result<(), Fail> {
    let rest = if mariadb {
        dsn.strip_prefix("mysql://")
            .or_else(|| dsn.strip_prefix("mariadb://"))
            .ok_or_else(|| {
                fail(
                    key,
                    format!(
                        "{} must start with mysql:// (mysql://USER:PASSWORD@HOST:PORT/) for engine = \"mariadb\"",
                        redact(dsn)
                    ),
                )
            })?
    } else {
        dsn.strip_prefix("postgres://")
            .or_else(|| dsn.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                fail(
                    key,
                    format!(
                        "{} must start with postgres:// (postgres://USER:PASSWORD@HOST:PORT/DBNAME)",
                        redact(dsn)
                    ),
                )
            })?
    };
    let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_port = host_part.split(['/', '?']).next().unwrap_or("");
    if host_port.is_empty() {
        return Err(fail(key, format!("{} names no host", redact(dsn))));
    }
    Ok(())
}

/// `engine = "mariadb"`: its required keys are set (absolute paths), and
/// no PostgreSQL key is, which would otherwise be silently ignored.
fn mariadb_only_keys(key: &dyn Fn(&str) -> String, d: &RawDatabase) -> Result<(), Fail> {
    for (k, set) in [
        ("data_dir", d.data_dir.is_some()),
        ("bin_dir", d.bin_dir.is_some()),
        ("replication_conninfo", d.replication_conninfo.is_some()),
        ("replication_password", d.replication_password.is_some()),
        (
            "replication_password_file",
            d.replication_password_file.is_some(),
        ),
        (
            "replication_password_env",
            d.replication_password_env.is_some(),
        ),
        ("application_name", d.application_name.is_some()),
        ("sslmode", d.sslmode.is_some()),
        ("sslrootcert", d.sslrootcert.is_some()),
        ("sslcert", d.sslcert.is_some()),
        ("sslkey", d.sslkey.is_some()),
    ] {
        if set {
            return Err(fail(
                key(k),
                "is a PostgreSQL key; engine = \"mariadb\" does not use it (the master-master pair is set up as the guide says, and palisade never reconfigures its replication)",
            ));
        }
    }
    for (k, path) in [
        ("defaults_file", &d.defaults_file),
        ("pid_file", &d.pid_file),
        ("mariadbd", &d.mariadbd),
    ] {
        match path {
            None if k == "mariadbd" => {}
            None => {
                return Err(fail(
                    key(k),
                    match k {
                        "defaults_file" => "required with engine = \"mariadb\": the server's option file, e.g. \"/etc/mysql/my.cnf\"",
                        _ => "required with engine = \"mariadb\": the pid file mariadbd writes, e.g. \"/run/mysqld/mysqld.pid\"",
                    },
                ))
            }
            Some(p) if !p.is_absolute() => {
                return Err(fail(
                    key(k),
                    format!("{} must be an absolute path", p.display()),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The DSN with its password replaced, for error messages and logs.
pub fn redact(dsn: &str) -> String {
    match (dsn.find("://"), dsn.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &dsn[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &dsn[..s + 3], user, &dsn[at..]),
                None => dsn.to_string(),
            }
        }
        _ => dsn.to_string(),
    }
}
