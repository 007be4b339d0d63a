//! The local playground, end to end, with the real binaries:
//!
//! * `palisade demo --keep` fails site a over to b, waits for a's database
//!   to rejoin as b's standby, prints the commands to try next and keeps
//!   the cluster running; every printed command is then run as printed
//!   (`sh -c`, from the checkout's root, as a user pastes it), succeeds, and
//!   has its effect; a drill that pauses the cluster and then fails resumes
//!   it; Ctrl-C (SIGINT) stops the demo and leaves no process or directory
//!   behind. The same with `palisade demo --db mariadb --keep`, on the
//!   guide's MariaDB master-master pair (skipped when `mariadbd` is not
//!   installed, unless `CI=true`; about 10 s in a debug build).
//! * The README's by-hand block (three witnesses without a database, then
//!   `palisadectl`) runs as pasted.
//!
//! Both use the fixed ports of `deploy/local/` (7301-7303, 7401-7403), as
//! `tests/demo.rs` does: they take [`FIXED_PORTS`] so that they never run
//! at once (cargo runs one test binary at a time). `palisade` and
//! `palisadectl` are other packages' binaries: build them first (`cargo
//! build -p palisade -p palisadectl`; `./scripts/test` does).

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{dirs_named_in, wait_until_unused, workspace_root};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Held by each test that listens on `deploy/local/`'s ports.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// Long enough for the demo to build its pair, fail over and rejoin in a
/// debug build on a loaded machine (it takes about 35 s on an idle one).
const DEMO_READY: Duration = Duration::from_secs(300);
/// For the demo to clean up after SIGINT (witnesses get 10 s each).
const DEMO_STOP: Duration = Duration::from_secs(90);

fn step(what: &str) {
    eprintln!("--- {what}");
}

fn fixed_ports() -> std::sync::MutexGuard<'static, ()> {
    FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `palisade demo --keep`, its output collected as it comes.
/// Dropped without [`Demo::stop`] (a failed assertion), it gets SIGKILL
/// after a SIGINT and a grace period, so a failed test leaves no demo.
struct Demo {
    child: Option<Child>,
    /// stdout and stderr lines, in arrival order per stream.
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(root: &Path, db: &str) -> Demo {
        let palisade =
            palisade_testkit::bins::binary("palisade").unwrap_or_else(|e| panic!("{e:#}"));
        let mut child = Command::new(&palisade)
            .args(["demo", "--db", db, "--keep"])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start palisade demo --keep");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), out.clone(), "demo");
        collect(
            child.stderr.take().expect("stderr"),
            err.clone(),
            "demo stderr",
        );
        Demo {
            child: Some(child),
            out,
            err,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn all_text(&self) -> String {
        let mut text = self.stdout().join("\n");
        text.push('\n');
        text.push_str(
            &self
                .err
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .join("\n"),
        );
        text
    }

    /// Waits for the line that ends the playground's commands; fails if
    /// the demo exits first or takes longer than [`DEMO_READY`].
    fn wait_for_playground(&mut self) -> Vec<String> {
        let deadline = Instant::now() + DEMO_READY;
        loop {
            let lines = self.stdout();
            if lines.iter().any(|l| is_playground_end(l)) {
                return lines;
            }
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "the demo exited ({status}) before its playground:\n{}",
                    self.all_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no playground after {DEMO_READY:?}:\n{}",
                self.all_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ctrl-C, as a user stops the playground; waits for the demo to exit.
    fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(&child, Signal::SIGINT);
        let status = wait_bounded(&mut child, DEMO_STOP)
            .unwrap_or_else(|| panic!("the demo did not exit within {DEMO_STOP:?} of SIGINT"));
        // The reader threads see the end of both pipes.
        std::thread::sleep(Duration::from_millis(200));
        status
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGINT);
            if wait_bounded(&mut child, DEMO_STOP).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    let _ = kill(Pid::from_raw(pid), sig);
}

fn wait_bounded(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies `from`'s lines into `to` (and the test's stderr) as they come.
fn collect(from: impl Read + Send + 'static, to: Arc<Mutex<Vec<String>>>, name: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{name}] {line}");
            to.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

fn is_playground_end(line: &str) -> bool {
    line.starts_with("--- [") && line.contains("press Ctrl-C")
}

/// The playground's commands, as printed: the lines between its heading
/// and its closing step, without the `# ` comments.
fn printed_commands(lines: &[String]) -> Vec<String> {
    let start = lines
        .iter()
        .position(|l| l.starts_with("--- [") && l.contains("the playground:"))
        .expect("a playground heading");
    lines[start + 1..]
        .iter()
        .take_while(|l| !is_playground_end(l))
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `GET url` (`http://HOST:PORT/PATH`) over a plain socket: the status
/// line, headers and body as text.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{url}: {e}"));
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        conn,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut page = String::new();
    conn.read_to_string(&mut page)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    page
}

/// Runs `line` as a user pasting it does: `sh -c`, from the checkout.
fn sh(root: &Path, line: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {line:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `palisadectl --endpoint ...` as the printed commands start.
fn ctl_prefix(commands: &[String]) -> String {
    let status = commands
        .iter()
        .find(|c| c.ends_with(" status"))
        .expect("a printed status command");
    let prefix = status.trim_end_matches(" status").to_owned();
    assert!(
        prefix.contains("palisadectl --cert ") && prefix.contains(" --endpoint https://"),
        "{prefix}"
    );
    prefix
}

/// The cluster as `palisadectl --output json status` reports it.
fn status(root: &Path, ctl: &str) -> Value {
    let o = sh(root, &format!("{ctl} --output json status"));
    assert!(o.status.success(), "status: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {}", text(&o)))
}

/// The word after the `palisadectl --endpoint URL` prefix (`failback`,
/// `drill`, ...), or the program for other commands (`cat`, `psql`,
/// `mariadb`).
fn verb<'a>(ctl: &str, command: &'a str) -> &'a str {
    match command.strip_prefix(ctl) {
        Some(rest) => rest.split_whitespace().next().unwrap_or_default(),
        None => command
            .split_whitespace()
            .find(|w| !w.contains('='))
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .unwrap_or_default(),
    }
}

/// The value of `--flag VALUE` in `command`.
fn flag<'a>(command: &'a str, name: &str) -> &'a str {
    let mut words = command.split_whitespace();
    words.find(|w| *w == name);
    words
        .next()
        .unwrap_or_else(|| panic!("{name} in {command}"))
}

/// The drill's JSON report in `dir` (the one file there ending in .json).
fn drill_report(dir: &Path) -> Value {
    let json: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(
        json.len(),
        1,
        "one JSON report in {}: {json:?}",
        dir.display()
    );
    serde_json::from_str(&std::fs::read_to_string(&json[0]).expect("read report"))
        .expect("the report is JSON")
}

/// A plan that pauses the cluster, then fails.
const FAILING_PLAN: &str = r#"
name = "pause-then-fail"
[[phase]]
name = "checkpoint"
steps = [
  { pause = "2h", reason = "a drill that fails" },
  { run = "exit 3" },
]
"#;

#[test]
fn every_command_the_demo_prints_works_against_its_playground_which_cleans_up_on_ctrl_c() {
    playground("postgresql", "palisade-pg-");
}

#[test]
fn on_mariadb_every_command_the_demo_prints_works_against_its_playground_too() {
    if palisade_testkit::mariadb::mariadbd_path().is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mariadbd is not installed, and CI=true: this test must run (apt-get install -y mariadb-server)"
        );
        eprintln!("SKIP: mariadbd is not installed (apt-get install -y mariadb-server)");
        return;
    }
    playground("mariadb", "palisade-maria-");
}

/// `palisade demo --db DB --keep`, every command it prints run as printed,
/// a failing drill, then Ctrl-C; `pair_dir` is how the pair's temporary
/// directory is named.
fn playground(db: &str, pair_dir: &str) {
    let _ports = fixed_ports();
    let root = workspace_root();

    step(&format!(
        "palisade demo --db {db} --keep: fail over site a, rejoin it, print the commands to try"
    ));
    let mut demo = Demo::start(&root, db);
    let lines = demo.wait_for_playground();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("site a's database rejoined as a standby of b")),
        "the demo waits for the rejoin"
    );
    let console = lines
        .iter()
        .find_map(|l| l.split("watch each command's effect live: ").nth(1))
        .expect("the playground names the status console")
        .trim()
        .to_owned();
    let page = http_get(&console);
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("served by witness 3"),
        "the console at {console} answers while the cluster runs: {}",
        &page[..page.len().min(300)]
    );
    let commands = printed_commands(&lines);
    let ctl = ctl_prefix(&commands);
    let verbs: Vec<&str> = commands.iter().map(|c| verb(&ctl, c)).collect();
    for (want, before) in [
        ("failback", "pause"),
        ("pause", "resume"),
        ("resume", "drill"),
        ("drill", "switchover"),
    ] {
        let at = |v: &str| verbs.iter().position(|x| *x == v);
        assert!(
            at(want).zip(at(before)).is_some_and(|(a, b)| a < b),
            "{want} is printed before {before}: {verbs:?}"
        );
    }
    for c in &commands {
        let v = verb(&ctl, c);
        if ["switchover", "failover", "failback"].contains(&v) {
            assert!(
                c.ends_with(" --yes"),
                "{c}: an operation needs --yes without a terminal"
            );
        }
    }
    let drill = commands
        .iter()
        .find(|c| verb(&ctl, c) == "drill")
        .expect("a drill command");
    assert!(
        drill.contains(" drill run deploy/drills/dr-test.toml --yes "),
        "the shipped plan, from the checkout: {drill}"
    );

    let s = status(&root, &ctl);
    assert_eq!(s["primary_site"], "b", "{s:#}");
    assert_eq!(s["standby_site"], "a", "{s:#}");
    assert_eq!(s["standby_needs_rejoin"], false, "{s:#}");

    let mut b_port = None;
    for command in &commands {
        let v = verb(&ctl, command);
        step(&format!("as printed: {command}"));
        let o = sh(&root, command);
        let out = text(&o);
        eprintln!("{out}");
        assert!(
            o.status.success(),
            "{command} failed ({}):\n{out}",
            o.status
        );
        let s = status(&root, &ctl);
        match v {
            "status" => assert!(out.contains("palisade-local"), "{out}"),
            "failback" => {
                assert_eq!(s["primary_site"], "a", "failback moved the primary: {s:#}");
                assert_eq!(s["last_failover"]["kind"], "failback", "{s:#}");
            }
            "pause" => assert!(s["maintenance"].is_object(), "paused: {s:#}"),
            "resume" => assert!(s["maintenance"].is_null(), "resumed: {s:#}"),
            "drill" => {
                let report = drill_report(Path::new(flag(command, "--report-dir")));
                assert_eq!(report["passed"], true, "{report:#}");
                let phases = report["phases"].as_array().expect("phases");
                assert_eq!(phases.len(), 7, "{report:#}");
                for p in phases {
                    assert_eq!(p["outcome"], "passed", "{p:#}");
                }
                assert_eq!(s["primary_site"], "a", "the drill ends at a: {s:#}");
                assert!(s["maintenance"].is_null(), "{s:#}");
            }
            "switchover" => {
                assert_eq!(
                    s["primary_site"], "b",
                    "switchover moved the primary: {s:#}"
                );
                assert_eq!(s["last_failover"]["kind"], "switchover", "{s:#}");
            }
            "history" => {
                for kind in ["failover", "failback", "switchover", "dr-test"] {
                    assert!(out.contains(kind), "history lists {kind}: {out}");
                }
            }
            "cat" => {
                assert!(
                    out.contains(r#"name="monitorsEnabled" value="true""#),
                    "{out}"
                );
                let port = out
                    .split(r#"name="dbPort" value=""#)
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .expect("site b's dbPort");
                b_port = Some(port.to_owned());
            }
            "psql" | "mariadb" => assert_eq!(
                Some(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
                b_port,
                "HAProxy sends clients to site b's server"
            ),
            other => panic!("a printed command this test does not know: {other} ({command})"),
        }
    }

    step("a drill that pauses the cluster and then fails resumes it, and says so last");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("fails.toml");
    std::fs::write(&plan, FAILING_PLAN).expect("write plan");
    let o = sh(
        &root,
        &format!(
            "{ctl} drill run {} --yes --report-dir {}",
            plan.display(),
            dir.path().display()
        ),
    );
    let out = text(&o);
    eprintln!("{out}");
    assert_eq!(o.status.code(), Some(6), "the drill failed: {out}");
    let last = String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.contains("the drill resumed the cluster it had paused"),
        "{last}"
    );
    let s = status(&root, &ctl);
    assert!(s["maintenance"].is_null(), "not left paused: {s:#}");

    step("Ctrl-C stops the playground and cleans up");
    let dirs = dirs_named_in(&demo.all_text());
    assert!(
        dirs.iter().any(|d| d.to_string_lossy().contains(pair_dir))
            && dirs
                .iter()
                .any(|d| d.to_string_lossy().contains("palisade-demo-")),
        "the demo names its pair and work directories: {dirs:?}"
    );
    let exit = demo_stop(demo);
    assert!(
        exit.0.success(),
        "the demo ended with {}:\n{}",
        exit.0,
        exit.1
    );
    for dir in &dirs {
        assert!(!dir.exists(), "{} was left behind", dir.display());
        let left = wait_until_unused(dir, Duration::from_secs(5));
        assert!(left.is_empty(), "processes left running: {left:#?}");
    }
}

/// Stops the demo; its exit status and everything it printed.
fn demo_stop(demo: Demo) -> (ExitStatus, String) {
    let out = demo.out.clone();
    let err = demo.err.clone();
    let status = demo.stop();
    let all = format!(
        "{}\n{}",
        out.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
        err.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    );
    (status, all)
}

/// Live processes whose working directory is `dir`: pid and command line.
fn running_in(dir: &Path) -> Vec<(i32, String)> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            if stat.rsplit_once(')')?.1.split_whitespace().next()? == "Z" {
                return None;
            }
            (std::fs::read_link(e.path().join("cwd")).ok()? == dir).then(|| {
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
            })
        })
        .collect()
}

/// The README's by-hand block, as a user pastes it: the lines of the
/// ```sh block under "To run the three witnesses by hand".
fn readme_by_hand_block(root: &Path) -> Vec<String> {
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let after = readme
        .split_once("To run the three witnesses by hand")
        .expect("the README has a by-hand section")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("a sh block follows")
        .1
        .split_once("```")
        .expect("the block ends")
        .0;
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_readmes_by_hand_block_runs_as_pasted() {
    let _ports = fixed_ports();
    let root = workspace_root();
    let lines = readme_by_hand_block(&root);
    assert!(
        lines.iter().any(|l| l.contains("palisadectl wait-ready")),
        "the block waits for the witnesses before using them: {lines:#?}"
    );

    // As pasted, but in a scratch copy of the checkout's deploy/local (the
    // witnesses keep their data under .palisade-local/ beside it), with
    // the binaries this test was built with, and no `cargo build`.
    let scratch = tempfile::Builder::new()
        .prefix("palisade-byhand-")
        .tempdir()
        .expect("tempdir");
    let local = scratch.path().join("deploy/local");
    std::fs::create_dir_all(&local).expect("mkdir");
    for s in ["a", "b", "c"] {
        let name = format!("site-{s}.toml");
        std::fs::copy(root.join("deploy/local").join(&name), local.join(&name)).expect("copy");
    }
    let build = palisade_testkit::bins::binary("palisadectl")
        .unwrap_or_else(|e| panic!("{e:#}"))
        .parent()
        .expect("a build directory")
        .to_path_buf();
    palisade_testkit::bins::binary("palisade").unwrap_or_else(|e| panic!("{e:#}"));
    let script: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with("cargo build"))
        .map(|l| l.replace("./target/release/", &format!("{}/", build.display())))
        .collect();
    // Stop at the first failing line, as a careful operator would.
    let script = format!("set -e\n{}\n", script.join("\n"));
    eprintln!("{script}");

    step("the README's by-hand block");
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let out = text(&o);
    eprintln!("{out}");
    // Whatever happened, the witnesses it started go (they are ours: the
    // processes running in the scratch directory).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = running_in(scratch.path());
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = running_in(scratch.path());
    }
    for (pid, _) in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(
        o.status.success(),
        "the block failed ({}):\n{out}",
        o.status
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ready: leader "), "{stdout}");
    assert!(
        stdout.contains("cluster palisade-local"),
        "status printed: {stdout}"
    );
    assert!(
        left.is_empty(),
        "witnesses still running 30 s after SIGTERM: {left:#?}"
    );
}
