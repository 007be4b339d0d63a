//! Secrets from a file and from the environment reach the real consumer:
//! the config resolves `password_file` / `password_env`, and the witness's
//! PostgreSQL probe connects to a real server with them (and fails with a
//! wrong one, so the password really is the one used).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use palisade::config::Config;
use palisade_probe::postgres::PgProbe;
use palisade_testkit::pg::{PgPair, SUPERUSER, SUPERUSER_PASSWORD};

fn config(port: u16, password_key: &str) -> String {
    format!(
        r#"
node_id = 1

[tls]
insecure = true

[storage]
data_dir = "/tmp/palisade-secrets-test/{{site}}"

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
dsn = "postgres://{SUPERUSER}@127.0.0.1:{port}/postgres"
{password_key}

[[database]]
site = "b"
role = "standby"
dsn = "postgres://{SUPERUSER}@127.0.0.1:1/postgres"
"#
    )
}

async fn probe_with(text: &str) -> (bool, String) {
    let c = Config::parse(Path::new("/etc/palisade/site.toml"), text).expect("valid config");
    let db = c.database.expect("database settings");
    assert!(!format!("{db:?}").contains(SUPERUSER_PASSWORD));
    let probe = PgProbe::new(&db.primary.dsn, Duration::from_secs(5)).expect("probe");
    assert!(!format!("{probe:?}").contains(SUPERUSER_PASSWORD));
    let o = probe.probe().await;
    (o.reachability.is_up(), format!("{:?}", o.reachability))
}

#[tokio::test]
async fn passwords_from_a_file_and_from_the_environment_reach_the_probe() {
    let pair = PgPair::start().await.expect("start a PostgreSQL pair");
    let port = pair.primary.port();
    let dir = tempfile::tempdir().expect("tempdir");

    eprintln!("--- step: password_file");
    let file = dir.path().join("pg.pass");
    std::fs::write(&file, format!("{SUPERUSER_PASSWORD}\n")).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (up, why) = probe_with(&config(port, &format!("password_file = {file:?}"))).await;
    assert!(up, "with the password from the file: {why}");
    assert!(!why.contains(SUPERUSER_PASSWORD));

    eprintln!("--- step: password_env");
    std::env::set_var("PALISADE_SECRETS_TEST_PG_PW", SUPERUSER_PASSWORD);
    let (up, why) = probe_with(&config(
        port,
        "password_env = \"PALISADE_SECRETS_TEST_PG_PW\"",
    ))
    .await;
    assert!(up, "with the password from the environment: {why}");

    eprintln!("--- step: a wrong password in the file is refused by the server");
    let wrong = dir.path().join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (up, why) = probe_with(&config(port, &format!("password_file = {wrong:?}"))).await;
    assert!(!up, "a wrong password must not connect: {why}");
    assert!(!why.contains("not-the-password"), "{why}");
}
