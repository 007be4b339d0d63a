//! Debian's headless chromium through chromedriver, for the console's
//! browser tests (`tests/console.rs`, `tests/console_actions.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use palisade_testkit::wait_for;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the console tests save their screenshots and figures.
pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

/// chromedriver on a free loopback port, in a process group of its own
/// with the browsers it starts: all are killed with the test, even one
/// that fails before it closes its browser.
pub struct Driver {
    child: tokio::process::Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Driver {
    /// Starts chromedriver; `name` tells this test's browser profile apart.
    pub async fn start(name: &str) -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: the console tests need Debian's chromium and chromium-driver \
                 (scripts/test installs them as root: apt-get install chromium chromium-driver)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        wait_for(
            "chromedriver answers /status",
            Duration::from_secs(20),
            async || {
                reqwest::get(format!("{url}/status"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let profile =
            std::env::temp_dir().join(format!("palisade-{name}-chromium-{}", std::process::id()));
        Self {
            child,
            url,
            profile,
        }
    }

    /// A headless chromium with a window of `width` × `height`.
    pub async fn browser(&self, width: u32, height: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session");
        c.set_window_size(width, height).await.expect("window size");
        c
    }
}

/// Runs `script` in the page; its return value.
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script {script}: {e}"))
}
