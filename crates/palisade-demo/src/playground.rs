//! The playground: after the failover the demo can leave the cluster
//! running (`--keep`, or on a terminal) and print what to try next, each
//! command exact (the `palisadectl` beside the demo, a witness's control
//! endpoint, the drill plan, where its reports go) and in an order in which
//! each one works: site b is the primary and site a's database has rejoined
//! as its standby, so
//!
//! 1. `failback` moves the primary back to a (b's database then rejoins as
//!    a's standby on its own);
//! 2. `pause` and `resume` turn maintenance mode on and off;
//! 3. `drill run deploy/drills/dr-test.toml --yes` runs the guide's DR test,
//!    which starts from a as the primary: a switchover to b, checks, a
//!    failback to a, checks;
//! 4. `switchover --to b` hands over to b once more.
//!
//! With `--db mariadb` the same commands run against the MariaDB pair: a
//! "standby" there is the other master, read-only and replicating from the
//! writer, and the last line asks HAProxy's server for its port with the
//! `mariadb` client (as the application's account, its password in an
//! owner-only option file) instead of `psql`. The planned handovers
//! (`failback`, the drill's switchover and failback, `switchover`) fence
//! the writer read-only, wait until the target master has executed the old
//! writer's binary log up to its final position, and make the target
//! writable; the old writer stays read-only, replicating from it.
//!
//! `crates/palisade-demo/tests/playground.rs` runs these lines as printed,
//! on PostgreSQL and on MariaDB.

use std::path::{Path, PathBuf};

use anyhow::Context;
use palisade_testkit::bins::build_command;

use crate::report::Progress;
use crate::Db;

/// The DR test plan shipped for the demo layout; written to the work
/// directory when the demo does not run from a checkout that has it.
const DR_TEST: &str = include_str!("../../../deploy/drills/dr-test.toml");
/// Where the plan is in a checkout, relative to its root.
const DR_TEST_PATH: &str = "deploy/drills/dr-test.toml";

/// One thing to try: what it does, and the shell command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Try {
    /// What it does, printed as a `# ` comment above it.
    pub what: String,
    /// The command, exactly as it can be pasted into a shell.
    pub command: String,
}

/// What the playground's commands need to know.
pub struct Setup<'a> {
    /// The pair's engine.
    pub db: Db,
    /// The demo's work directory (removed at cleanup).
    pub dir: &'a Path,
    /// A witness's control endpoint, `https://HOST:PORT`.
    pub endpoint: String,
    /// The operator certificate the commands present.
    pub operator: palisade_tls::TlsPaths,
    /// HAProxy's frontend port, when it runs.
    pub front_door_port: Option<u16>,
    /// The PostgreSQL binaries' directory (for `psql`, if it is not on
    /// `PATH`).
    pub pg_bin_dir: &'a Path,
}

/// The commands to try, in order. Writes the drill plan into the work
/// directory when the current directory has no copy of it, and creates
/// the drill reports' directory there.
pub fn commands(s: &Setup<'_>) -> anyhow::Result<(Vec<Try>, Option<String>)> {
    let (ctl, note) = palisadectl();
    let ctl = format!(
        "{ctl} --cert {} --key {} --ca {} --endpoint {}",
        quote(&s.operator.cert.display().to_string()),
        quote(&s.operator.key.display().to_string()),
        quote(&s.operator.ca_cert.display().to_string()),
        s.endpoint,
    );
    let plan = drill_plan(s.dir)?;
    let reports = s.dir.join("drill-reports");
    std::fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;
    let (now, rejoins) = match s.db {
        Db::Postgresql => (
            "b's database is the primary, a's its streaming standby",
            "b's database then rejoins as a's standby",
        ),
        Db::Mariadb => (
            "b's master is the writer, a's the read-only master replicating from it",
            "b's master then stays read-only, replicating from a",
        ),
    };
    let mut list = vec![
        Try {
            what: format!("the cluster now: {now}"),
            command: format!("{ctl} status"),
        },
        Try {
            what: format!("back to site a, the configured primary: a planned switchover, no data lost; {rejoins}"),
            command: format!("{ctl} failback --yes"),
        },
        Try {
            what: "maintenance mode: no automatic failover, and no operation, until resumed (or for 10 minutes)".into(),
            command: format!("{ctl} pause --for 10m --reason 'trying the playground'"),
        },
        Try {
            what: "and out of it".into(),
            command: format!("{ctl} resume"),
        },
        Try {
            what: format!(
                "the HA/DR guide's DR test, unattended, from a as the primary: checkpoint (paused), checks, switchover to b, failover check, failback to a, failback check; reports in {}",
                quote(&reports.display().to_string())
            ),
            command: format!(
                "{ctl} drill run {} --yes --report-dir {}",
                quote(&plan),
                quote(&reports.display().to_string())
            ),
        },
        Try {
            what: "a planned handover to b".into(),
            command: format!("{ctl} switchover --to b --yes"),
        },
        Try {
            what: "every operation, rejoin, pause and drill so far".into(),
            command: format!("{ctl} history --steps"),
        },
        Try {
            what: "site b's app config, as palisade left it (monitorsEnabled=true)".into(),
            command: format!(
                "cat {}",
                quote(
                    &s.dir
                        .join("site-b")
                        .join("threatconnect.xml")
                        .display()
                        .to_string()
                )
            ),
        },
    ];
    if let (Db::Mariadb, Some(port), Some(client)) = (s.db, s.front_door_port, mariadb_client()) {
        // As for psql: the password goes into an owner-only option file.
        let cnf = s.dir.join("mariadb-client.cnf");
        write_owner_only(
            &cnf,
            &format!(
                "[client]\nuser={}\npassword={}\n",
                palisade_testkit::mariadb::MARIA_APP_USER,
                palisade_testkit::mariadb::MARIA_APP_PASSWORD
            ),
        )
        .with_context(|| format!("writing {}", cnf.display()))?;
        list.push(Try {
            what: "the port of the server HAProxy sends clients to (now site b's)".into(),
            command: format!(
                "{} --defaults-extra-file={} -h 127.0.0.1 -P {port} -N -B -e 'SELECT @@port'",
                quote(&client.display().to_string()),
                quote(&cnf.display().to_string()),
            ),
        });
    }
    if let (Db::Postgresql, Some(port), Some(psql)) = (s.db, s.front_door_port, psql(s.pg_bin_dir))
    {
        // The password goes into an owner-only pgpass file, not onto the
        // screen: the demo's output shows no secret.
        let pgpass = s.dir.join("pgpass");
        write_owner_only(
            &pgpass,
            &format!(
                "*:*:*:{}:{}\n",
                palisade_testkit::pg::SUPERUSER,
                palisade_testkit::pg::SUPERUSER_PASSWORD
            ),
        )
        .with_context(|| format!("writing {}", pgpass.display()))?;
        list.push(Try {
            what: "the port of the server HAProxy sends clients to (now site b's)".into(),
            command: format!(
                "PGPASSFILE={} {} -h 127.0.0.1 -p {port} -U {} -d postgres -Atc 'SELECT inet_server_port()'",
                quote(&pgpass.display().to_string()),
                quote(&psql.display().to_string()),
                palisade_testkit::pg::SUPERUSER,
            ),
        });
    }
    Ok((list, note))
}

/// Prints the playground: where the cluster stands, the commands, how to
/// stop it.
pub fn print(p: &Progress, db: Db, list: &[Try], note: Option<&str>, console: Option<&str>) {
    p.step(format!(
        "the playground: the cluster keeps running, {}, until Ctrl-C. From another terminal, try in this order (each command waits until it is done):",
        match db {
            Db::Postgresql => "b primary, a's database its streaming standby",
            Db::Mariadb => "b's master the writer, a's read-only and replicating from it",
        }
    ));
    if let Some(note) = note {
        p.detail(format!("# {note}"));
    }
    if let Some(url) = console {
        p.detail(format!(
            "# open the status console in a browser and watch each command's effect live: {url}"
        ));
    }
    for t in list {
        p.detail(format!("# {}", t.what));
        p.detail(&t.command);
    }
    p.step("press Ctrl-C (or send SIGTERM) to stop it all and clean up");
}

/// The `palisadectl` beside this binary (`./target/...` when it is under
/// the current directory), or plain `palisadectl` and how to build it.
fn palisadectl() -> (String, Option<String>) {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let Some(dir) = dir else {
        return ("palisadectl".into(), None);
    };
    let ctl = dir.join("palisadectl");
    if !ctl.is_file() {
        return (
            "palisadectl".into(),
            Some(format!(
                "{} is not built: `{}` builds it (then use that path instead of `palisadectl`)",
                ctl.display(),
                build_command(&dir, &["palisadectl"])
            )),
        );
    }
    (quote(&shown(&ctl)), None)
}

/// `path` as `./relative` when it is under the current directory, else
/// as it is.
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    match relative {
        Some(r) => format!("./{}", r.display()),
        None => path.display().to_string(),
    }
}

/// `deploy/drills/dr-test.toml` when the current directory has it (a
/// checkout's root), else a copy written to the work directory.
fn drill_plan(dir: &Path) -> anyhow::Result<String> {
    if std::fs::read_to_string(DR_TEST_PATH).is_ok_and(|t| t == DR_TEST) {
        return Ok(DR_TEST_PATH.into());
    }
    let copy = dir.join("dr-test.toml");
    std::fs::write(&copy, DR_TEST).with_context(|| format!("writing {}", copy.display()))?;
    Ok(copy.display().to_string())
}

/// Writes `text` to `path`, readable by its owner only (0600).
fn write_owner_only(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

/// `psql`: on `PATH`, else beside the server binaries; `None` when neither.
fn psql(bin_dir: &Path) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("psql"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(_) => Some(PathBuf::from("psql")),
        None => Some(bin_dir.join("psql")).filter(|p| p.is_file()),
    }
}

/// The `mariadb` client (Debian's `mariadb-client`, which `mariadb-server`
/// pulls in): `mariadb` when it is on `PATH`, else `/usr/bin/mariadb`;
/// `None` when neither.
fn mariadb_client() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("mariadb").is_file()));
    if on_path {
        return Some(PathBuf::from("mariadb"));
    }
    Some(PathBuf::from("/usr/bin/mariadb")).filter(|p| p.is_file())
}

/// `s` single-quoted for a POSIX shell when it holds anything but plain
/// path characters.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(
            quote("./target/release/palisadectl"),
            "./target/release/palisadectl"
        );
        assert_eq!(quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_plan_is_copied_when_the_checkout_has_none_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tests run in the package's directory, which has no deploy/.
        let plan = drill_plan(dir.path()).expect("plan");
        assert_eq!(plan, dir.path().join("dr-test.toml").display().to_string());
        assert_eq!(std::fs::read_to_string(&plan).expect("copy"), DR_TEST);
    }

    #[test]
    fn the_order_ends_where_each_next_command_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (list, _) = commands(&Setup {
            db: Db::Postgresql,
            dir: dir.path(),
            endpoint: "https://127.0.0.1:7403".into(),
            operator: palisade_tls::TlsPaths::operator(dir.path(), "op"),
            front_door_port: None,
            pg_bin_dir: dir.path(),
        })
        .expect("commands");
        let verbs: Vec<&str> = list
            .iter()
            .filter_map(|t| {
                t.command
                    .split(" --endpoint https://127.0.0.1:7403 ")
                    .nth(1)
            })
            .map(|rest| rest.split_whitespace().next().unwrap_or_default())
            .collect();
        // failback first (b is the primary after the demo), the drill
        // from a, then the switchover to b.
        assert_eq!(
            verbs,
            [
                "status",
                "failback",
                "pause",
                "resume",
                "drill",
                "switchover",
                "history"
            ]
        );
        for t in &list {
            assert!(!t.what.contains('\n') && !t.command.contains('\n'), "{t:?}");
        }
    }
}
