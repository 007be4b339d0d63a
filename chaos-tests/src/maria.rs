//! A MariaDB world's databases: the HA/DR guide's master-master pair
//! ("Setting Up Replication for MySQL Databases"), with the layout,
//! `my.cnf` and bootstrap of [`palisade_testkit::mariadb`] reproduced here
//! (the test kit's servers bind loopback and are the test's children),
//! placed in the sites' namespaces: each
//! master binds its site's address (198.18.0.11 / .12, port 3306), and
//! each replicates from the other over the bridge, so that a cut between
//! the sites cuts replication too.
//!
//! What differs from the test kit's loopback pair, and why:
//! * `mariadb-install-db` and `mariadbd` run inside the site's namespace
//!   (`ip netns exec`, as OS user `mysql`), as the site agent's restarts
//!   do (the witness runs there, and so do its children);
//! * the accounts are created for `198.18.0.%` (the bridge) and
//!   `localhost` (the unix socket the harness's own clients use), not
//!   `127.0.0.1`; the application's account is `app` on both;
//! * `slave_net_timeout = 2` (the heartbeat every second): a cut or frozen
//!   master is noticed in about two seconds, as the PostgreSQL world's
//!   `wal_sender_timeout` / `wal_receiver_timeout` of 2 s;
//! * `rpl_semi_sync_slave_enabled = ON` on both, so that either can
//!   acknowledge the other's commits; the writer's site agent switches
//!   `rpl_semi_sync_master_enabled` (`[failover] replication = "sync"`);
//! * `read_only = ON` in the other master's `my.cnf` (the guide's
//!   secondary takes no writes; its agent keeps it so).
//!
//! Layout, under the world's directory:
//!
//! ```text
//! maria-a/            0755, owned by mysql
//!   my.cnf            the server's only option file (--defaults-file)
//!   data/  tmp/
//!   mysqld.sock, mysqld.pid, server.log
//! maria-b/            the same
//! ```

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
pub use palisade_testkit::mariadb::{
    MARIA_ADMIN_PASSWORD as ADMIN_PASSWORD, MARIA_ADMIN_USER as ADMIN_USER,
    MARIA_APP_DATABASE as APP_DATABASE, MARIA_APP_PASSWORD as APP_PASSWORD,
    MARIA_APP_USER as APP_USER, MARIA_OS_USER as OS_USER,
};
use palisade_testkit::mariadb::{MARIA_REPLICATION_PASSWORD, MARIA_REPLICATION_USER};
use palisade_testkit::{wait_for, Attempt};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, Row};

use crate::netns;

/// Port of MariaDB in each data site, and of the front door on the host.
pub const MARIA_PORT: u16 = 3306;
/// `slave_net_timeout`, seconds (the heartbeat period is half of it).
const SLAVE_NET_TIMEOUT_S: u32 = 2;
/// How long a server may take to accept connections after its start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of one connection attempt of the harness.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The addresses the accounts are created for: the bridge.
const BRIDGE_HOSTS: &str = "198.18.0.%";

/// One master of the pair.
pub struct Master {
    /// Its site, `a` or `b`.
    pub site: &'static str,
    /// `server-id`: 1 at a, 2 at b.
    pub server_id: u32,
    /// `<world>/maria-<site>`.
    pub root: PathBuf,
    /// `datadir`.
    pub data_dir: PathBuf,
    /// `socket`: how the harness's own clients reach it, whatever the
    /// network cuts (as an app on the same host would).
    pub socket: PathBuf,
    /// `pid-file`.
    pub pid_file: PathBuf,
    /// `log-error`, and `mariadbd`'s stdout and stderr.
    pub log_file: PathBuf,
    /// `my.cnf`.
    pub defaults_file: PathBuf,
    /// The `mariadbd` the harness started, if it did (the site agent
    /// starts its own after a crash or for a rejoin).
    child: Option<Child>,
}

/// The pair: a (the writer at start) and b (the other master).
pub struct MariaPair {
    /// Site a's master: `server-id` 1, `auto_increment_offset` 1.
    pub a: Master,
    /// Site b's master: `server-id` 2, `auto_increment_offset` 2, read-only.
    pub b: Master,
    /// The server binary.
    pub mariadbd: PathBuf,
}

fn tool(name: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{name} not found; install MariaDB: apt-get install -y mariadb-server")
        })
}

fn mysql_user() -> Result<nix::unistd::User> {
    nix::unistd::User::from_name(OS_USER)
        .with_context(|| format!("looking up OS user {OS_USER}"))?
        .with_context(|| format!("OS user {OS_USER} not found (apt-get install -y mariadb-server)"))
}

impl Master {
    fn layout(parent: &Path, site: &'static str, server_id: u32) -> Result<Master> {
        let root = parent.join(format!("maria-{site}"));
        let m = Master {
            site,
            server_id,
            data_dir: root.join("data"),
            socket: root.join("mysqld.sock"),
            pid_file: root.join("mysqld.pid"),
            log_file: root.join("server.log"),
            defaults_file: root.join("my.cnf"),
            root,
            child: None,
        };
        let user = mysql_user()?;
        let tmp = m.root.join("tmp");
        for (dir, mode) in [(&m.root, 0o755), (&m.data_dir, 0o750), (&tmp, 0o750)] {
            fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        }
        fs::write(&m.log_file, "")?;
        std::os::unix::fs::chown(
            &m.log_file,
            Some(user.uid.as_raw()),
            Some(user.gid.as_raw()),
        )?;
        m.write_conf()?;
        Ok(m)
    }

    /// The site's address.
    pub fn addr(&self) -> &'static str {
        netns::addr(self.site)
    }

    /// DSN of the administrator over the bridge (the witnesses' probe and
    /// agent account).
    pub fn admin_dsn(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@{}:{MARIA_PORT}/",
            self.addr()
        )
    }

    fn write_conf(&self) -> Result<()> {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# Written by chaos-tests for site {}: the server's only option file.",
            self.site
        );
        let _ = writeln!(c, "[mysqld]");
        let _ = writeln!(c, "datadir = {}", self.data_dir.display());
        let _ = writeln!(c, "socket = {}", self.socket.display());
        let _ = writeln!(c, "pid-file = {}", self.pid_file.display());
        let _ = writeln!(c, "log-error = {}", self.log_file.display());
        let _ = writeln!(c, "tmpdir = {}", self.root.join("tmp").display());
        let _ = writeln!(c, "bind-address = {}", self.addr());
        let _ = writeln!(c, "port = {MARIA_PORT}");
        let _ = writeln!(c, "skip-name-resolve");
        let _ = writeln!(c, "# The guide's replication settings.");
        let _ = writeln!(c, "server-id = {}", self.server_id);
        let _ = writeln!(c, "auto_increment_offset = {}", self.server_id);
        let _ = writeln!(c, "auto_increment_increment = 2");
        let _ = writeln!(c, "sync_binlog = 1");
        let _ = writeln!(c, "log-bin = mysql-bin");
        let _ = writeln!(c, "# Beyond the guide (chaos-tests/src/maria.rs).");
        let _ = writeln!(c, "relay-log = relay-bin");
        let _ = writeln!(c, "slave_net_timeout = {SLAVE_NET_TIMEOUT_S}");
        let _ = writeln!(c, "rpl_semi_sync_slave_enabled = ON");
        if self.site != "a" {
            let _ = writeln!(c, "read_only = ON");
        }
        let _ = writeln!(c, "innodb_buffer_pool_size = 16M");
        let _ = writeln!(c, "innodb_log_file_size = 16M");
        let _ = writeln!(c, "innodb_flush_log_at_trx_commit = 1");
        let _ = writeln!(c, "max_connections = 50");
        let _ = writeln!(c, "character-set-server = utf8mb4");
        let _ = writeln!(c, "collation-server = utf8mb4_general_ci");
        fs::write(&self.defaults_file, c)
            .with_context(|| format!("writing {}", self.defaults_file.display()))?;
        fs::set_permissions(&self.defaults_file, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// `mariadb-install-db` inside the site's namespace.
    fn install(&self) -> Result<()> {
        let install = tool("mariadb-install-db")?;
        let out = Command::new("ip")
            .args(["netns", "exec", &netns::ns(self.site)])
            .arg(install)
            .arg(format!("--defaults-file={}", self.defaults_file.display()))
            .arg(format!("--user={OS_USER}"))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .context("running mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db for site {} failed ({}): {}{}",
                self.site,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts `mariadbd` inside the site's namespace (as a host's service
    /// manager would) and waits until it answers on its socket.
    pub async fn start(&mut self, mariadbd: &Path) -> Result<()> {
        if let Some(c) = &mut self.child {
            if c.try_wait()?.is_none() {
                bail!("database {} is already running", self.site);
            }
        }
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("opening {}", self.log_file.display()))?;
        let err = log.try_clone()?;
        self.child = Some(
            Command::new("ip")
                .args(["netns", "exec", &netns::ns(self.site)])
                .arg(mariadbd)
                .arg(format!("--defaults-file={}", self.defaults_file.display()))
                .arg(format!("--user={OS_USER}"))
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .context("starting mariadbd")?,
        );
        let what = format!("database {} accepts connections", self.site);
        let child = &mut self.child;
        let (socket, log_file) = (self.socket.clone(), self.log_file.clone());
        wait_for(&what, START_TIMEOUT, async || {
            if let Some(Ok(Some(st))) = child.as_mut().map(|c| c.try_wait()) {
                let tail = fs::read_to_string(&log_file).unwrap_or_default();
                return Attempt::GiveUp(anyhow::anyhow!(
                    "mariadbd exited during start ({st}): {}",
                    tail.lines().rev().take(20).collect::<Vec<_>>().join("\n")
                ));
            }
            match connect_root(&socket).await {
                Ok(c) => {
                    let _ = c.close().await;
                    Attempt::Ready(())
                }
                Err(e) => Attempt::NotYet(format!("{e:#}")),
            }
        })
        .await
    }

    /// The running `mariadbd` of this master: the PID in its pid file, if
    /// that process is alive and its command line names this server's
    /// option file (a PID the kernel reused is never signalled).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        let defaults = self.defaults_file.display().to_string();
        (pid > 1 && cmd.contains("mariadbd") && cmd.contains(&defaults)).then_some(pid)
    }

    /// Sends `sig` to the running `mariadbd` (one process: its threads
    /// stop and die with it); returns its PID.
    pub fn signal(&mut self, sig: Signal) -> Option<i32> {
        let pid = self.pid()?;
        crate::procs::signal(pid, sig);
        if sig == Signal::SIGKILL {
            self.reap();
        }
        Some(pid)
    }

    fn reap(&mut self) {
        if let Some(c) = &mut self.child {
            if matches!(c.try_wait(), Ok(Some(_))) {
                self.child = None;
            }
        }
    }

    /// Kills the server for good: the one the harness started and the one
    /// the pid file names (the site agent's).
    fn kill_for_good(&mut self) {
        if let Some(pid) = self.pid() {
            crate::procs::signal(pid, Signal::SIGCONT);
            crate::procs::signal(pid, Signal::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn exec_root(&self, sql: &str) -> Result<()> {
        let mut c = connect_root(&self.socket).await?;
        let r = c.execute(sqlx::raw_sql(sql)).await;
        let _ = c.close().await;
        // The statements may carry passwords: name the server, not the SQL.
        r.with_context(|| format!("setting up database {}", self.site))?;
        Ok(())
    }

    /// The accounts, created here only (`sql_log_bin = 0`), and root's TCP
    /// accounts dropped.
    async fn bootstrap(&self) -> Result<()> {
        let mut sql = String::from("SET SESSION sql_log_bin = 0;");
        sql.push_str("DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost'; FLUSH PRIVILEGES;");
        for host in [BRIDGE_HOSTS, "localhost"] {
            let _ = write!(
                sql,
                "CREATE USER '{ADMIN_USER}'@'{host}' IDENTIFIED BY '{ADMIN_PASSWORD}';\
                 GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;\
                 CREATE USER '{APP_USER}'@'{host}' IDENTIFIED BY '{APP_PASSWORD}';\
                 GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER \
                   ON `{APP_DATABASE}`.* TO '{APP_USER}'@'{host}';"
            );
        }
        let _ = write!(
            sql,
            "CREATE USER '{MARIA_REPLICATION_USER}'@'{BRIDGE_HOSTS}' IDENTIFIED BY '{MARIA_REPLICATION_PASSWORD}';\
             GRANT REPLICATION SLAVE ON *.* TO '{MARIA_REPLICATION_USER}'@'{BRIDGE_HOSTS}';"
        );
        self.exec_root(&sql).await
    }

    async fn master_status(&self) -> Result<(String, u64)> {
        let mut c = connect_root(&self.socket).await?;
        let row = c.fetch_optional(sqlx::raw_sql("SHOW MASTER STATUS")).await;
        let _ = c.close().await;
        let row = row?.with_context(|| format!("database {}: no binary log", self.site))?;
        let file: String = row.try_get_unchecked("File")?;
        let pos: String = row.try_get_unchecked("Position")?;
        Ok((file, pos.trim().parse()?))
    }

    async fn replicate_from(&self, other: &Master, file: &str, pos: u64) -> Result<()> {
        self.exec_root(&format!(
            "CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={MARIA_PORT}, \
             MASTER_USER='{MARIA_REPLICATION_USER}', MASTER_PASSWORD='{MARIA_REPLICATION_PASSWORD}', \
             MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}, MASTER_CONNECT_RETRY=1;\
             START SLAVE;",
            host = other.addr()
        ))
        .await
    }

    /// `Slave_IO_Running` and `Slave_SQL_Running` both `Yes`.
    async fn replicating(&self) -> Result<bool> {
        let mut c = connect_root(&self.socket).await?;
        let row = c.fetch_optional(sqlx::raw_sql("SHOW SLAVE STATUS")).await;
        let _ = c.close().await;
        let Some(row) = row? else { return Ok(false) };
        let io: String = row.try_get_unchecked("Slave_IO_Running")?;
        let sql: String = row.try_get_unchecked("Slave_SQL_Running")?;
        Ok(io == "Yes" && sql == "Yes")
    }
}

async fn connect_root(socket: &Path) -> Result<MySqlConnection> {
    let opts = MySqlConnectOptions::new()
        .socket(socket)
        .username("root")
        .ssl_mode(MySqlSslMode::Disabled)
        .disable_statement_logging();
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .context("no answer")?
        .with_context(|| format!("connecting as root over {}", socket.display()))
}

/// A connection over `socket` as `user` to the application's database
/// (the harness's own clients: not affected by network cuts).
pub async fn connect_local(socket: &Path, user: &str, password: &str) -> Result<MySqlConnection> {
    let opts = MySqlConnectOptions::new()
        .socket(socket)
        .username(user)
        .password(password)
        .database(APP_DATABASE)
        .ssl_mode(MySqlSslMode::Disabled)
        .disable_statement_logging();
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .with_context(|| format!("connecting over {}: no answer", socket.display()))?
        .with_context(|| format!("connecting over {}", socket.display()))
}

impl MariaPair {
    /// Lays out, installs and starts both masters in their namespaces,
    /// creates the accounts, sets up replication both ways the guide's
    /// way (file and position), and creates the application's database
    /// and the writers' table on a; returns once both directions
    /// replicate and the table has reached b.
    pub async fn start(parent: &Path) -> Result<MariaPair> {
        let mariadbd = tool("mariadbd")?;
        let a = Master::layout(parent, "a", 1)?;
        let b = Master::layout(parent, "b", 2)?;
        let (ia, ib) = std::thread::scope(|s| {
            let hb = s.spawn(|| b.install());
            (a.install(), hb.join())
        });
        ia?;
        ib.map_err(|_| anyhow::anyhow!("installing b panicked"))??;
        let mut pair = MariaPair { a, b, mariadbd };
        let bin = pair.mariadbd.clone();
        pair.a.start(&bin).await?;
        pair.b.start(&bin).await?;
        pair.a.bootstrap().await?;
        pair.b.bootstrap().await?;
        let (fa, pa) = pair.a.master_status().await?;
        let (fb, pb) = pair.b.master_status().await?;
        pair.b.replicate_from(&pair.a, &fa, pa).await?;
        pair.a.replicate_from(&pair.b, &fb, pb).await?;
        for m in [&pair.a, &pair.b] {
            wait_for(
                &format!("database {} replicates from the other master", m.site),
                Duration::from_secs(30),
                async || match m.replicating().await {
                    Ok(true) => Attempt::Ready(()),
                    Ok(false) => Attempt::NotYet("not yet".into()),
                    Err(e) => Attempt::NotYet(format!("{e:#}")),
                },
            )
            .await?;
        }
        pair.a
            .exec_root(&format!(
                "CREATE DATABASE `{APP_DATABASE}`;\
                 CREATE TABLE `{APP_DATABASE}`.chaos_writes (id BIGINT PRIMARY KEY, via VARCHAR(16) NOT NULL, \
                 at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE = InnoDB;"
            ))
            .await?;
        let sock_b = pair.b.socket.clone();
        wait_for(
            "the writers' table reached b",
            Duration::from_secs(30),
            async || {
                let Ok(mut c) = connect_root(&sock_b).await else {
                    return None;
                };
                let n = sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'chaos_writes'",
                )
                .fetch_one(&mut c)
                .await;
                let _ = c.close().await;
                (n.ok() == Some(1)).then_some(())
            },
        )
        .await?;
        Ok(pair)
    }

    /// The master of `site`.
    pub fn master(&self, site: &str) -> Result<&Master> {
        match site {
            "a" => Ok(&self.a),
            "b" => Ok(&self.b),
            other => bail!("site {other} has no database (a and b do)"),
        }
    }

    /// The master of `site`, to start or signal it.
    pub fn master_mut(&mut self, site: &str) -> Result<&mut Master> {
        match site {
            "a" => Ok(&mut self.a),
            "b" => Ok(&mut self.b),
            other => bail!("site {other} has no database (a and b do)"),
        }
    }

    /// The witnesses' `[[database]]` sections: a is the writer
    /// (`role = "primary"`), b the other master (`role = "standby"`).
    pub fn database_sections(&self) -> String {
        let mut out = String::new();
        for (m, role) in [(&self.a, "primary"), (&self.b, "standby")] {
            let _ = write!(
                out,
                "[[database]]\nsite = \"{site}\"\nengine = \"mariadb\"\nrole = \"{role}\"\n\
                 dsn = \"{dsn}\"\nadmin_dsn = \"{dsn}\"\ndefaults_file = \"{defaults}\"\n\
                 pid_file = \"{pid}\"\nmariadbd = \"{bin}\"\nos_user = \"{OS_USER}\"\nlog_file = \"{log}\"\n\n",
                site = m.site,
                dsn = m.admin_dsn(),
                defaults = m.defaults_file.display(),
                pid = m.pid_file.display(),
                bin = self.mariadbd.display(),
                log = m.log_file.display(),
            );
        }
        out
    }
}

impl Drop for MariaPair {
    fn drop(&mut self) {
        self.a.kill_for_good();
        self.b.kill_for_good();
    }
}

/// The start time of the process `pid` in Unix ms (from `/proc`: its
/// start in clock ticks after boot, and the boot time): changes exactly
/// when the server was restarted.
pub fn process_start_ms(pid: i32) -> Option<i64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 22 of stat (starttime) is the 20th after the command.
    let ticks: i64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1000 + ticks * 1000 / USER_HZ)
}

/// The unit of `/proc/<pid>/stat`'s times: `USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate.
const USER_HZ: i64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_after_boot_and_before_now() {
        let me = std::process::id() as i32;
        let started = process_start_ms(me).expect("this process's start time");
        let now = crate::now_ms();
        assert!(started <= now, "started {started} after now {now}");
        // This test process started within the last hour, and reading it
        // twice gives the same time (the sampler compares readings).
        assert!(now - started < 3_600_000, "started {started}, now {now}");
        assert_eq!(process_start_ms(me), Some(started));
        assert_eq!(process_start_ms(i32::MAX), None);
    }

    #[test]
    fn the_witnesses_database_sections_name_each_master_by_its_site_address() {
        let dir = tempfile_dir();
        let m = |site, id| Master {
            site,
            server_id: id,
            root: dir.join(site),
            data_dir: dir.join(site).join("data"),
            socket: dir.join(site).join("mysqld.sock"),
            pid_file: dir.join(site).join("mysqld.pid"),
            log_file: dir.join(site).join("server.log"),
            defaults_file: dir.join(site).join("my.cnf"),
            child: None,
        };
        let pair = MariaPair {
            a: m("a", 1),
            b: m("b", 2),
            mariadbd: "/usr/sbin/mariadbd".into(),
        };
        let s = pair.database_sections();
        assert!(
            s.contains("site = \"a\"\nengine = \"mariadb\"\nrole = \"primary\"\n"),
            "{s}"
        );
        assert!(
            s.contains("site = \"b\"\nengine = \"mariadb\"\nrole = \"standby\"\n"),
            "{s}"
        );
        assert!(s.contains("@198.18.0.11:3306/\""), "{s}");
        assert!(s.contains("@198.18.0.12:3306/\""), "{s}");
        assert_eq!(s.matches("[[database]]").count(), 2, "{s}");
    }

    fn tempfile_dir() -> PathBuf {
        std::env::temp_dir().join("pal-maria-unit-no-such-dir")
    }
}
