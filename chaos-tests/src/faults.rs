//! Network faults as nftables rules inside the site namespaces, and the
//! fault log: every fault and heal, with its wall-clock time, in the order
//! it was done.
//!
//! A cut is directed: `cut(a, b)` drops the packets a sends to b. It is
//! enforced inside the sending site's namespace (output chain, `ip daddr`),
//! or, when the sender is the host (the front door), inside the receiving
//! site's namespace (input chain, `ip saddr`). Each namespace has one table,
//! `inet palisade_chaos`, replaced atomically (`nft -f`) whenever its rules
//! change; healing empties it. Rules drop established connections too (no
//! conntrack exemption), as a real link loss would.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::netns::{self, SITES};
use crate::{fmt_ms, now_ms};

/// The nftables table the suite owns in each namespace.
pub const TABLE: &str = "palisade_chaos";

/// One entry of the fault log.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    /// Wall clock, Unix ms, when it was done (after the rules were in place).
    pub at_ms: i64,
    /// What was done, e.g. `cut a->b`, `SIGKILL witness a`, `heal all links`.
    pub text: String,
}

/// The fault log, shared with whoever injects faults; also appended to
/// `<world>/faults.log` and echoed to stderr.
#[derive(Clone)]
pub struct FaultLog {
    events: Arc<Mutex<Vec<FaultEvent>>>,
    file: PathBuf,
}

impl FaultLog {
    /// A log written to `file`.
    pub fn new(file: PathBuf) -> Self {
        Self {
            events: Arc::default(),
            file,
        }
    }

    /// Records `text` as done now, and returns the time.
    pub fn record(&self, text: impl Into<String>) -> i64 {
        let ev = FaultEvent {
            at_ms: now_ms(),
            text: text.into(),
        };
        eprintln!("FAULT {} {}", fmt_ms(ev.at_ms), ev.text);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
        {
            let _ = writeln!(f, "{} {} {}", ev.at_ms, fmt_ms(ev.at_ms), ev.text);
        }
        let at = ev.at_ms;
        self.events.lock().expect("fault log lock").push(ev);
        at
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.events.lock().expect("fault log lock").clone()
    }
}

/// Which way a cut goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Only packets from the first to the second.
    OneWay,
    /// Both directions.
    Both,
}

/// The set of directed cuts in force, and the rules that enforce them.
pub struct Net {
    cuts: BTreeSet<(String, String)>,
    log: FaultLog,
}

impl Net {
    /// No cuts; every namespace gets an empty table.
    pub fn new(log: FaultLog) -> Result<Self> {
        let n = Self {
            cuts: BTreeSet::new(),
            log,
        };
        for site in SITES {
            n.render(site)?;
        }
        Ok(n)
    }

    /// Cuts `from`→`to` (and back if `dir` is `Both`). Nodes: `a`, `b`, `c`,
    /// `host` (the front door's side of the bridge).
    pub fn cut(&mut self, from: &str, to: &str, dir: Dir) -> Result<i64> {
        self.add(from, to);
        if dir == Dir::Both {
            self.add(to, from);
        }
        self.render_all()?;
        let arrow = if dir == Dir::Both { "<->" } else { "->" };
        Ok(self.log.record(format!("cut {from}{arrow}{to}")))
    }

    /// Cuts `site` from every other site and from the front door, both ways.
    pub fn isolate(&mut self, site: &str) -> Result<i64> {
        for other in SITES.iter().copied().chain(["host"]) {
            if other != site {
                self.add(site, other);
                self.add(other, site);
            }
        }
        self.render_all()?;
        Ok(self.log.record(format!("isolate site {site}")))
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<i64> {
        self.cuts.clear();
        self.render_all()?;
        Ok(self.log.record("heal all links"))
    }

    /// Whether any cut is in force.
    pub fn is_cut(&self) -> bool {
        !self.cuts.is_empty()
    }

    fn add(&mut self, from: &str, to: &str) {
        assert!(from != to, "a node cannot be cut from itself ({from})");
        self.cuts.insert((from.to_string(), to.to_string()));
    }

    fn render_all(&self) -> Result<()> {
        for site in SITES {
            self.render(site)?;
        }
        Ok(())
    }

    /// Replaces `site`'s table with the rules for the cuts that touch it.
    fn render(&self, site: &str) -> Result<()> {
        let mut out_rules = String::new();
        let mut in_rules = String::new();
        for (from, to) in &self.cuts {
            if from == site {
                out_rules.push_str(&format!("    ip daddr {} drop\n", netns::addr(to)));
            } else if from == "host" && to == site {
                in_rules.push_str(&format!("    ip saddr {} drop\n", netns::addr(from)));
            }
        }
        let script = format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{out_rules}  }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{in_rules}  }}\n}}\n"
        );
        let ns = netns::ns(site);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(script.as_bytes())
            .context("writing the nft script")?;
        let out = child.wait_with_output().context("waiting for nft")?;
        if !out.status.success() {
            bail!(
                "nft in namespace {ns} failed ({}): {}\nscript:\n{script}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
