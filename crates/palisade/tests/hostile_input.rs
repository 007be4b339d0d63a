//! The configuration parser fed hostile and broken files: arbitrary bytes,
//! and mutations of a valid configuration with every section. It returns a
//! configuration or one `FILE: KEY: REASON` error, and never panics.

use std::path::Path;

use palisade::config::Config;
use proptest::prelude::*;

const FILE: &str = "/etc/palisade/hostile.toml";

/// A valid configuration using every section the parser knows.
const VALID: &str = r#"
node_id = 2

[cluster]
name = "hostile"

[raft]
heartbeat_interval_ms = 50
election_timeout_min_ms = 200
election_timeout_max_ms = 400

[storage]
data_dir = "/var/lib/palisade/{site}-{node_id}"

[log]
format = "text"
level = "info"

[tls]
insecure = true

[probe]
interval_ms = 250
timeout_ms = 1000

[lease]
ttl_ms = 2000
drift = 0.1

[failover]
down_after_ms = 1000
on_primary_crash = "failover"

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

[[database]]
site = "a"
role = "primary"
dsn = "postgres://palisade:secret@127.0.0.1:5432/postgres"

[[database]]
site = "b"
role = "standby"
dsn = "postgres://palisade:secret@127.0.0.1:5433/postgres"

[[stonith]]
site = "a"
command = ["/usr/local/bin/fence-site", "{site}", "{epoch}"]

[[app]]
site = "a"
config_file = "/opt/threatconnect/a/threatconnect.xml"
restart_command = ["systemctl", "restart", "threatconnect"]
es_property = "elasticsearchHosts"

[[app]]
site = "b"
config_file = "/opt/threatconnect/b/threatconnect.xml"
es_file = "/opt/threatconnect/b/es.properties"
es_key = "hosts"

[[elasticsearch]]
site = "a"
url = "http://es-a:9200"
hosts = "es-a:9200"

[[elasticsearch]]
site = "b"
url = "http://es-b:9200"
hosts = "es-b:9200"
ccr_follower_indices = ["tc-a"]

[[front_door]]
kind = "haproxy"
runtime_api = "127.0.0.1:9999"
backend = "postgres"
servers = { a = "pg_a", b = "pg_b" }

[[front_door]]
kind = "webhook"
url = "https://dns.example/api/failover"
secret = "0123456789abcdef0123"

[[front_door]]
kind = "config_file"
template = "/etc/palisade/upstream.tmpl"
target = "/etc/nginx/conf.d/upstream.conf"
reload_command = ["nginx", "-s", "reload"]
addresses = { a = "10.0.0.1", b = "10.0.1.1" }

[[check]]
name = "search API of the new site"
url = "http://es-{site}:9200/_cluster/health"
expect_status = 200
"#;

/// Pieces a mutation splices in: what breaks TOML, stretches a number or
/// names a key twice.
const SNIPPETS: &[&str] = &[
    "[[witness]]\n",
    "[[database]]\n",
    "[[app]]\n",
    "[[front_door]]\n",
    "[raft]\n",
    "id = 2\n",
    "site = \"a\"\n",
    "site = \"\"\n",
    "node_id = 18446744073709551615\n",
    "election_timeout_min_ms = 0\n",
    "ttl_ms = 18446744073709551615\n",
    "drift = nan\n",
    "drift = inf\n",
    "drift = -1e308\n",
    "interval_ms = 0\n",
    "down_after_ms = 18446744073709551615\n",
    "command_timeout_ms = 18446744073709551615\n",
    "max_lag_seconds = nan\n",
    "raft_addr = \"[::1]:99999\"\n",
    "control_addr = \"127.0.0.1:0\"\n",
    "runtime_api = \"unix:\"\n",
    "kind = \"ftp\"\n",
    "level = \"info,,=\"\n",
    "data_dir = \"\"\n",
    "restart_command = []\n",
    "expect_status = 70000\n",
    "\"",
    "'''",
    "[",
    "]",
    "=",
    "\n",
    "\u{feff}",
    "\0",
];

/// Parses `text` and checks the answer: a configuration, or one error
/// naming the file, a key and a reason.
fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = Config::parse(Path::new(FILE), text) {
        let line = e.to_string();
        prop_assert!(
            line.starts_with(&format!("{FILE}: ")),
            "names the file: {}",
            line
        );
        prop_assert!(!e.key.is_empty(), "names a key: {}", line);
        prop_assert!(!e.reason.is_empty(), "says why: {}", line);
    }
    Ok(())
}

#[test]
fn the_valid_configuration_parses_with_every_section() {
    let c = Config::parse(Path::new(FILE), VALID).expect("valid");
    assert_eq!(c.actions.apps.len(), 2);
    assert_eq!(c.actions.search.len(), 2);
    assert_eq!(c.actions.front_doors.len(), 3);
    assert_eq!(c.actions.checks.len(), 1);
}

/// Parses `text` and expects a refusal at a key containing `key`.
fn refused_at(text: &str, key: &str) {
    match Config::parse(Path::new(FILE), text) {
        Ok(_) => panic!("accepted: {}", &text[..text.len().min(80)]),
        Err(e) => {
            let line = e.to_string();
            assert!(line.starts_with(&format!("{FILE}: ")), "{line}");
            assert!(e.key.contains(key) || e.reason.contains(key), "{line}");
        }
    }
}

#[test]
fn pinned_hostile_configurations_are_refused_naming_the_file_and_key() {
    refused_at("", "node_id");
    refused_at("\0", "(syntax)");
    refused_at(&VALID.replace("drift = 0.1", "drift = nan"), "lease.drift");
    refused_at(
        &VALID.replace(
            "down_after_ms = 1000",
            "down_after_ms = 18446744073709551615",
        ),
        "failover",
    );
    refused_at(
        &VALID.replace("interval_ms = 250", "interval_ms = 0"),
        "probe.interval_ms",
    );
}

/// Found by `a_valid_configuration_with_one_number_replaced_parses_or_is_refused`:
/// `3 * raft.heartbeat_interval_ms` (config/mod.rs) and
/// `probe.timeout_ms + probe.interval_ms` (config/database.rs) overflowed,
/// a panic in a debug build and a wrapped, wrongly accepted bound in a
/// release build. Every timing key is now bounded (an hour) before any
/// arithmetic.
#[test]
fn huge_timings_are_refused_naming_the_key_not_a_panic() {
    for huge in [
        "6148914691236517206",
        "9223372036854775807",
        "18446744073709551615",
    ] {
        refused_at(
            &VALID.replace(
                "heartbeat_interval_ms = 50",
                &format!("heartbeat_interval_ms = {huge}"),
            ),
            "raft.",
        );
    }
    refused_at(
        &VALID.replace("timeout_ms = 1000", "timeout_ms = 18446744073709551615"),
        "probe.timeout_ms",
    );
}

#[test]
fn a_configuration_file_that_is_not_text_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, [0xff, 0xfe, b'n', 0x00]).expect("write");
    let e = Config::load(&path).expect_err("not UTF-8");
    assert_eq!(e.file, path);
    assert_eq!(e.key, "(file)");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_config_parser(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        parse_checked(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_valid_configurations_parse_or_are_refused_naming_the_key(
        edits in proptest::collection::vec((any::<usize>(), 0..SNIPPETS.len(), 0usize..24), 1..6),
    ) {
        let mut text = VALID.to_string();
        for (at, snippet, cut) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, SNIPPETS[snippet]);
        }
        parse_checked(&text)?;
    }

    #[test]
    fn a_valid_configuration_with_one_number_replaced_parses_or_is_refused(
        which in any::<usize>(),
        value in prop_oneof![
            Just("0".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-1".to_string()),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("1e308".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
        ],
    ) {
        // Every `key = <number>` line, one at a time, to an edge value.
        let lines: Vec<&str> = VALID.lines().collect();
        let numeric: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split_once(" = ").is_some_and(|(_, v)| v.parse::<f64>().is_ok()))
            .map(|(i, _)| i)
            .collect();
        let i = numeric[which % numeric.len()];
        let key = lines[i].split_once(" = ").expect("a key line").0;
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edited[i] = format!("{key} = {value}");
        parse_checked(&edited.join("\n"))?;
    }
}
