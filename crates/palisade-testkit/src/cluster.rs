//! Three real `palisade` witness processes on loopback, driven with the
//! real `palisadectl` binary and the control API: the harness of the
//! daemon's end-to-end tests and benches.
//!
//! [`Cluster`] writes one config per witness (sites a, b, c; free ports;
//! data under its temporary directory) plus whatever sections a test
//! appends: the `[[database]]` sections of a [`PgPair`]
//! ([`database_sections`], [`db_config`]), apps, front doors. The binaries
//! are the ones beside the test (see [`crate::bins`]).

use crate::pki::TestPki;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{StatusReply, StatusRequest};
use serde::Serialize;
use serde_json::Value;

use crate::bins;
use crate::mariadb::{mariadbd_path, MariaPair, MariaServer, MARIA_OS_USER};
use crate::pg::{PgPair, PgServer};
use crate::wait::{wait_for, Attempt};

/// How long a test waits for the cluster to settle or a failover to finish.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Fast probes and a short lease: failures are seen within a second or two.
pub const FAST: &str = "[probe]\ninterval_ms = 200\n\n[lease]\nttl_ms = 1500\n";

/// For the operator-operation tests: fast probes, the default lease. A
/// planned handover must not race a lease that a loaded machine cannot
/// renew in time.
pub const OPERATED: &str = "[probe]\ninterval_ms = 200\n";

/// Each test runs a PostgreSQL pair and three witnesses; on a two-core
/// machine more than two such tests at once starve each other's probes.
/// (One semaphore per test binary: each links its own copy.)
pub static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The `palisade` binary under test; panics saying how to build it when
/// it is missing.
pub fn palisade_bin() -> PathBuf {
    bins::binary("palisade").unwrap_or_else(|e| panic!("{e:#}"))
}

/// The `palisadectl` binary, built by the same `cargo test --workspace`
/// run into the same directory as `palisade`; panics saying how to build
/// it when it is missing.
pub fn palisadectl_bin() -> PathBuf {
    bins::binary("palisadectl").unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `palisade ARGS --config CONFIG` to completion.
pub fn palisade(args: &[&str], config: &Path) -> Output {
    Command::new(palisade_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run palisade")
}

/// The raft port of witness `id` in a config written by [`Cluster`].
fn raft_port(config: &str, id: u64) -> u16 {
    let entry = config
        .split("[[witness]]")
        .find(|e| e.contains(&format!("\nid = {id}\n")))
        .expect("the witness's entry");
    entry
        .lines()
        .find_map(|l| l.strip_prefix("raft_addr = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .expect("its raft_addr")
}

/// Free loopback ports, found by binding port 0. The listeners are dropped
/// before the witnesses bind, a small race that a retry-free test accepts
/// because the kernel does not hand the same ephemeral port out again soon.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One witness of a test cluster.
pub struct Node {
    /// Its Raft id (a = 1, b = 2, c = 3).
    pub id: u64,
    /// Its site.
    pub site: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its `storage.data_dir`.
    pub data_dir: PathBuf,
    /// Its stderr, appended to across restarts.
    pub log: PathBuf,
    /// Its control API, `https://127.0.0.1:PORT` (`http://` when the
    /// cluster is insecure).
    pub control: String,
    /// The cluster's certificates (`None`: an insecure cluster).
    pub pki: Option<TestPki>,
    /// Its HTTP listener (health endpoints, metrics), `http://127.0.0.1:PORT`;
    /// `None` when the test's config has an `[http]` section of its own.
    pub http: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// A channel to its control port, as [`OPERATOR`](crate::pki::OPERATOR)
    /// when the cluster has certificates.
    pub async fn control_channel(
        &self,
        connect: Duration,
        call: Duration,
    ) -> anyhow::Result<tonic::transport::Channel> {
        control_channel(&self.control, self.pki.as_ref(), connect, call).await
    }

    /// Starts (or restarts) the witness process; stderr is appended to its log.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// [`Node::start`] with extra environment variables (failpoints).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        self.spawn(&palisade_bin(), env);
    }

    /// [`Node::start`] with another `palisade` binary: an older release's
    /// ([`Node::previous_release_bin`]), for the mixed-release tests.
    pub fn start_binary(&mut self, bin: &Path) {
        self.spawn(bin, &[]);
    }

    /// The previous release's `palisade` (the one `release/previous`
    /// names), built into `target/previous-release/bin/` beside this build's
    /// `target/<profile>/` by `scripts/build-previous-release`; panics
    /// saying so when it is missing.
    pub fn previous_release_bin() -> PathBuf {
        let dir = bins::build_dir();
        let path = dir
            .parent()
            .unwrap_or(&dir)
            .join("previous-release")
            .join("bin")
            .join("palisade");
        assert!(
            path.is_file(),
            "{} is missing: build it first with `./scripts/build-previous-release` (`./scripts/test` does)",
            path.display()
        );
        path
    }

    fn spawn(&mut self, bin: &Path, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// Sends `sig` to the running witness.
    pub fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("node is running");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal witness");
    }

    /// SIGKILLs the witness and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own and returns its exit code;
    /// kills it and panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("node is running");
        let id = self.id;
        let exited = wait_for(&format!("node {id} to exit"), timeout, async || match child
            .try_wait()
        {
            Ok(Some(status)) => Attempt::Ready(status.code()),
            Ok(None) => Attempt::NotYet(String::new()),
            Err(e) => Attempt::GiveUp(e.into()),
        })
        .await;
        exited.unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e:#}");
        })
    }

    /// The witness's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the witness was started and not killed or seen to exit.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Three witnesses on loopback, each with its own config and data dir.
/// Dropping it SIGKILLs them (after dumping their logs when the test
/// panicked).
pub struct Cluster {
    /// Configs, data and logs.
    pub dir: tempfile::TempDir,
    /// Witnesses a, b, c (ids 1, 2, 3).
    pub nodes: Vec<Node>,
    /// Their certificates (`None`: the configs say `tls.insecure`).
    pub pki: Option<TestPki>,
}

impl Cluster {
    /// Writes configs for three witnesses on free ports. Nothing started.
    #[allow(clippy::new_without_default)] // writes files: not a default
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// Like [`Cluster::new`], with `extra` TOML appended to every config
    /// (the `[[database]]`, `[failover]`, ... sections). The witnesses run
    /// with mutual TLS (certificates made in the cluster's directory),
    /// unless `extra` has a `[tls]` section of its own, or the environment
    /// sets `PALISADE_BENCH_INSECURE=1` (the benchmarks' baseline for the
    /// cost of TLS: plaintext).
    pub fn with_config(extra: &str) -> Self {
        let insecure = std::env::var("PALISADE_BENCH_INSECURE").is_ok_and(|v| v == "1");
        let extra = if insecure && !extra.contains("[tls]") {
            format!("{extra}\n[tls]\ninsecure = true\n")
        } else {
            extra.to_string()
        };
        let extra = extra.as_str();
        let dir = tempfile::Builder::new()
            .prefix("palisade-test-")
            .tempdir()
            .expect("tempdir");
        let pki = (!extra.contains("[tls]")).then(|| {
            TestPki::create(
                &dir.path().join("tls"),
                "test",
                &[(1, "a"), (2, "b"), (3, "c")],
            )
            .expect("test certificates")
        });
        let tls_section = pki
            .as_ref()
            .map(TestPki::config_section)
            .unwrap_or_default();
        let scheme = if pki.is_some() { "https" } else { "http" };
        let ports = free_ports(9);
        let own_http = !extra.contains("[http]");
        let sites = ["a", "b", "c"];
        let mut witnesses = String::new();
        for (i, site) in sites.iter().enumerate() {
            witnesses.push_str(&format!(
                "\n[[witness]]\nid = {}\nsite = \"{site}\"\nraft_addr = \"127.0.0.1:{}\"\ncontrol_addr = \"127.0.0.1:{}\"\n",
                i + 1,
                ports[2 * i],
                ports[2 * i + 1]
            ));
        }
        let mut nodes = Vec::new();
        for (i, site) in sites.iter().enumerate() {
            let id = i as u64 + 1;
            let config = dir.path().join(format!("site-{site}.toml"));
            let http_port = ports[6 + i];
            let http_section = if own_http {
                format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n")
            } else {
                String::new()
            };
            let text = format!(
                "node_id = {id}\n\n[cluster]\nname = \"test\"\n\n[storage]\ndata_dir = \"data/{{site}}\"\n{witnesses}\n{tls_section}{http_section}\n{extra}"
            );
            std::fs::write(&config, text).expect("write config");
            nodes.push(Node {
                id,
                site: site.to_string(),
                config,
                data_dir: dir.path().join("data").join(site),
                log: dir.path().join(format!("site-{site}.log")),
                control: format!("{scheme}://127.0.0.1:{}", ports[2 * i + 1]),
                pki: pki.clone(),
                http: own_http.then(|| format!("http://127.0.0.1:{http_port}")),
                child: None,
            });
        }
        Self { dir, nodes, pki }
    }

    /// Writes configs and starts all three witnesses.
    pub fn start() -> Self {
        let mut c = Self::new();
        for n in &mut c.nodes {
            n.start();
        }
        c
    }

    /// The witness with this id.
    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("node id in cluster")
    }

    /// Writes the config of a new witness `id` for the site of witness
    /// `replacing` (on new ports, with its own data directory and
    /// certificate, and `raft.join = true`: it waits to be added with
    /// `palisadectl member replace`), and adds it to the cluster's nodes.
    /// Nothing started. Its `[[witness]]` list is the cluster after the
    /// replacement, as an operator would write it.
    pub fn add_replacement(&mut self, id: u64, replacing: u64) -> &mut Node {
        self.add_joining(id, replacing, None)
    }

    /// Like [`Cluster::add_replacement`], for a witness at a new `site`
    /// (`palisadectl member add`): its list is witness `like`'s plus itself.
    pub fn add_witness(&mut self, id: u64, site: &str, like: u64) -> &mut Node {
        self.add_joining(id, like, Some(site))
    }

    fn add_joining(&mut self, id: u64, like: u64, new_site: Option<&str>) -> &mut Node {
        let old = self
            .nodes
            .iter()
            .find(|n| n.id == like)
            .expect("the witness to start from is a node of the cluster");
        let site = new_site.map_or_else(|| old.site.clone(), str::to_string);
        let text = std::fs::read_to_string(&old.config).expect("read that witness's config");
        // A joining witness's config may be the model (it says join already).
        let joins = text.contains("\n[raft]\njoin = true\n");
        assert!(
            joins || !text.contains("\n[raft]"),
            "the test's config has a [raft] section: add join = true there"
        );
        let ports = free_ports(3);
        let new_raft = format!("127.0.0.1:{}", ports[0]);
        let new_control = format!("127.0.0.1:{}", ports[1]);
        let mut text: String = text
            .replacen(
                &format!("node_id = {like}\n"),
                &format!("node_id = {id}\n"),
                1,
            )
            .lines()
            .map(|l| {
                if l.starts_with("data_dir = ") {
                    format!("data_dir = \"data/node-{id}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        if new_site.is_none() {
            let old_raft = format!("127.0.0.1:{}", raft_port(&text, like));
            let old_control = old.control.rsplit("//").next().expect("control address");
            text = text
                .replacen(&format!("\nid = {like}\n"), &format!("\nid = {id}\n"), 1)
                .replacen(&old_raft, &new_raft, 1)
                .replacen(old_control, &new_control, 1);
        } else {
            text.push_str(&format!(
                "\n[[witness]]\nid = {id}\nsite = \"{site}\"\nraft_addr = \"{new_raft}\"\ncontrol_addr = \"{new_control}\"\n"
            ));
        }
        if let Some(http) = &old.http {
            let old_http = http.trim_start_matches("http://");
            text = text.replacen(old_http, &format!("127.0.0.1:{}", ports[2]), 1);
        }
        if !joins {
            text.push_str("\n[raft]\njoin = true\n");
        }
        if let Some(pki) = &self.pki {
            palisade_tls::issue_witness(
                &pki.dir,
                &pki.dir,
                id,
                &site,
                palisade_tls::Validity::days(365),
            )
            .expect("issue the new witness's certificate");
        }
        let config = self.dir.path().join(format!("node-{id}.toml"));
        std::fs::write(&config, text).expect("write the new witness's config");
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        let http = old
            .http
            .as_ref()
            .map(|_| format!("http://127.0.0.1:{}", ports[2]));
        self.nodes.push(Node {
            id,
            site,
            config,
            data_dir: self.dir.path().join("data").join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
            control: format!("{scheme}://{new_control}"),
            pki: self.pki.clone(),
            http,
            child: None,
        });
        self.nodes.last_mut().expect("just pushed")
    }

    /// `palisadectl --endpoint <node's control> ARGS...`, as the test
    /// operator (role `operator`).
    pub fn ctl(&self, id: u64, args: &[&str]) -> Output {
        self.ctl_as(id, crate::pki::OPERATOR, args)
    }

    /// `palisadectl` as operator `who` (its certificate; see
    /// [`crate::pki`]) against witness `id`.
    pub fn ctl_as(&self, id: u64, who: &str, args: &[&str]) -> Output {
        let node = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id in cluster");
        let env = self
            .pki
            .as_ref()
            .map(|p| p.ctl_env(who))
            .unwrap_or_default();
        Command::new(palisadectl_bin())
            .arg("--endpoint")
            .arg(&node.control)
            .args(args)
            .envs(env)
            .output()
            .expect("run palisadectl")
    }

    /// `status --output json` from one node, if it answered with a leader.
    pub fn status(&self, id: u64) -> Option<Value> {
        let out = self.ctl(id, &["status", "--output", "json"]);
        if out.status.code() != Some(0) {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until every running node reports the same known leader and
    /// term, that leader itself among them; returns (leader, term). Panics
    /// naming `why` after `timeout`.
    pub async fn wait_for_agreed_leader(&self, why: &str, timeout: Duration) -> (u64, u64) {
        let agreed = wait_for(why, timeout, async || {
            let running: Vec<u64> = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(|n| n.id)
                .collect();
            let mut seen = None;
            for id in &running {
                let s = self.status(*id)?;
                let view = (s["leader_id"].as_u64()?, s["term"].as_u64()?);
                if seen.is_some_and(|v| v != view) {
                    return None;
                }
                seen = Some(view);
            }
            let (leader, term) = seen?;
            running.contains(&leader).then_some((leader, term))
        })
        .await;
        agreed.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Appends a note through `via` and returns the log index it got.
    pub fn annotate(&self, via: u64, text: &str) -> u64 {
        let out = self.ctl(
            via,
            &["annotate", text, "--author", "test", "--output", "json"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "annotate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("annotate json");
        v["log_index"].as_u64().expect("log_index")
    }

    /// The journal texts as node `id` has applied them.
    pub fn journal(&self, id: u64) -> Option<Vec<String>> {
        let out = self.ctl(id, &["journal", "--output", "json"]);
        if out.status.code() != Some(0) {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            v["entries"]
                .as_array()?
                .iter()
                .filter_map(|e| e["text"].as_str().map(String::from))
                .collect(),
        )
    }

    /// `palisade inspect --output json` of a stopped node's data dir.
    pub fn inspect(&self, id: u64) -> Value {
        let node = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id in cluster");
        let out = Command::new(palisade_bin())
            .args(["inspect", "--output", "json", "--data-dir"])
            .arg(&node.data_dir)
            .output()
            .expect("run palisade inspect");
        assert_eq!(
            out.status.code(),
            Some(0),
            "inspect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("inspect json")
    }

    /// Dumps every node's log to stderr (called on failure paths).
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            eprintln!(
                "===== log of node {} (site {}) =====\n{}",
                n.id,
                n.site,
                n.log_text()
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            n.kill9();
        }
        // Kept for CI's secret grep (`.ci/check-secrets`).
        crate::logs::keep(
            &crate::logs::run_dir("cluster"),
            self.nodes
                .iter()
                .map(|n| (n.log.clone(), format!("site-{}.log", n.site))),
        );
    }
}

/// One `[[database]]` (docs/configuration.md).
#[derive(Serialize)]
struct Database<'a> {
    site: &'a str,
    role: &'a str,
    /// The name the server streams under as a standby: what
    /// `synchronous_standby_names` names in `sync` mode.
    application_name: &'a str,
    dsn: String,
    data_dir: &'a Path,
    bin_dir: &'a Path,
    log_file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_user: Option<&'a str>,
    /// How the other server streams from this one once it rejoins.
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_conninfo: Option<String>,
}

impl<'a> Database<'a> {
    fn of(site: &'a str, role: &'a str, s: &'a PgServer, rejoin: bool) -> Self {
        Database {
            site,
            role,
            application_name: s.name(),
            dsn: s.dsn(),
            data_dir: s.data_dir(),
            bin_dir: s.bin_dir(),
            log_file: s.log_file(),
            os_user: s.os_user(),
            replication_conninfo: rejoin.then(|| s.replication_conninfo()),
        }
    }
}

/// The `[[database]]` sections that hand `pair` to the witnesses: site a's
/// server is the primary, site b's the standby. With `rejoin`, each names
/// its `replication_conninfo`, so that an old primary rejoins as a standby
/// on its own after a failover.
pub fn database_sections(pair: &PgPair, rejoin: bool) -> String {
    #[derive(Serialize)]
    struct Sections<'a> {
        database: [Database<'a>; 2],
    }
    let sections = Sections {
        database: [
            Database::of("a", "primary", &pair.primary, rejoin),
            Database::of("b", "standby", &pair.standby, rejoin),
        ],
    };
    toml::to_string(&sections).expect("the [[database]] sections are plain strings and paths")
}

/// `tuning` (probe, lease and failover settings) and the `[[database]]`
/// sections for `pair`.
pub fn db_config(pair: &PgPair, tuning: &str) -> String {
    format!("{tuning}\n{}", database_sections(pair, false))
}

/// Like [`db_config`], with each server's `replication_conninfo`, so that
/// an old primary rejoins as a standby on its own after a failover.
pub fn db_config_rejoining(pair: &PgPair, tuning: &str) -> String {
    format!("{tuning}\n{}", database_sections(pair, true))
}

/// A channel to the control port at `endpoint` (`https://HOST:PORT` with
/// `pki`'s [`OPERATOR`](crate::pki::OPERATOR) certificate, or
/// `http://HOST:PORT` for an insecure cluster), connected within `connect`,
/// every call bounded by `call`.
pub async fn control_channel(
    endpoint: &str,
    pki: Option<&TestPki>,
    connect: Duration,
    call: Duration,
) -> anyhow::Result<tonic::transport::Channel> {
    match pki {
        Some(pki) => {
            pki.control_channel(
                crate::pki::OPERATOR,
                crate::pki::authority(endpoint),
                connect,
                call,
            )
            .await
        }
        None => Ok(
            tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
                .connect_timeout(connect)
                .timeout(call)
                .connect()
                .await?,
        ),
    }
}

/// `Control.Status` at `endpoint` over a fresh channel (see
/// [`control_channel`]), if it connects within `connect` and answers within
/// `call`.
pub async fn status_at(
    endpoint: &str,
    pki: Option<&TestPki>,
    connect: Duration,
    call: Duration,
) -> Option<StatusReply> {
    let ch = control_channel(endpoint, pki, connect, call).await.ok()?;
    ControlClient::new(ch)
        .status(StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// `Control.Status` of witness `id`, if it answers (a fresh channel each
/// time: a restarted witness is reached again).
pub async fn status(c: &Cluster, id: u64) -> Option<StatusReply> {
    let node = c.nodes.iter().find(|n| n.id == id)?;
    status_at(
        &node.control,
        node.pki.as_ref(),
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .await
}

/// Polls the status of the running nodes until `f` accepts one; after
/// `timeout` dumps the witnesses' logs and panics naming `what` and the
/// last status seen.
pub async fn wait_status<T>(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    f: impl FnMut(&StatusReply) -> Option<T>,
) -> T {
    wait_status_from(c, what, timeout, async |id| status(c, id).await, f).await
}

/// [`wait_status`] with the status of witness `id` asked by `ask(id)` (a
/// bench reuses its channels).
pub async fn wait_status_from<T>(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    mut ask: impl AsyncFnMut(u64) -> Option<StatusReply>,
    mut f: impl FnMut(&StatusReply) -> Option<T>,
) -> T {
    let mut last = String::from("no answer");
    let found = wait_for(what, timeout, async || {
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            if let Some(s) = ask(n.id).await {
                if let Some(v) = f(&s) {
                    return Attempt::Ready(v);
                }
                last = format!(
                    "leader {:?} epoch {} primary {} assessment {:?} in progress {:?}",
                    s.leader_id,
                    s.epoch,
                    s.primary_site,
                    s.assessment,
                    s.failover_in_progress.as_ref().map(|f| f.steps.len())
                );
            }
        }
        Attempt::NotYet(last.clone())
    })
    .await;
    found.unwrap_or_else(|e| {
        c.dump_logs();
        panic!("{e:#}");
    })
}

/// Waits until the cluster leads, has recorded the roles, the detector is
/// healthy, and the primary's agent holds its lease: from then on the agent
/// is in charge of its database (a crash before that would be met by the
/// agent's first start, not by the crash policy).
pub async fn wait_ready(c: &Cluster) {
    wait_status(
        c,
        "roles recorded, the detector healthy and the primary serving under its lease",
        SETTLE,
        |s| {
            // Serving, not only leased: until its agent has seen the server
            // run under the lease, a crash is a dead server found at start
            // and is restarted, whatever on_primary_crash says.
            let leased = s.nodes.iter().any(|n| {
                n.site == s.primary_site && n.lease_remaining_ms.is_some() && n.serving_under_lease
            });
            (s.primary_site == "a" && s.assessment.starts_with("healthy") && leased).then_some(())
        },
    )
    .await;
}

/// Makes sure witness `id` is not the leader: if it is, stops it until the
/// others elect a leader, then starts it again (it rejoins as a follower).
pub async fn move_leadership_off(c: &mut Cluster, id: u64) {
    if wait_status(c, "a leader", SETTLE, |s| s.leader_id).await != id {
        return;
    }
    c.node(id).kill9();
    wait_status(c, "a leader among the others", SETTLE, |s| {
        s.leader_id.filter(|l| *l != id)
    })
    .await;
    c.node(id).start();
    wait_ready(c).await;
    let leader = wait_status(c, "a leader", SETTLE, |s| s.leader_id).await;
    assert_ne!(leader, id, "leadership moved off witness {id}");
}

/// Three witnesses over `pair` with `tuning` (probe, lease, failover
/// settings), started and ready (leader, roles recorded, detector healthy).
pub async fn start_cluster(pair: &PgPair, tuning: &str) -> Cluster {
    start_with(&db_config(pair, tuning)).await
}

/// Like [`start_cluster`], with automatic rejoin configured.
pub async fn start_cluster_rejoining(pair: &PgPair, tuning: &str) -> Cluster {
    start_with(&db_config_rejoining(pair, tuning)).await
}

async fn start_with(config: &str) -> Cluster {
    let mut c = Cluster::with_config(config);
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    c
}

/// One MariaDB `[[database]]` (docs/mariadb.md): a master of the guide's
/// master-master pair.
#[derive(Serialize)]
struct MariaDatabase<'a> {
    site: &'a str,
    engine: &'static str,
    /// `primary`: the writer (`read_only = OFF`); `standby`: the other
    /// master, kept read-only by its site agent.
    role: &'a str,
    /// The probe DSN: every witness probes both masters with it (the
    /// administrator's here, as for the PostgreSQL pairs).
    dsn: String,
    /// The site agent's account (fence, promotion, rejoin).
    admin_dsn: String,
    defaults_file: &'a Path,
    pid_file: &'a Path,
    /// The server the agent starts; omitted (the daemon's default) when
    /// the test kit found none.
    #[serde(skip_serializing_if = "Option::is_none")]
    mariadbd: Option<PathBuf>,
    /// `mysql` when the tests run as root, as the pair's servers do.
    #[serde(skip_serializing_if = "Option::is_none")]
    os_user: Option<&'static str>,
    log_file: &'a Path,
}

impl<'a> MariaDatabase<'a> {
    fn of(site: &'a str, role: &'a str, s: &'a MariaServer) -> Self {
        MariaDatabase {
            site,
            engine: "mariadb",
            role,
            dsn: s.admin_dsn(),
            admin_dsn: s.admin_dsn(),
            defaults_file: s.defaults_file(),
            pid_file: s.pid_file(),
            mariadbd: mariadbd_path(),
            os_user: nix::unistd::Uid::effective()
                .is_root()
                .then_some(MARIA_OS_USER),
            log_file: s.log_file(),
        }
    }
}

/// The `[[database]]` sections (`engine = "mariadb"`) that hand a MariaDB
/// master-master `pair` to the witnesses: site a's server (`pair.a`) is
/// the writer (`role = "primary"`), site b's (`pair.b`) the other master
/// (`role = "standby"`).
pub fn maria_database_sections(pair: &MariaPair) -> String {
    #[derive(Serialize)]
    struct Sections<'a> {
        database: [MariaDatabase<'a>; 2],
    }
    let sections = Sections {
        database: [
            MariaDatabase::of("a", "primary", &pair.a),
            MariaDatabase::of("b", "standby", &pair.b),
        ],
    };
    toml::to_string(&sections).expect("the [[database]] sections are plain strings and paths")
}

/// `tuning` (probe, lease and failover settings) and the MariaDB
/// `[[database]]` sections for `pair`.
pub fn maria_db_config(pair: &MariaPair, tuning: &str) -> String {
    format!("{tuning}\n{}", maria_database_sections(pair))
}

/// Three witnesses over the MariaDB `pair` with `tuning`, started and
/// ready (leader, roles recorded, detector healthy, the writer's agent
/// serving under its lease): [`start_cluster`] for MariaDB.
pub async fn start_maria_cluster(pair: &MariaPair, tuning: &str) -> Cluster {
    let c = start_with(&maria_db_config(pair, tuning)).await;
    // The guide leaves both masters writable; b's agent makes it read-only
    // once the roles are recorded. Until every witness has seen that (and
    // reported it to the leader), an operation that needs a standby is
    // refused: "the database at b is not a standby".
    wait_status(
        &c,
        "every witness to see b read-only (its agent fences the standby master)",
        SETTLE,
        |s| {
            s.nodes
                .iter()
                .all(|n| {
                    n.databases
                        .iter()
                        .any(|d| d.site == "b" && d.in_recovery == Some(true))
                })
                .then_some(())
        },
    )
    .await;
    c
}
