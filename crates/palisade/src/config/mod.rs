//! The witness configuration file: one TOML format, the same file on every
//! site except `node_id`. Parsed strictly (unknown keys are errors) and
//! validated before anything starts; every error names the file, the key and
//! the reason. `docs/configuration.md` documents every key.

mod database;
mod secrets;
mod site_actions;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_core::state::retention::{Keep, Retention};
use palisade_core::{NodeId, Topology, Witness};
use serde::Deserialize;

pub use database::{
    redact, DatabaseConfig, DatabaseSettings, ErrantTransactions, MariaFiles, RejoinPolicy,
    StonithConfig, SyncStandbyDown,
};
pub use secrets::{read_secret_env, read_secret_file, SecretError};
pub use site_actions::{AppConfig, EsTarget, FrontDoor, HttpCheck, SearchConfig, SiteActions};
pub use tls::{TlsSettings, DEFAULT_DIR as TLS_DEFAULT_DIR};

/// The largest value any `*_ms` timing key takes: an hour. Larger values
/// are mistakes (or hostile), and bounding them keeps every derived bound
/// (sums, multiples) far from overflow.
pub(crate) const MAX_TIMING_MS: u64 = 3_600_000;

/// A configuration that cannot be used. Displays as `FILE: KEY: REASON`.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The key at fault, as written in the file (`raft.heartbeat_interval_ms`,
    /// `witness[1].site`), or `(file)` for the file as a whole.
    pub key: String,
    /// Why it is rejected.
    pub reason: String,
}

/// The file as written. Defaults here are the documented defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_id: NodeId,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    raft: RawRaft,
    storage: RawStorage,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    witness: Vec<RawWitness>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    probe: database::RawProbe,
    #[serde(default)]
    lease: database::RawLease,
    #[serde(default)]
    failover: database::RawFailover,
    #[serde(default)]
    database: Vec<database::RawDatabase>,
    #[serde(default)]
    stonith: Vec<database::RawStonith>,
    #[serde(default)]
    app: Vec<site_actions::RawApp>,
    #[serde(default)]
    elasticsearch: Vec<site_actions::RawSearch>,
    #[serde(default)]
    front_door: Vec<site_actions::RawFrontDoor>,
    #[serde(default)]
    check: Vec<site_actions::RawCheck>,
    tls: Option<tls::RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default = "default_cluster_name")]
    name: String,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            name: default_cluster_name(),
        }
    }
}

fn default_cluster_name() -> String {
    "palisade".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRaft {
    heartbeat_interval_ms: u64,
    election_timeout_min_ms: u64,
    election_timeout_max_ms: u64,
    rpc_connect_timeout_ms: u64,
    snapshot_every: u64,
    join: bool,
}

impl Default for RawRaft {
    fn default() -> Self {
        let d = RaftTimings::default();
        Self {
            heartbeat_interval_ms: d.heartbeat.as_millis() as u64,
            election_timeout_min_ms: d.election_min.as_millis() as u64,
            election_timeout_max_ms: d.election_max.as_millis() as u64,
            rpc_connect_timeout_ms: d.connect_timeout.as_millis() as u64,
            snapshot_every: d.snapshot_every,
            join: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: LogFormat,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[retention]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    history_max: u64,
    history_max_age_days: u64,
    journal_max: u64,
    journal_max_age_days: u64,
    drills_max: u64,
    drills_max_age_days: u64,
}

impl Default for RawRetention {
    fn default() -> Self {
        let d = Retention::default();
        let days = |k: Keep| (k.max_age_ms / (24 * 3600 * 1000)) as u64;
        Self {
            history_max: d.history.max_count as u64,
            history_max_age_days: days(d.history),
            journal_max: d.journal.max_count as u64,
            journal_max_age_days: days(d.journal),
            drills_max: d.drills.max_count as u64,
            drills_max_age_days: days(d.drills),
        }
    }
}

/// The most records of one kind `[retention]` may keep: beyond it a
/// snapshot alone would be too large to ship.
const MAX_RETAINED: u64 = 1_000_000;
/// The longest `[retention]` may keep a record: a century.
const MAX_RETENTION_DAYS: u64 = 36_500;

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    #[serde(default)]
    tls: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    id: NodeId,
    site: String,
    raft_addr: String,
    control_addr: String,
}

/// How the daemon writes its logs to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Raft timing and compaction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTimings {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in
    /// `[election_min, election_max)` starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// TCP connect timeout for peer RPCs.
    pub connect_timeout: Duration,
    /// Build a snapshot and compact the log every this many entries.
    pub snapshot_every: u64,
    /// On its first start (an empty data directory) this witness waits to
    /// be added to a running cluster (`palisadectl member add|replace`)
    /// instead of bootstrapping one from the `[[witness]]` list.
    pub join: bool,
}

impl Default for RaftTimings {
    /// Defaults measured by `cargo bench -p palisade --bench leader_failover`
    /// (docs/benchmarks.md): a new leader within ~1 s of a leader's death,
    /// with no spurious elections on a loaded 2-core machine.
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(200),
            election_max: Duration::from_millis(400),
            connect_timeout: Duration::from_millis(500),
            snapshot_every: 1000,
            join: false,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `cluster.name`: guards against witnesses of two clusters talking.
    pub cluster_name: String,
    /// `[tls]`: mutual TLS (the default) or, explicitly, plaintext.
    pub tls: TlsSettings,
    /// The witnesses and which one this is.
    pub topology: Topology,
    /// Raft timings.
    pub raft: RaftTimings,
    /// Where this witness keeps its durable state, placeholders replaced.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`tracing_subscriber::EnvFilter` syntax); `RUST_LOG` wins.
    pub log_level: String,
    /// The protected database pair; `None` runs a witness cluster only.
    pub database: Option<DatabaseSettings>,
    /// Apps, Elasticsearch, front doors and checks a failover moves.
    pub actions: SiteActions,
    /// `[retention]`: how long the replicated records are kept (the
    /// leader's policy is the one applied).
    pub retention: Retention,
    /// `http.listen`: where this witness serves its health endpoints and
    /// Prometheus metrics (plain HTTP, read-only); `None`: not served.
    pub http_listen: Option<std::net::SocketAddr>,
    /// `http.tls`: the HTTP listener speaks HTTPS with this witness's
    /// certificate and takes an optional client certificate (an operator's
    /// gets the console's actions); needs `http.listen` and `[tls]`.
    pub http_tls: bool,
}

impl Config {
    /// Reads, parses and validates `file`, including that the data directory
    /// can be created and written.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        let config = Self::parse(file, &text)?;
        config.check_data_dir()?;
        Ok(config)
    }

    /// Parses and validates config text. Touches the file system and the
    /// environment only to read the secrets that `*_file` and `*_env` keys
    /// name.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason,
        };
        let raw: RawConfig = parse_toml(text).map_err(|(key, reason)| err(&key, reason))?;

        if raw.cluster.name.trim().is_empty() {
            return Err(err("cluster.name", "must not be empty".into()));
        }
        let r = &raw.raft;
        // Every Raft timing is bounded: an hour is far beyond any useful
        // value, and the bound keeps the arithmetic below from overflowing.
        for (key, value) in [
            ("raft.heartbeat_interval_ms", r.heartbeat_interval_ms),
            ("raft.election_timeout_min_ms", r.election_timeout_min_ms),
            ("raft.election_timeout_max_ms", r.election_timeout_max_ms),
            ("raft.rpc_connect_timeout_ms", r.rpc_connect_timeout_ms),
        ] {
            if value > MAX_TIMING_MS {
                return Err(err(
                    key,
                    format!("{value} ms is more than an hour ({MAX_TIMING_MS} ms)"),
                ));
            }
        }
        if r.heartbeat_interval_ms == 0 {
            return Err(err(
                "raft.heartbeat_interval_ms",
                "must be at least 1".into(),
            ));
        }
        if r.election_timeout_min_ms < 3 * r.heartbeat_interval_ms {
            return Err(err(
                "raft.election_timeout_min_ms",
                format!(
                    "{} ms is less than 3 × raft.heartbeat_interval_ms ({} ms); followers would start elections against a live leader",
                    r.election_timeout_min_ms, r.heartbeat_interval_ms
                ),
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(err(
                "raft.election_timeout_max_ms",
                format!(
                    "{} ms must be greater than raft.election_timeout_min_ms ({} ms): the random spread avoids split votes",
                    r.election_timeout_max_ms, r.election_timeout_min_ms
                ),
            ));
        }
        if r.rpc_connect_timeout_ms == 0 {
            return Err(err(
                "raft.rpc_connect_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        if r.snapshot_every < 10 {
            return Err(err(
                "raft.snapshot_every",
                format!("{} is too small; use at least 10", r.snapshot_every),
            ));
        }
        let entries: Vec<(NodeId, Witness)> = raw
            .witness
            .iter()
            .map(|w| {
                (
                    w.id,
                    Witness {
                        site: w.site.clone(),
                        raft_addr: w.raft_addr.clone(),
                        control_addr: w.control_addr.clone(),
                    },
                )
            })
            .collect();
        let topology = if raw.raft.join {
            Topology::joining(raw.node_id, &entries)
        } else {
            Topology::new(raw.node_id, &entries)
        }
        .map_err(|e| err(&e.key, e.reason))?;

        if raw.storage.data_dir.trim().is_empty() {
            return Err(err("storage.data_dir", "must not be empty".into()));
        }
        let data_dir = PathBuf::from(
            raw.storage
                .data_dir
                .replace("{site}", &topology.own().site)
                .replace("{node_id}", &raw.node_id.to_string()),
        );
        let data_dir = if data_dir.is_relative() {
            // Relative to the config file, so a checkout's deploy/local works
            // from any working directory.
            normalize(&file.parent().unwrap_or(Path::new(".")).join(data_dir))
        } else {
            data_dir
        };
        let sites: Vec<String> = topology
            .witnesses
            .values()
            .map(|w| w.site.clone())
            .collect();
        let database = database::validate(
            &raw.probe,
            &raw.lease,
            &raw.failover,
            &raw.database,
            &raw.stonith,
            &sites,
        )
        .map_err(|(key, reason)| err(&key, reason))?;
        let db_sites: Vec<String> = database
            .as_ref()
            .map(|d| d.all().iter().map(|c| c.site.0.clone()).collect())
            .unwrap_or_default();
        let any_actions = !(raw.app.is_empty()
            && raw.elasticsearch.is_empty()
            && raw.front_door.is_empty()
            && raw.check.is_empty());
        if any_actions && database.is_none() {
            return Err(err("database", "[[app]], [[elasticsearch]], [[front_door]] and [[check]] need the [[database]] pair they follow".into()));
        }
        let actions = site_actions::validate(
            &raw.app,
            &raw.elasticsearch,
            &raw.front_door,
            &raw.check,
            &db_sites,
        )
        .map_err(|(key, reason)| err(&key, reason))?;
        check_log_filter(&raw.log.level).map_err(|reason| err("log.level", reason))?;
        let tls = tls::validate(
            raw.tls.as_ref(),
            &raw.cluster.name,
            raw.node_id,
            file.parent().unwrap_or(Path::new(".")),
        )
        .map_err(|(key, reason)| err(&key, reason))?;

        let rr = &raw.retention;
        let mut keeps = Vec::new();
        for (name, count, days) in [
            ("history", rr.history_max, rr.history_max_age_days),
            ("journal", rr.journal_max, rr.journal_max_age_days),
            ("drills", rr.drills_max, rr.drills_max_age_days),
        ] {
            if !(1..=MAX_RETAINED).contains(&count) {
                return Err(err(
                    &format!("retention.{name}_max"),
                    format!("{count} is not between 1 and {MAX_RETAINED}"),
                ));
            }
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                return Err(err(
                    &format!("retention.{name}_max_age_days"),
                    format!("{days} is not between 1 and {MAX_RETENTION_DAYS} days"),
                ));
            }
            keeps.push(Keep::days(count as usize, days as i64));
        }
        let retention = Retention {
            history: keeps[0],
            journal: keeps[1],
            drills: keeps[2],
        };
        let http_listen = match &raw.http.listen {
            None => None,
            Some(addr) => Some(addr.trim().parse::<std::net::SocketAddr>().map_err(|e| {
                err(
                    "http.listen",
                    format!("{addr:?} is not an address to listen on (ip:port, e.g. \"0.0.0.0:8008\"): {e}"),
                )
            })?),
        };
        let http_tls = raw.http.tls;
        if http_tls && http_listen.is_none() {
            return Err(err(
                "http.tls",
                "is set without http.listen: there is no HTTP listener to secure".into(),
            ));
        }
        if http_tls && matches!(tls, TlsSettings::Insecure) {
            return Err(err(
                "http.tls",
                "needs this witness's certificate, but tls.insecure = true: unset one of them"
                    .into(),
            ));
        }

        Ok(Self {
            file: file.to_path_buf(),
            cluster_name: raw.cluster.name,
            tls,
            topology,
            raft: RaftTimings {
                heartbeat: Duration::from_millis(r.heartbeat_interval_ms),
                election_min: Duration::from_millis(r.election_timeout_min_ms),
                election_max: Duration::from_millis(r.election_timeout_max_ms),
                connect_timeout: Duration::from_millis(r.rpc_connect_timeout_ms),
                snapshot_every: r.snapshot_every,
                join: r.join,
            },
            data_dir,
            log_format: raw.log.format,
            log_level: raw.log.level,
            database,
            actions,
            retention,
            http_listen,
            http_tls,
        })
    }

    /// Creates the data directory if needed, owner-only (0700; an existing
    /// one that its group or others may access is narrowed to that), and
    /// proves it is writable by writing, syncing and removing a probe file.
    pub fn check_data_dir(&self) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let err = |reason: String| ConfigError {
            file: self.file.clone(),
            key: "storage.data_dir".into(),
            reason,
        };
        let dir = &self.data_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let mode = std::fs::metadata(dir)
            .map_err(|e| err(format!("cannot read {}: {e}", dir.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700)).map_err(
                |e| {
                    err(format!(
                        "{} has mode {:04o} and cannot be made owner-only: {e}",
                        dir.display(),
                        mode & 0o7777
                    ))
                },
            )?;
        }
        let probe = dir.join(".palisade-write-probe");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(b"probe")?;
            f.sync_all()?;
            std::fs::remove_file(&probe)
        };
        write().map_err(|e| err(format!("{} is not writable: {e}", dir.display())))
    }
}

/// `a/b/../c` as `a/c`, without touching the file system (the directory
/// may not exist yet), so messages show the path an operator expects.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Checks a log filter (`log.level`, `tracing_subscriber::EnvFilter`
/// syntax) more strictly than `EnvFilter` does: it reads a bare word that
/// is not a level as a *target* enabled at every level, so a typo such as
/// `"inf"` parses, enables only a target nobody logs to, and silences the
/// daemon. Here every directive must be a level (`info`) or `TARGET=LEVEL`
/// with a known level, and the filter must name at least one.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    use std::str::FromStr;
    use tracing_subscriber::filter::LevelFilter;
    const LEVELS: &str = "trace, debug, info, warn, error or off";
    let directives: Vec<&str> = filter.split(',').filter(|d| !d.trim().is_empty()).collect();
    if let Some(d) = directives.iter().find(|d| d.trim() != **d) {
        return Err(format!(
            "{d:?} has blanks around it, which the filter syntax does not allow; write {:?}",
            directives
                .iter()
                .map(|d| d.trim())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if directives.is_empty() {
        return Err(format!(
            "{filter:?} names no level, so nothing would be logged; write e.g. \"info\" or \
             \"info,openraft=warn\""
        ));
    }
    for d in directives {
        // `target=level`, `target[span{field=value}]=level`: the level is
        // after the last `=` outside brackets.
        let (target, level) = match d.rsplit_once('=') {
            Some((t, l)) if !l.contains(']') && !l.contains('}') => (Some(t.trim()), l.trim()),
            _ => (None, d),
        };
        if LevelFilter::from_str(level).is_err() {
            return Err(match target {
                Some(t) => {
                    format!("{d:?}: {level:?} is not a level ({LEVELS}); write e.g. \"{t}=warn\"")
                }
                None => format!(
                    "{level:?} is not a level ({LEVELS}); a target needs one, as in \"{d}=info\""
                ),
            });
        }
        if target.is_some_and(str::is_empty) {
            return Err(format!("{d:?} has a level but no target before the '='"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a valid filter: {e}"))
}

/// Parses TOML into `T`, returning the failing key path (as the file writes
/// it) and a one-line reason with the line number.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        let at = line_of(e.span())
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        (
            "(syntax)".to_string(),
            format!("{}{at}", one_line(e.message())),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = line_of(inner.span())
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let key = if path == "." {
            "(top level)".to_string()
        } else {
            path
        };
        (key, format!("{}{at}", one_line(inner.message())))
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 2

[cluster]
name = "test"

[storage]
data_dir = "/var/lib/palisade/{site}"

[[witness]]
id = 1
site = "a"
raft_addr = "127.0.0.1:7301"
control_addr = "127.0.0.1:7401"

[[witness]]
id = 2
site = "b"
raft_addr = "127.0.0.1:7302"
control_addr = "127.0.0.1:7402"

[[witness]]
id = 3
site = "c"
raft_addr = "127.0.0.1:7303"
control_addr = "127.0.0.1:7403"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/palisade/site.toml"), text)
    }

    fn key_of(text: &str) -> (String, String) {
        let e = parse(text).expect_err("config must be rejected");
        assert_eq!(e.file, Path::new("/etc/palisade/site.toml"));
        (e.key, e.reason)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.topology.own_id, 2);
        assert_eq!(c.data_dir, Path::new("/var/lib/palisade/b"));
        assert_eq!(c.raft, RaftTimings::default());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.cluster_name, "test");
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, reason) = key_of(&GOOD.replace("[cluster]", "[cluster]\nnmae = \"x\""));
        assert!(key.contains("cluster"), "{key}");
        assert!(reason.contains("nmae"), "{reason}");
        let (key, reason) = key_of(&GOOD.replacen(
            "raft_addr = \"127.0.0.1:7302\"",
            "rafr_addr = \"127.0.0.1:7302\"",
            1,
        ));
        assert!(key.starts_with("witness[1]"), "{key}");
        assert!(reason.contains("rafr_addr"), "{reason}");
        let (key, reason) = key_of(&format!("bogus = 1\n{GOOD}"));
        assert!(reason.contains("bogus"), "{key}: {reason}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let (key, reason) = key_of(&GOOD.replace("node_id = 2", "node_id = \"two\""));
        assert_eq!(key, "node_id");
        assert!(reason.contains("line 2"), "{reason}");
    }

    #[test]
    fn duplicate_ids_and_addresses() {
        let (key, reason) = key_of(&GOOD.replace("id = 3", "id = 1"));
        assert_eq!(key, "witness[2].id");
        assert!(reason.contains("duplicate"), "{reason}");
        let (key, _) = key_of(&GOOD.replace("127.0.0.1:7403", "127.0.0.1:7401"));
        assert_eq!(key, "witness[2].control_addr");
    }

    #[test]
    fn own_id_must_be_a_witness() {
        let (key, reason) = key_of(&GOOD.replace("node_id = 2", "node_id = 7"));
        assert_eq!(key, "node_id");
        assert!(reason.contains("7 is not the id"), "{reason}");
    }

    #[test]
    fn retention_defaults_and_bounds() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.retention, Retention::default());
        let with = |s: &str| GOOD.replace("[storage]", &format!("[retention]\n{s}\n\n[storage]"));
        let c = parse(&with("journal_max = 50\njournal_max_age_days = 7")).expect("valid");
        assert_eq!(c.retention.journal, Keep::days(50, 7));
        assert_eq!(c.retention.history, Retention::default().history);
        let (key, reason) = key_of(&with("history_max = 0"));
        assert_eq!(key, "retention.history_max");
        assert!(reason.contains("not between 1 and"), "{reason}");
        assert_eq!(
            key_of(&with("drills_max_age_days = 0")).0,
            "retention.drills_max_age_days"
        );
        assert_eq!(key_of(&with("journal_max = -1")).0, "retention.journal_max");
        assert_eq!(key_of(&with("keep = 3")).0, "retention.keep");
    }

    #[test]
    fn http_listen_is_an_ip_and_port_or_absent() {
        let with = |s: &str| GOOD.replace("[storage]", &format!("[http]\n{s}\n\n[storage]"));
        let (key, reason) = key_of(&with("listen = \"localhost:8008\""));
        assert_eq!(key, "http.listen");
        assert!(
            reason.contains("\"localhost:8008\" is not an address"),
            "{reason}"
        );
        assert_eq!(key_of(&with("listen = 8008")).0, "http.listen");
        assert_eq!(key_of(&with("port = 8008")).0, "http.port");
        let c = parse(&with("listen = \"127.0.0.1:8008\"")).expect("valid");
        assert_eq!(c.http_listen, Some("127.0.0.1:8008".parse().expect("addr")));
        assert_eq!(parse(GOOD).expect("valid").http_listen, None);
    }

    #[test]
    fn http_tls_needs_a_listener_and_certificates() {
        let with = |s: &str| GOOD.replace("[storage]", &format!("[http]\n{s}\n\n[storage]"));
        assert!(!parse(GOOD).expect("valid").http_tls);
        let (key, reason) = key_of(&with("tls = true"));
        assert_eq!(key, "http.tls");
        assert!(reason.contains("without http.listen"), "{reason}");
        let (key, _) = key_of(&with("listen = \"127.0.0.1:8008\"\ntls = \"yes\""));
        assert_eq!(key, "http.tls");
        let insecure = with("listen = \"127.0.0.1:8008\"\ntls = true")
            .replace("[storage]", "[tls]\ninsecure = true\n\n[storage]");
        let (key, reason) = key_of(&insecure);
        assert_eq!(key, "http.tls");
        assert!(reason.contains("tls.insecure"), "{reason}");
        let c = parse(&with("listen = \"127.0.0.1:8008\"\ntls = true")).expect("valid");
        assert!(c.http_tls);
    }

    #[test]
    fn bad_address() {
        let (key, reason) = key_of(&GOOD.replace("127.0.0.1:7302", "127.0.0.1"));
        assert_eq!(key, "witness[1].raft_addr");
        assert!(reason.contains("not an IP:port"), "{reason}");
    }

    #[test]
    fn raft_timings_are_checked() {
        let with = |s: &str| GOOD.replace("[storage]", &format!("[raft]\n{s}\n\n[storage]"));
        assert_eq!(
            key_of(&with("heartbeat_interval_ms = 0")).0,
            "raft.heartbeat_interval_ms"
        );
        assert_eq!(
            key_of(&with("election_timeout_min_ms = 100")).0,
            "raft.election_timeout_min_ms"
        );
        assert_eq!(
            key_of(&with(
                "election_timeout_min_ms = 900\nelection_timeout_max_ms = 900"
            ))
            .0,
            "raft.election_timeout_max_ms"
        );
        assert_eq!(key_of(&with("snapshot_every = 1")).0, "raft.snapshot_every");
    }

    #[test]
    fn missing_sections_and_bad_log_settings() {
        let (key, reason) =
            key_of(&GOOD.replace("[storage]\ndata_dir = \"/var/lib/palisade/{site}\"", ""));
        assert!(reason.contains("storage"), "{key}: {reason}");
        let (key, _) = key_of(&GOOD.replace("[storage]", "[log]\nformat = \"xml\"\n\n[storage]"));
        assert_eq!(key, "log.format");
        let (key, _) = key_of(&GOOD.replace("[storage]", "[log]\nlevel = \"info,[\"\n\n[storage]"));
        assert_eq!(key, "log.level");
        let (key, reason) =
            key_of(&GOOD.replace("[storage]", "[log]\nlevel = \"inf\"\n\n[storage]"));
        assert_eq!(key, "log.level");
        assert!(reason.contains("\"inf\" is not a level"), "{reason}");
        let (key, _) = key_of("node_id = [");
        assert_eq!(key, "(syntax)");
    }

    #[test]
    fn log_filters_must_name_known_levels() {
        for good in [
            "info",
            "WARN",
            "info,openraft=warn",
            "debug,palisade::controller=trace",
            "off",
            "palisade[lead]=debug",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("inf", "\"inf\" is not a level"),
            ("palisade", "a target needs one, as in \"palisade=info\""),
            ("info,openraft=wran", "\"wran\" is not a level"),
            ("", "names no level"),
            (" , ,", "names no level"),
            ("=info", "no target"),
            ("info, openraft=warn", "write \"info,openraft=warn\""),
        ] {
            let e = check_log_filter(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    const DATABASES: &str = r#"
[[database]]
site = "a"
role = "primary"
dsn = "postgres://palisade:secret@127.0.0.1:5432/postgres"

[[database]]
site = "b"
role = "standby"
dsn = "postgres://palisade:secret@127.0.0.1:5433/postgres"
"#;

    #[test]
    fn database_pair_parses_with_defaults() {
        let c = parse(&format!("{GOOD}{DATABASES}")).expect("valid");
        let db = c.database.expect("database settings");
        assert_eq!(db.primary.site.0, "a");
        assert_eq!(db.standby.site.0, "b");
        assert_eq!(db.detector.down_after_ms, 1000);
        assert_eq!(db.detector.report_ttl_ms, 1250);
        assert_eq!(db.renew_interval.as_millis(), 500);
        assert_eq!(db.primary.admin_dsn, db.primary.dsn);
        assert_eq!(db.rejoin, RejoinPolicy::Automatic);
        assert_eq!(db.switchover_catchup_timeout.as_millis(), 10_000);
        assert_eq!(db.sync_degrade_after_ms, 3000);
        assert!(
            parse(GOOD).expect("valid").database.is_none(),
            "no [[database]]: witnesses only"
        );
    }

    #[test]
    fn the_engine_is_postgresql_or_mariadb_with_its_own_keys() {
        let with = |engine: &str| {
            format!(
                "{GOOD}{}",
                DATABASES.replacen(
                    "site = \"a\"",
                    &format!("site = \"a\"\nengine = {engine}"),
                    1
                )
            )
        };
        assert!(parse(&with("\"postgresql\"")).is_ok());
        let (key, reason) = key_of(&with("\"mysql8\""));
        assert_eq!(key, "database[0].engine");
        assert!(
            reason.starts_with("\"mysql8\" is not a database engine"),
            "{reason}"
        );
        assert_eq!(key_of(&with("3")).0, "database[0].engine");

        // One MariaDB and one PostgreSQL: refused on the second.
        let mixed = format!(
            "{GOOD}{}",
            DATABASES.replacen("site = \"b\"", "site = \"b\"\nengine = \"mariadb\"", 1)
        );
        let (key, reason) = key_of(&mixed);
        assert_eq!(key, "database[1].engine");
        assert!(reason.contains("same engine"), "{reason}");

        let maria = |site: &str, role: &str, extra: &str| {
            format!(
                "[[database]]\nsite = \"{site}\"\nengine = \"mariadb\"\nrole = \"{role}\"\n\
                 dsn = \"mysql://palisade:pw@127.0.0.1:3306/\"\n\
                 defaults_file = \"/etc/mysql/{site}.cnf\"\npid_file = \"/run/mysqld/{site}.pid\"\n{extra}"
            )
        };
        let pair = |extra_a: &str| {
            format!(
                "{GOOD}{}{}",
                maria("a", "primary", extra_a),
                maria("b", "standby", "")
            )
        };
        let cfg = parse(&pair("")).expect("a MariaDB pair");
        let db = cfg.database.expect("databases");
        assert!(db.is_mariadb());
        let files = db.primary.mariadb.as_ref().expect("MariaDB files");
        assert_eq!(
            files.mariadbd,
            std::path::PathBuf::from("/usr/sbin/mariadbd")
        );
        assert_eq!(
            files.pid_file,
            std::path::PathBuf::from("/run/mysqld/a.pid")
        );
        assert_eq!(
            db.primary.log_file,
            std::path::PathBuf::from("/run/mysqld/palisade-mariadbd.log")
        );
        assert_eq!(db.primary.dsn.text(), "mysql://palisade@127.0.0.1:3306/");
        assert_eq!(db.errant_transactions, ErrantTransactions::Refuse);

        for (extra, bad_key, words) in [
            (
                "data_dir = \"/x\"\n",
                "database[0].data_dir",
                "PostgreSQL key",
            ),
            (
                "sslmode = \"require\"\n",
                "database[0].sslmode",
                "PostgreSQL key",
            ),
            ("pid_file = \"x.pid\"\n", "database[0].pid_file", "absolute"),
        ] {
            let text = pair(extra).replacen("pid_file = \"/run/mysqld/a.pid\"\n", "", 1);
            let text = if extra.starts_with("pid_file") {
                text
            } else {
                pair(extra)
            };
            let (key, reason) = key_of(&text);
            assert_eq!(key, bad_key, "{extra}: {reason}");
            assert!(reason.contains(words), "{extra}: {reason}");
        }
        let (key, reason) =
            key_of(&pair("").replacen("defaults_file = \"/etc/mysql/a.cnf\"\n", "", 1));
        assert_eq!(key, "database[0].defaults_file");
        assert!(reason.starts_with("required"), "{reason}");
        let (key, reason) = key_of(&pair("").replacen("mysql://", "postgres://", 1));
        assert_eq!(key, "database[0].dsn");
        assert!(reason.contains("mysql://"), "{reason}");
        let (key, reason) = key_of(&format!(
            "{GOOD}{}",
            DATABASES.replacen("site = \"a\"", "site = \"a\"\npid_file = \"/run/x.pid\"", 1)
        ));
        assert_eq!(key, "database[0].pid_file");
        assert!(reason.contains("MariaDB key"), "{reason}");
        let replicate = pair("").replacen(
            "[[database]]",
            "[failover]\nerrant_transactions = \"replicate\"\n\n[[database]]",
            1,
        );
        assert_eq!(
            parse(&replicate)
                .expect("errant_transactions = replicate")
                .database
                .expect("databases")
                .errant_transactions,
            ErrantTransactions::Replicate
        );
        let (key, _) = key_of(&pair("").replacen(
            "[[database]]",
            "[failover]\nerrant_transactions = \"ignore\"\n\n[[database]]",
            1,
        ));
        assert_eq!(key, "failover.errant_transactions");
    }

    #[test]
    fn database_errors_name_the_key() {
        let with = |s: &str| format!("{GOOD}{s}");
        assert_eq!(
            key_of(&with(&DATABASES.replace("site = \"b\"", "site = \"z\""))).0,
            "database[1].site"
        );
        assert_eq!(
            key_of(&with(
                &DATABASES.replace("role = \"standby\"", "role = \"primary\"")
            ))
            .0,
            "database[1].role"
        );
        assert_eq!(
            key_of(&with(
                &DATABASES.replace("role = \"standby\"", "role = \"replica\"")
            ))
            .0,
            "database[1].role"
        );
        let (key, reason) = key_of(&with(&DATABASES.replace(
            "postgres://palisade:secret@127.0.0.1:5433",
            "mysql://palisade:secret@h",
        )));
        assert_eq!(key, "database[1].dsn");
        // The password is held apart once read (a mysql:// URL's too), so
        // the message cannot show it.
        assert!(!reason.contains("secret"), "password redacted: {reason}");
        assert_eq!(
            key_of(&with(&format!(
                "[lease]\nttl_ms = 1000\nrenew_interval_ms = 900\n{DATABASES}"
            )))
            .0,
            "lease.renew_interval_ms"
        );
        assert_eq!(
            key_of(&with(&format!("[lease]\ndrift = 2.0\n{DATABASES}"))).0,
            "lease.drift"
        );
        assert_eq!(
            key_of(&with(&format!(
                "[failover]\ndown_after_ms = 100\n{DATABASES}"
            )))
            .0,
            "failover.down_after_ms"
        );
        assert_eq!(
            key_of(&with(&format!(
                "[failover]\non_primary_crash = \"reboot\"\n{DATABASES}"
            )))
            .0,
            "failover.on_primary_crash"
        );
        assert_eq!(
            key_of(&with(&format!(
                "[failover]\nrejoin = \"sometimes\"\n{DATABASES}"
            )))
            .0,
            "failover.rejoin"
        );
        let (key, reason) = key_of(&with(&format!(
            "[failover]\nswitchover_catchup_timeout_ms = 10\n{DATABASES}"
        )));
        assert_eq!(key, "failover.switchover_catchup_timeout_ms");
        assert!(reason.contains("probe.interval_ms"), "{reason}");
        let (key, _) = key_of(&with(&format!("{DATABASES}\n[[stonith]]\nsite = \"a\"\n")));
        assert_eq!(key, "stonith[0].command");
        let (key, _) = key_of(&with(&format!(
            "{DATABASES}\n[[stonith]]\nsite = \"a\"\nurl = \"ftp://x\"\n"
        )));
        assert_eq!(key, "stonith[0].url");
        let ok = parse(&with(&format!(
            "{DATABASES}\n[[stonith]]\nsite = \"a\"\ncommand = [\"/bin/true\"]\n"
        )))
        .expect("valid");
        assert_eq!(ok.database.expect("db").stonith.len(), 1);
        let one = DATABASES.split("[[database]]").nth(1).expect("first entry");
        assert_eq!(key_of(&with(&format!("[[database]]{one}"))).0, "database");
    }

    #[test]
    fn sync_degrade_after_must_outlast_a_probe_interval() {
        let with = |failover: &str| format!("{GOOD}[failover]\n{failover}\n{DATABASES}");
        let sync = "replication = \"sync\"";
        let ok = parse(&with(&format!("{sync}\nsync_degrade_after_ms = 1000")))
            .expect("valid")
            .database
            .expect("database settings");
        assert_eq!(ok.sync_degrade_after_ms, 1000);
        let (key, reason) = key_of(&with(&format!("{sync}\nsync_degrade_after_ms = 250")));
        assert_eq!(key, "failover.sync_degrade_after_ms");
        assert!(
            reason.contains("250 ms") && reason.contains("probe.interval_ms (250 ms)"),
            "{reason}"
        );
        // Against the configured probe interval, not the default one; the
        // default (3000) is too short for a 5 s probe.
        let (key, _) = key_of(&format!(
            "{GOOD}[probe]\ninterval_ms = 5000\n[failover]\ndown_after_ms = 5000\n{sync}\n{DATABASES}"
        ));
        assert_eq!(key, "failover.sync_degrade_after_ms");
        // Async mode never reads it: a slow probe needs no sync tuning.
        parse(&format!(
            "{GOOD}[probe]\ninterval_ms = 5000\n[failover]\ndown_after_ms = 5000\n{DATABASES}"
        ))
        .expect("valid in async mode");
        let (key, reason) = key_of(&with(&format!("{sync}\nsync_degrade_after_ms = \"3s\"")));
        assert_eq!(key, "failover.sync_degrade_after_ms");
        assert!(reason.contains("expected u64"), "{reason}");
    }

    #[test]
    fn data_dir_is_shown_normalized() {
        let c =
            parse(&GOOD.replace("/var/lib/palisade/{site}", "../../state/{site}")).expect("valid");
        assert_eq!(c.data_dir, Path::new("/state/b"));
        assert_eq!(normalize(Path::new("deploy/local/../../x")), Path::new("x"));
        assert_eq!(normalize(Path::new("../x")), Path::new("../x"));
    }

    #[test]
    fn relative_data_dir_is_relative_to_the_file() {
        let c = parse(&GOOD.replace("/var/lib/palisade/{site}", "data/{node_id}")).expect("valid");
        assert_eq!(c.data_dir, Path::new("/etc/palisade/data/2"));
    }

    #[test]
    fn unwritable_data_dir_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        // A directory below a regular file cannot be created, even by root.
        let bad = file.join("data");
        let c = parse(&GOOD.replace(
            "/var/lib/palisade/{site}",
            bad.to_str().expect("utf-8 temp path"),
        ))
        .expect("parses");
        let e = c.check_data_dir().expect_err("must be refused");
        assert_eq!(e.key, "storage.data_dir");
        assert!(e.reason.contains("cannot create"), "{e}");
    }
}
