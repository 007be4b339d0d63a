//! The sites' network: one namespace per site (`pal-a`, `pal-b`, `pal-c`),
//! each with one veth into the bridge `pal-br0` on the host, addresses from
//! 198.18.0.0/24 (bridge 198.18.0.1, site a .11, b .12, c .13). The whole
//! 198.18.0.0/15 is black-holed on the host, the bridge's /24 being more
//! specific, so no test packet ever leaves the machine.
//!
//! Everything the suite creates carries the `pal-` prefix (interfaces,
//! namespaces) or lives under `/tmp/pal-chaos-*` (files, and so the command
//! lines of every process it starts), which is how [`leftovers`] finds what
//! an interrupted run left behind and [`cleanup_all`] removes it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Prefix of every namespace and interface the suite creates.
pub const PREFIX: &str = "pal-";
/// The bridge joining the sites.
pub const BRIDGE: &str = "pal-br0";
/// The host's address on the bridge: where HAProxy listens.
pub const HOST_ADDR: &str = "198.18.0.1";
/// The benchmarking range, black-holed on the host.
pub const BLACKHOLE: &str = "198.18.0.0/15";
/// Prefix of each world's directory under `/tmp`.
pub const WORLD_DIR_PREFIX: &str = "pal-chaos-";

/// The three sites, in witness id order.
pub const SITES: [&str; 3] = ["a", "b", "c"];

/// Namespace of a site.
pub fn ns(site: &str) -> String {
    format!("{PREFIX}{site}")
}

/// Address of a site (`a` → 198.18.0.11); the host's (`host`) is the bridge's.
pub fn addr(site: &str) -> &'static str {
    match site {
        "a" => "198.18.0.11",
        "b" => "198.18.0.12",
        "c" => "198.18.0.13",
        "host" => HOST_ADDR,
        other => panic!("no address for site {other:?}: sites are a, b, c and host"),
    }
}

/// Runs `ip ARGS`, failing with the command and its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(prog: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running `{prog} {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn output(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Creates the bridge, the black hole and one namespace per site.
pub fn create() -> Result<()> {
    ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    ip(&["route", "add", "blackhole", BLACKHOLE])?;
    for site in SITES {
        let ns = ns(site);
        let (host_end, ns_end) = (format!("{ns}-h"), format!("{ns}-n"));
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &ns])?;
        ip(&["link", "set", &host_end, "master", BRIDGE])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&["-n", &ns, "link", "set", &ns_end, "name", "eth0"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", addr(site)),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Namespaces whose name starts with [`PREFIX`].
fn our_namespaces() -> Vec<String> {
    output("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(String::from)
        .collect()
}

/// World directories under `/tmp`.
fn our_dirs() -> Vec<PathBuf> {
    std::fs::read_dir("/tmp")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(WORLD_DIR_PREFIX)
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes that belong to a world: inside one of our namespaces, or
/// with a world directory on their command line (PostgreSQL, HAProxy and
/// witnesses all name their files there).
fn our_processes() -> Vec<(i32, String)> {
    let mut pids: Vec<i32> = our_namespaces()
        .iter()
        .flat_map(|ns| {
            output("ip", &["netns", "pids", ns])
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    let me = std::process::id() as i32;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&format!("/tmp/{WORLD_DIR_PREFIX}")) {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter(|p| *p != me && palisade_testkit::procs::alive(*p))
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            (p, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}

/// Host interfaces with our prefix (the bridge, veth ends).
fn our_host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_exists() -> bool {
    Path::new(&format!("/sys/class/net/{BRIDGE}")).exists()
}

fn blackhole_exists() -> bool {
    output("ip", &["route", "show", "type", "blackhole"]).contains(BLACKHOLE)
}

/// What an earlier run left behind, one line each (empty: nothing).
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for n in our_namespaces() {
        found.push(format!("network namespace {n}"));
    }
    if bridge_exists() {
        found.push(format!("bridge {BRIDGE}"));
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && name != BRIDGE {
                found.push(format!("interface {name}"));
            }
        }
    }
    if blackhole_exists() {
        found.push(format!("route blackhole {BLACKHOLE}"));
    }
    for (pid, cmd) in our_processes() {
        found.push(format!("process {pid}: {cmd}"));
    }
    for d in our_dirs() {
        found.push(format!("directory {}", d.display()));
    }
    found
}

/// Removes everything any world created: processes (thawed, then killed),
/// namespaces (and with them their veth ends and nftables tables), the
/// bridge, the black-hole route, the world directories. Idempotent; never
/// fails (it is also the panic and signal path), but reports what it could
/// not remove.
pub fn cleanup_all() -> Vec<String> {
    let mut problems = Vec::new();
    let procs = our_processes();
    for (pid, _) in &procs {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (pid, cmd) in &procs {
        while palisade_testkit::procs::alive(*pid) {
            if Instant::now() > deadline {
                problems.push(format!("process {pid} survived SIGKILL: {cmd}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for n in our_namespaces() {
        if let Err(e) = ip(&["netns", "del", &n]) {
            problems.push(format!("{e:#}"));
        }
    }
    // A deleted namespace takes its veth ends, and their host-side peers,
    // with it, but the kernel removes them asynchronously.
    let deadline = Instant::now() + Duration::from_secs(3);
    while our_host_links().iter().any(|l| l != BRIDGE) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for name in our_host_links() {
        if let Err(e) = ip(&["link", "del", &name]) {
            if Path::new(&format!("/sys/class/net/{name}")).exists() {
                problems.push(format!("{e:#}"));
            }
        }
    }
    if blackhole_exists() {
        if let Err(e) = ip(&["route", "del", "blackhole", BLACKHOLE]) {
            problems.push(format!("{e:#}"));
        }
    }
    for d in our_dirs() {
        if let Err(e) = std::fs::remove_dir_all(&d) {
            problems.push(format!("removing {}: {e}", d.display()));
        }
    }
    problems
}
