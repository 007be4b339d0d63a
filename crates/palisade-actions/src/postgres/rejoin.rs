//! Turning a fenced former primary into a streaming standby of the new
//! primary: `pg_rewind` when its history can be rewound, a fresh
//! `pg_basebackup` swapped in when it cannot.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{info, warn};

use super::conninfo::{conf_literal, ConnInfo};
use super::error::DbError;
use super::exec::Cmd;
use super::{PgSite, RejoinMethod, RejoinOutcome};

/// Configuration files that belong to this site, not to the cluster's
/// history: `pg_rewind` and `pg_basebackup` overwrite them with the source
/// server's copies (pg_rewind docs: "configuration files ... are copied from
/// the source"), which would give this server the new primary's listen
/// address, port and access rules. We save them before and put them back
/// after, as Patroni does. Besides these, every file that postgresql.conf
/// pulls in from inside the data directory (`include`, `include_if_exists`,
/// `include_dir`) is saved too. (Debian keeps its configuration in /etc;
/// then there is little here to save.)
const SITE_LOCAL_FILES: [&str; 4] = [
    "postgresql.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "postgresql.auto.conf",
];

/// A file saved from the data directory: path relative to it, contents,
/// permission bits.
type SavedFile = (PathBuf, Vec<u8>, u32);

impl PgSite {
    /// See [`super::DatabaseControl::rejoin_as_standby`].
    pub(super) async fn rejoin(
        &self,
        epoch: u64,
        primary_conninfo: &str,
    ) -> Result<RejoinOutcome, DbError> {
        let started = Instant::now();
        let upstream =
            ConnInfo::parse(primary_conninfo).map_err(|detail| DbError::InvalidInput {
                server: self.server(),
                what: "primary_conninfo",
                detail,
            })?;

        if self.streams_from(&upstream).await {
            info!("already a standby streaming with this primary_conninfo");
            return Ok(RejoinOutcome {
                method: RejoinMethod::AlreadyStreaming,
                fence: None,
                rewind_failure: None,
                rewind: None,
                basebackup: None,
                start: None,
                catch_up: None,
                removed_old_data_dir: None,
                elapsed: started.elapsed(),
            });
        }

        let fence = self.fence_server(false).await?;
        // pg_rewind runs crash recovery in single-user mode after a fence by
        // SIGKILL, which needs the killed postmaster's lock released.
        self.release_stale_lock().await?;
        let saved = self.save_site_files();

        let rewind_started = Instant::now();
        let rewound = self.rewind(&upstream).await;
        let rewind = Some(rewind_started.elapsed());
        let (method, rewind_failure, basebackup, old_dir) = match rewound {
            Ok(true) => (RejoinMethod::Rewind, None, None, None),
            Ok(false) => (RejoinMethod::NoRewindNeeded, None, None, None),
            Err(rewind_error) => {
                // Handled: the base backup below is the fallback.
                warn!(error = %rewind_error, "pg_rewind failed; falling back to pg_basebackup");
                let bb_started = Instant::now();
                match self.basebackup(epoch, &upstream).await {
                    Ok(old_dir) => (
                        RejoinMethod::BaseBackup,
                        Some(rewind_error.to_string()),
                        Some(bb_started.elapsed()),
                        old_dir,
                    ),
                    Err(bb_error) => {
                        return Err(DbError::RejoinFailed {
                            server: self.server(),
                            rewind: Box::new(rewind_error),
                            basebackup: Box::new(bb_error),
                        })
                    }
                }
            }
        };

        self.restore_site_files(&saved)?;
        self.write_standby_config(&upstream)?;
        let start_started = Instant::now();
        self.start_server().await?;
        let start = Some(start_started.elapsed());
        let catch_up = Some(self.wait_streaming().await?);

        // The old data directory was kept until the new one streams, so that
        // a failed swap could still be undone by hand. Now it goes: it would
        // otherwise double the disk usage with every fallback.
        let removed_old_data_dir = match old_dir {
            Some(old) => match std::fs::remove_dir_all(&old) {
                Ok(()) => Some(old),
                Err(error) => {
                    warn!(%error, path = %old.display(), "could not remove the old data directory");
                    None
                }
            },
            None => None,
        };
        info!(?method, elapsed = ?started.elapsed(), "rejoined as a standby");
        Ok(RejoinOutcome {
            method,
            fence: Some(fence),
            rewind_failure,
            rewind,
            basebackup,
            start,
            catch_up,
            removed_old_data_dir,
            elapsed: started.elapsed(),
        })
    }

    /// True when the server already runs as a standby, streaming, with
    /// exactly this `primary_conninfo`: then rejoining is a no-op.
    async fn streams_from(&self, upstream: &ConnInfo) -> bool {
        match self.receiver().await {
            Ok((true, Some(rx))) if rx.status == "streaming" => {}
            _ => return false,
        }
        match self.running_primary_conninfo().await {
            Ok(current) => ConnInfo::parse(&current).is_ok_and(|c| &c == upstream),
            Err(_) => false,
        }
    }

    /// Runs `pg_rewind` against the new primary. Ok(false) when pg_rewind
    /// found no divergence ("no rewind required").
    ///
    /// pg_rewind needs a normal (not replication) connection to a database,
    /// as a superuser, so `--source-server` is `primary_conninfo` with the
    /// user and password of `admin_dsn` and `dbname=postgres`: the new
    /// primary is a physical copy of this cluster, so it has the same roles
    /// and passwords. The password goes through `PGPASSWORD`, not argv.
    /// Since PostgreSQL 13 pg_rewind itself runs crash recovery in
    /// single-user mode when the target was not shut down cleanly (a fence
    /// by `-m immediate` or SIGKILL).
    async fn rewind(&self, upstream: &ConnInfo) -> Result<bool, DbError> {
        let admin = ConnInfo::parse(&self.admin_dsn).map_err(|detail| DbError::InvalidInput {
            server: self.server(),
            what: "admin_dsn",
            detail,
        })?;
        let mut source = upstream.clone();
        source.remove("replication");
        source.remove("password");
        source.set("dbname", "postgres");
        if let Some(user) = admin.get("user") {
            source.set("user", user);
        }
        let mut cmd = Cmd::new("pg_rewind")
            .path_arg("--target-pgdata=", &self.data_dir)
            .arg(format!("--source-server={}", source.render()))
            // We read its messages ("no rewind required"); keep them English.
            .env("LC_MESSAGES", "C");
        let password = self
            .admin_password
            .as_ref()
            .map(|p| p.expose())
            .or(admin.get("password"));
        if let Some(password) = password {
            cmd = cmd.env("PGPASSWORD", password);
        }
        let done = self.runner().run_ok(cmd, self.transfer_timeout).await?;
        let needed = !format!("{}{}", done.stdout, done.stderr).contains("no rewind required");
        info!(needed, output = %done.tail(), "pg_rewind done");
        Ok(needed)
    }

    /// Takes a fresh base backup from the new primary into a sibling
    /// directory and swaps it in: the old data directory is renamed to
    /// `<data>.palisade-old-<epoch>` and the new one to `<data>`. Returns the
    /// old directory's path, to be removed once the new server streams.
    ///
    /// Both renames stay in one parent directory, so each is atomic; a crash
    /// between them leaves no `<data>` but the old copy intact, and a retry
    /// (rewind fails on the missing directory) takes a new backup. A retry
    /// with the same epoch after the swap finds `<data>.palisade-old-<epoch>`
    /// present: then `<data>` is our own earlier copy and is replaced, the
    /// original stays.
    async fn basebackup(
        &self,
        epoch: u64,
        upstream: &ConnInfo,
    ) -> Result<Option<PathBuf>, DbError> {
        let (parent, name) = match (self.data_dir.parent(), self.data_dir.file_name()) {
            (Some(parent), Some(name)) => (parent, name.to_string_lossy().into_owned()),
            _ => {
                return Err(DbError::InvalidInput {
                    server: self.server(),
                    what: "data_dir",
                    detail: "has no parent directory".into(),
                })
            }
        };
        let new_dir = parent.join(format!("{name}.palisade-new-{epoch}"));
        let old_dir = parent.join(format!("{name}.palisade-old-{epoch}"));
        let owner = self.data_owner()?;

        if new_dir.exists() {
            // Left by an interrupted attempt of this same step.
            std::fs::remove_dir_all(&new_dir).map_err(|e| self.io("removing", &new_dir, e))?;
        }
        std::fs::create_dir(&new_dir).map_err(|e| self.io("creating", &new_dir, e))?;
        std::fs::set_permissions(&new_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| self.io("setting permissions of", &new_dir, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&new_dir, Some(uid), Some(gid))
                .map_err(|e| self.io("changing owner of", &new_dir, e))?;
        }

        let mut source = upstream.clone();
        let password = source.remove("password");
        let mut cmd = Cmd::new("pg_basebackup")
            .path_arg("--pgdata=", &new_dir)
            .arg("--wal-method=stream")
            .arg("--checkpoint=fast")
            .arg("--no-password")
            .arg(format!("--dbname={}", source.render()));
        if let Some(password) = password {
            cmd = cmd.env("PGPASSWORD", password);
        }
        if let Err(e) = self.runner().run_ok(cmd, self.transfer_timeout).await {
            let _ = std::fs::remove_dir_all(&new_dir);
            return Err(e);
        }

        let mut kept_old = None;
        if self.data_dir.exists() {
            if old_dir.exists() {
                std::fs::remove_dir_all(&self.data_dir)
                    .map_err(|e| self.io("removing", &self.data_dir, e))?;
            } else {
                std::fs::rename(&self.data_dir, &old_dir)
                    .map_err(|e| self.io("moving aside", &self.data_dir, e))?;
            }
        }
        if old_dir.exists() {
            kept_old = Some(old_dir);
        }
        std::fs::rename(&new_dir, &self.data_dir)
            .map_err(|e| self.io("moving into place", &new_dir, e))?;
        sync_dir(parent).map_err(|e| self.io("syncing", parent, e))?;
        Ok(kept_old)
    }

    /// Owner (uid, gid) that files we create in the data directory must
    /// have: the data directory's own owner, or `os_user` when the
    /// directory is gone. `None` when we are not root (we cannot chown, and
    /// files we create are ours, which is what the server runs as).
    fn data_owner(&self) -> Result<Option<(u32, u32)>, DbError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        if let Ok(meta) = std::fs::metadata(&self.data_dir) {
            return Ok(Some((meta.uid(), meta.gid())));
        }
        let Some(user) = self.os_user.as_deref() else {
            return Ok(None);
        };
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
            Ok(None) => Err(DbError::InvalidInput {
                server: self.server(),
                what: "os_user",
                detail: format!("no such user {user:?}"),
            }),
            Err(e) => Err(self.io("looking up os_user", Path::new("/etc/passwd"), e.into())),
        }
    }

    /// Reads the site's own configuration files (those present and
    /// readable), following includes. A data directory too broken to read
    /// them from has none to keep.
    fn save_site_files(&self) -> Vec<SavedFile> {
        let mut queue: Vec<PathBuf> = SITE_LOCAL_FILES
            .iter()
            .rev()
            .map(|name| self.data_dir.join(name))
            .collect();
        let mut saved: Vec<SavedFile> = Vec::new();
        while let Some(path) = queue.pop() {
            let Ok(relative) = path.strip_prefix(&self.data_dir) else {
                continue; // outside the data directory: nothing overwrites it
            };
            let relative = relative.to_path_buf();
            if saved.iter().any(|(seen, _, _)| *seen == relative) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o600);
            let base = path.parent().unwrap_or(&self.data_dir).to_path_buf();
            for (directive, target) in include_directives(&String::from_utf8_lossy(&bytes)) {
                let target = base.join(target);
                if directive == "include_dir" {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&target)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.extension().is_some_and(|x| x == "conf")
                                && !p
                                    .file_name()
                                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        })
                        .collect();
                    files.sort();
                    queue.extend(files.into_iter().rev());
                } else {
                    queue.push(target);
                }
            }
            saved.push((relative, bytes, mode));
        }
        saved
    }

    fn restore_site_files(&self, saved: &[SavedFile]) -> Result<(), DbError> {
        for (relative, bytes, mode) in saved {
            if let Some(dir) = self.data_dir.join(relative).parent() {
                if !dir.exists() {
                    std::fs::create_dir_all(dir).map_err(|e| self.io("creating", dir, e))?;
                }
            }
            self.write_data_file(relative, bytes, *mode)?;
        }
        Ok(())
    }

    /// Makes the server start as a standby of `upstream`: `standby.signal`,
    /// and `primary_conninfo` in `postgresql.auto.conf` (where ALTER SYSTEM
    /// writes, read last, so it wins over postgresql.conf). Any earlier
    /// `primary_conninfo` line there is replaced.
    fn write_standby_config(&self, upstream: &ConnInfo) -> Result<(), DbError> {
        self.write_data_file(Path::new("standby.signal"), b"", 0o600)?;
        let value = conf_literal(&upstream.render()).map_err(|detail| DbError::InvalidInput {
            server: self.server(),
            what: "primary_conninfo",
            detail,
        })?;
        let path = self.data_dir.join("postgresql.auto.conf");
        let current = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.io("reading", &path, e)),
        };
        let mut text: String = current
            .lines()
            .filter(|line| !sets_parameter(line, "primary_conninfo"))
            .map(|line| format!("{line}\n"))
            .collect();
        text.push_str(&format!(
            "# set by palisade when rejoining this server as a standby\nprimary_conninfo = {value}\n"
        ));
        self.write_data_file(Path::new("postgresql.auto.conf"), text.as_bytes(), 0o600)
    }

    /// Writes a file of the data directory atomically (temporary file,
    /// fsync, rename), owned like the data directory.
    fn write_data_file(&self, relative: &Path, bytes: &[u8], mode: u32) -> Result<(), DbError> {
        let path = self.data_dir.join(relative);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".palisade-tmp");
        let tmp = PathBuf::from(tmp);
        let dir = path.parent().unwrap_or(&self.data_dir).to_path_buf();
        let owner = self.data_owner()?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("writing", &path, e)
        })
    }

    pub(super) fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> DbError {
        DbError::Io {
            server: self.server(),
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The `include`, `include_if_exists` and `include_dir` directives of a
/// configuration file, with their (possibly relative) paths.
fn include_directives(text: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let key_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let directive = match line[..key_len].to_ascii_lowercase().as_str() {
            "include" => "include",
            "include_if_exists" => "include_if_exists",
            "include_dir" => "include_dir",
            _ => continue,
        };
        let rest = line[key_len..].trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.next_if_eq(&'\'').is_some() => value.push('\''),
                    '\'' => break,
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    c => value.push(c),
                }
            }
            value
        } else {
            rest.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        if !value.is_empty() {
            out.push((directive, value));
        }
    }
    out
}

/// True when a configuration line sets `name` (`name = v` or `name v`).
fn sets_parameter(line: &str, name: &str) -> bool {
    let line = line.trim_start();
    line.get(..name.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(name))
        && line[name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c == '=' || c.is_whitespace())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::{include_directives, sets_parameter};

    #[test]
    fn finds_include_directives() {
        let conf = "port = 5432\ninclude 'palisade.conf'\n# include 'no.conf'\n\
                    include_if_exists = 'extra.conf' # why\ninclude_dir conf.d\n\
                    include_dirx = 'no'\n";
        assert_eq!(
            include_directives(conf),
            vec![
                ("include", "palisade.conf".to_owned()),
                ("include_if_exists", "extra.conf".to_owned()),
                ("include_dir", "conf.d".to_owned()),
            ]
        );
    }

    #[test]
    fn recognises_parameter_lines() {
        assert!(sets_parameter("primary_conninfo = 'x'", "primary_conninfo"));
        assert!(sets_parameter("  PRIMARY_CONNINFO='x'", "primary_conninfo"));
        assert!(!sets_parameter(
            "primary_conninfo_x = 1",
            "primary_conninfo"
        ));
        assert!(!sets_parameter(
            "# primary_conninfo = 'x'",
            "primary_conninfo"
        ));
    }
}
