//! `palisade run --log-format json`: every line a witness writes is one
//! JSON object, whatever `log.format` says.

use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_testkit::cluster::{palisade_bin, Cluster};
use palisade_testkit::wait_for;

#[tokio::test]
async fn log_format_json_on_the_command_line_overrides_the_config() {
    let c = Cluster::new();
    let node = &c.nodes[0];
    let log = c.dir.path().join("json.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(palisade_bin())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&node.config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn palisade");
    let lines = wait_for(
        "the witness's first log lines",
        Duration::from_secs(20),
        async || {
            let text = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (lines.len() >= 2).then_some(lines)
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.unwrap_or_else(|e| panic!("{e:#}"));
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["fields"]["message"].is_string(), "no message: {line}");
    }
}
