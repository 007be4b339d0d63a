//! A harness that runs real `palisade` witness processes on loopback and
//! drives them with the real `palisadectl` binary.

#![allow(dead_code)] // each test file uses a different part

pub mod pg;
pub mod stack;
pub mod writer;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The `palisade` binary under test.
pub fn palisade_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palisade"))
}

/// The `palisadectl` binary, built by the same `cargo test --workspace` run
/// into the same directory as `palisade`.
pub fn palisadectl_bin() -> PathBuf {
    let p = palisade_bin().with_file_name("palisadectl");
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build -p palisadectl` (the README's `cargo test --workspace` does)",
        p.display()
    );
    p
}

/// Prints a `--- step` line so a failing test's output tells its story.
pub fn step(s: &str) {
    eprintln!("--- {s}");
}

/// Waits until `f` returns `Some`, polling every 50 ms, or panics naming
/// `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    pub id: u64,
    pub site: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub control: String,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// Starts (or restarts) the witness process; stderr is appended to its log.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// [`Node::start`] with extra environment variables (failpoints).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        self.starts += 1;
        let child = Command::new(palisade_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn palisade");
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

    /// Waits for the process to exit on its own and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("node is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {} did not exit within {timeout:?}", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The witness's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Three witnesses on loopback, each with its own config and data dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Writes configs for three witnesses on free ports. Nothing started.
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// Like [`Cluster::new`], with `extra` TOML appended to every config
    /// (the `[[database]]`, `[failover]`, ... sections).
    pub fn with_config(extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("palisade-test-")
            .tempdir()
            .expect("tempdir");
        let ports = free_ports(6);
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
            let text = format!(
                "node_id = {id}\n\n[cluster]\nname = \"test\"\n\n[storage]\ndata_dir = \"data/{{site}}\"\n{witnesses}\n{extra}"
            );
            std::fs::write(&config, text).expect("write config");
            nodes.push(Node {
                id,
                site: site.to_string(),
                config,
                data_dir: dir.path().join("data").join(site),
                log: dir.path().join(format!("site-{site}.log")),
                control: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                child: None,
                starts: 0,
            });
        }
        Self { dir, nodes }
    }

    /// Writes configs and starts all three witnesses.
    pub fn start() -> Self {
        let mut c = Self::new();
        for n in &mut c.nodes {
            n.start();
        }
        c
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("node id in cluster")
    }

    /// `palisadectl --endpoint <node's control> ARGS...`.
    pub fn ctl(&self, id: u64, args: &[&str]) -> Output {
        let node = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id in cluster");
        Command::new(palisadectl_bin())
            .arg("--endpoint")
            .arg(&node.control)
            .args(args)
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
    /// term, that leader itself among them; returns (leader, term).
    pub fn wait_for_agreed_leader(&self, why: &str, timeout: Duration) -> (u64, u64) {
        wait_for(why, timeout, || {
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
    }
}

/// Runs `palisade ARGS` to completion.
pub fn palisade(args: &[&str], config: &Path) -> Output {
    Command::new(palisade_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run palisade")
}
