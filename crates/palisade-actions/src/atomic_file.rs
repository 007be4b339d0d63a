//! Crash-safe, race-safe replacement of small configuration files.
//!
//! Every file palisade edits on an application host (`threatconnect.xml`,
//! an Elasticsearch hosts file, a rendered front-door config) goes through
//! here, so that whatever happens — a crash mid-write, a full disk, two
//! witnesses or two steps racing — the file on disk is always either the old
//! version or the new one, never a mix:
//!
//! 1. an advisory lock (`flock(2)` on `<file>.palisade.lock`) serialises
//!    read-modify-write cycles of cooperating writers;
//! 2. the previous version is kept as `<file>.palisade.bak`, itself written
//!    atomically, owner-only (mode 0600), *before* the target is replaced;
//! 3. the new content goes to a temporary file in the same directory, is
//!    fsynced, given the original's permissions (and owner, when we may),
//!    renamed over the target, and the directory is fsynced so the rename
//!    survives a power cut.
//!
//! A file that already holds the desired content is not written at all (its
//! mtime and inode stay), and that check is made first without the lock, so
//! a reconcile loop that finds nothing to do never touches the directory.
//!
//! All functions here block; async callers run them on
//! `tokio::task::spawn_blocking`.

use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files larger than this are refused: configuration files are small, and a
/// multi-megabyte "config" means the path points at the wrong thing.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file could not be read, locked or replaced. Every variant names the
/// path it is about. Only [`AtomicFileError::LockTimeout`] is retryable; the
/// others need an operator (wrong path, permissions, full disk).
#[derive(Debug, thiserror::Error)]
pub enum AtomicFileError {
    /// The target could not be read (missing, unreadable, a directory).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The target is larger than [`MAX_FILE_BYTES`].
    #[error("{path} is {size} bytes, larger than the {max} bytes a configuration file may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The target may not be modified (read-only file, immutable attribute,
    /// read-only file system). The original is untouched.
    #[error("{path} is not writable: {source}; the file was left untouched")]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The lock file could not be created or locked (read-only directory).
    #[error("cannot lock {path} (is its directory writable?): {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another writer held the lock for longer than the timeout. Retryable.
    #[error("{path} stayed locked by another writer for {waited:?}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// Writing, syncing or renaming failed; `stage` says which step. The
    /// target still holds its previous content (the rename is the last step).
    #[error("cannot write {path} ({stage}): {source}; the original was left untouched")]
    Write {
        /// The file being written (the target, or its backup).
        path: PathBuf,
        /// What we were doing: `create temp file`, `write`, `fsync`, ...
        stage: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl AtomicFileError {
    /// True when trying again later may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AtomicFileError::LockTimeout { .. })
    }
}

impl crate::retry::Retryable for AtomicFileError {
    fn is_retryable(&self) -> bool {
        AtomicFileError::is_retryable(self)
    }
}

/// `<file>.palisade.bak`: where the previous version is kept.
pub fn backup_path(target: &Path) -> PathBuf {
    with_suffix(target, ".palisade.bak")
}

/// `<file>.palisade.lock`: the advisory lock file. It is never deleted:
/// removing a lock file while another process waits on it would let two
/// writers in at once.
pub fn lock_path(target: &Path) -> PathBuf {
    with_suffix(target, ".palisade.lock")
}

fn with_suffix(target: &Path, suffix: &str) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// How [`update`] and [`replace`] behave.
#[derive(Clone, Debug)]
pub struct UpdateOptions {
    /// How long to wait for another writer's lock before giving up with the
    /// retryable [`AtomicFileError::LockTimeout`].
    pub lock_timeout: Duration,
    /// Keep the previous version as `<file>.palisade.bak`.
    pub backup: bool,
    /// `Some(mode)`: a missing target is created with this mode (rendered
    /// configs). `None`: a missing target is an error (the app's own files
    /// must exist; creating one would hide a wrong path).
    pub create_mode: Option<u32>,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(10),
            backup: true,
            create_mode: None,
        }
    }
}

/// An exclusive advisory lock on `<file>.palisade.lock`, released on drop.
///
/// `flock(2)` locks belong to an open file description, so two threads of
/// one process exclude each other too (each acquisition opens the file
/// anew). Only writers that take the lock are excluded: an operator's editor
/// is not, which is why the edit is always re-read under the lock.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock for `target`, waiting up to `timeout`.
    pub fn acquire(target: &Path, timeout: Duration) -> Result<Self, AtomicFileError> {
        let path = lock_path(target);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| AtomicFileError::Lock {
                path: path.clone(),
                source,
            })?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            // std's `File::try_lock` is `flock(LOCK_EX | LOCK_NB)` on Linux:
            // the same lock `nix::fcntl::flock` would take, without unsafe
            // or an extra nix feature.
            match file.try_lock() {
                Ok(()) => return Ok(Self { file, path }),
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        return Err(AtomicFileError::LockTimeout {
                            path,
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(fs::TryLockError::Error(source)) => {
                    return Err(AtomicFileError::Lock { path, source })
                }
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock anyway; unlocking first
        // makes the release independent of when the fd is really closed.
        let _ = self.file.unlock();
    }
}

/// Resolves symlinks so that the temp file, the backup and the lock live
/// next to the real file, and the rename replaces the file rather than the
/// link. A missing file resolves through its parent directory.
pub fn resolve(target: &Path) -> Result<PathBuf, AtomicFileError> {
    match fs::canonicalize(target) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_dir(target);
            let name = target.file_name().ok_or_else(|| AtomicFileError::Read {
                path: target.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            })?;
            let parent = fs::canonicalize(parent).map_err(|source| AtomicFileError::Read {
                path: target.to_owned(),
                source,
            })?;
            Ok(parent.join(name))
        }
        Err(source) => Err(AtomicFileError::Read {
            path: target.to_owned(),
            source,
        }),
    }
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads the target, `Ok(None)` when it does not exist.
pub fn read_current(target: &Path) -> Result<Option<Vec<u8>>, AtomicFileError> {
    let err = |source| AtomicFileError::Read {
        path: target.to_owned(),
        source,
    };
    let mut file = match File::open(target) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(AtomicFileError::TooLarge {
            path: target.to_owned(),
            size: meta.len(),
            max: MAX_FILE_BYTES,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read even if the file grows while we read it.
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(AtomicFileError::TooLarge {
            path: target.to_owned(),
            size: buf.len() as u64,
            max: MAX_FILE_BYTES,
        });
    }
    Ok(Some(buf))
}

/// What an edit function decided.
#[derive(Debug)]
pub enum Edit<R> {
    /// The file already holds what we want: do not write.
    Keep(R),
    /// Replace the file with `contents`.
    Replace {
        /// The complete new content.
        contents: Vec<u8>,
        /// What the caller wants to report about the change.
        info: R,
    },
}

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<R> {
    /// Nothing was written; the file is exactly as it was.
    Unchanged(R),
    /// The file was replaced.
    Written {
        /// The edit function's report.
        info: R,
        /// Where the previous version was kept, if it existed and backups
        /// are on.
        backup: Option<PathBuf>,
    },
}

/// Locked, atomic read-modify-write of `target`.
///
/// `edit` gets the current bytes (`None` if the file does not exist and
/// `opts.create_mode` allows creating it) and decides. It may be called twice
/// (once without the lock as a fast path, once under it), so it must be a
/// pure function of its input.
pub fn update<R, E, F>(target: &Path, opts: &UpdateOptions, edit: F) -> Result<Updated<R>, E>
where
    E: From<AtomicFileError>,
    F: Fn(Option<&[u8]>) -> Result<Edit<R>, E>,
{
    let target = resolve(target)?;
    let read = |target: &Path| -> Result<Option<Vec<u8>>, AtomicFileError> {
        let current = read_current(target)?;
        if current.is_none() && opts.create_mode.is_none() {
            return Err(AtomicFileError::Read {
                path: target.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
            });
        }
        Ok(current)
    };

    // Fast path without the lock: a reconcile that finds the file already
    // right must not even create a lock file (the directory may be
    // read-only, and that is fine when there is nothing to do). Renames are
    // atomic, so an unlocked read sees a complete version.
    let current = read(&target)?;
    if let Edit::Keep(info) = edit(current.as_deref())? {
        return Ok(Updated::Unchanged(info));
    }

    let _lock = FileLock::acquire(&target, opts.lock_timeout)?;
    // Re-read under the lock: another writer may have changed the file
    // between our first read and taking the lock.
    let current = read(&target)?;
    match edit(current.as_deref())? {
        Edit::Keep(info) => Ok(Updated::Unchanged(info)),
        Edit::Replace { contents, info } => {
            let backup = replace(&target, &contents, current.as_deref(), opts)?;
            Ok(Updated::Written { info, backup })
        }
    }
}

/// Mode of `<file>.palisade.bak`: readable by its owner only (the target
/// keeps its own mode).
pub const BACKUP_MODE: u32 = 0o600;

/// Replaces `target` with `contents` (caller holds the [`FileLock`]).
/// `previous` is the content being replaced, saved as the backup when
/// `opts.backup` is set. Returns the backup's path if one was written.
pub fn replace(
    target: &Path,
    contents: &[u8],
    previous: Option<&[u8]>,
    opts: &UpdateOptions,
) -> Result<Option<PathBuf>, AtomicFileError> {
    let meta = match fs::metadata(target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(AtomicFileError::Read {
                path: target.to_owned(),
                source,
            })
        }
    };
    if meta.is_some() {
        check_writable(target)?;
    }
    let mode = match (&meta, opts.create_mode) {
        (Some(m), _) => m.mode() & 0o7777,
        (None, Some(mode)) => mode,
        (None, None) => {
            return Err(AtomicFileError::Read {
                path: target.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
            })
        }
    };

    let mut backup = None;
    if let (true, Some(previous), Some(meta)) = (opts.backup, previous, &meta) {
        let path = backup_path(target);
        // Owner-only, whatever the original's mode: a backup lingers, and
        // the files we edit (threatconnect.xml) may hold credentials.
        write_via_rename(&path, previous, BACKUP_MODE, Some(meta))?;
        backup = Some(path);
    }
    write_via_rename(target, contents, mode, meta.as_ref())?;
    Ok(backup)
}

/// Removes `target` (used to undo the creation of a file that did not exist
/// before), and fsyncs its directory.
pub fn remove(target: &Path) -> Result<(), AtomicFileError> {
    match fs::remove_file(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(AtomicFileError::Write {
                path: target.to_owned(),
                stage: "remove",
                source,
            })
        }
    }
    sync_dir(target)
}

/// Fails with [`AtomicFileError::ReadOnly`] when an in-place write to the
/// target would be refused.
///
/// A rename only needs a writable directory, so without this check a file an
/// operator made read-only (`chmod a-w`, `chattr +i`) would silently be
/// replaced. Opening for write without truncating changes nothing, not even
/// the mtime, and asks the kernel exactly the question we mean.
fn check_writable(target: &Path) -> Result<(), AtomicFileError> {
    OpenOptions::new()
        .write(true)
        .open(target)
        .map(drop)
        .map_err(|source| AtomicFileError::ReadOnly {
            path: target.to_owned(),
            source,
        })
}

/// Writes `contents` to a temp file next to `path`, syncs it, gives it
/// `mode` and the owner of `like`, renames it over `path`, syncs the
/// directory.
fn write_via_rename(
    path: &Path,
    contents: &[u8],
    mode: u32,
    like: Option<&Metadata>,
) -> Result<(), AtomicFileError> {
    let err = |stage: &'static str| {
        move |source: io::Error| AtomicFileError::Write {
            path: path.to_owned(),
            stage,
            source,
        }
    };
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".palisade.tmp")
        .tempfile_in(dir)
        .map_err(err("create temp file"))?;
    tmp.write_all(contents).map_err(err("write temp file"))?;
    if let Some(like) = like {
        preserve_owner(tmp.as_file(), path, like).map_err(err("chown temp file"))?;
    }
    // chmod after chown: chown clears setuid/setgid bits.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(err("chmod temp file"))?;
    tmp.as_file().sync_all().map_err(err("fsync temp file"))?;
    tmp.persist(path).map_err(|e| AtomicFileError::Write {
        path: path.to_owned(),
        stage: "rename over the target",
        source: e.error,
    })?;
    sync_dir(path)
}

/// Gives the temp file the original's owner and group. Only root (or the
/// owner changing the group to one of its own) may do that; when we may not,
/// the file ends up owned by us, which we log rather than fail on, because
/// refusing to fail over over a file's owner would be worse.
fn preserve_owner(tmp: &File, path: &Path, like: &Metadata) -> io::Result<()> {
    let ours = tmp.metadata()?;
    if ours.uid() == like.uid() && ours.gid() == like.gid() {
        return Ok(());
    }
    match std::os::unix::fs::fchown(tmp, Some(like.uid()), Some(like.gid())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                path = %path.display(),
                uid = like.uid(),
                gid = like.gid(),
                error = %e,
                "cannot preserve the file's owner; the new version is owned by this process's user"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> Result<(), AtomicFileError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AtomicFileError::Write {
            path: path.to_owned(),
            stage: "fsync directory",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit_to(want: &'static [u8]) -> impl Fn(Option<&[u8]>) -> Result<Edit<()>, AtomicFileError> {
        move |cur| {
            Ok(if cur == Some(want) {
                Edit::Keep(())
            } else {
                Edit::Replace {
                    contents: want.to_vec(),
                    info: (),
                }
            })
        }
    }

    #[test]
    fn replaces_keeps_backup_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.conf");
        fs::write(&f, b"old").expect("seed");
        fs::set_permissions(&f, Permissions::from_mode(0o640)).expect("chmod");
        let r = update(&f, &UpdateOptions::default(), edit_to(b"new")).expect("update");
        assert!(matches!(
            r,
            Updated::Written {
                backup: Some(_),
                ..
            }
        ));
        assert_eq!(fs::read(&f).expect("read"), b"new");
        assert_eq!(fs::read(backup_path(&f)).expect("read bak"), b"old");
        assert_eq!(fs::metadata(&f).expect("meta").mode() & 0o7777, 0o640);
        let r = update(&f, &UpdateOptions::default(), edit_to(b"new")).expect("update");
        assert_eq!(r, Updated::Unchanged(()));
        // No temp files left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with(".palisade.tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn missing_file_is_an_error_unless_creation_is_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("absent.conf");
        let e = update(&f, &UpdateOptions::default(), edit_to(b"x")).expect_err("missing");
        assert!(e.to_string().contains("absent.conf"), "{e}");
        let opts = UpdateOptions {
            create_mode: Some(0o600),
            ..UpdateOptions::default()
        };
        let r = update(&f, &opts, edit_to(b"x")).expect("create");
        assert_eq!(
            r,
            Updated::Written {
                info: (),
                backup: None
            }
        );
        assert_eq!(fs::metadata(&f).expect("meta").mode() & 0o777, 0o600);
    }

    #[test]
    fn symlinks_are_followed_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.conf");
        let link = dir.path().join("link.conf");
        fs::write(&real, b"old").expect("seed");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        update(&link, &UpdateOptions::default(), edit_to(b"new")).expect("update");
        assert!(fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).expect("read"), b"new");
    }
}
