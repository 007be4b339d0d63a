//! The `monitorsEnabled` flip against real files shaped like the app's
//! `threatconnect.xml`: byte-exact splicing, idempotence, refusals that
//! leave the file untouched, read-only files and directories, and racing
//! writers.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_actions::atomic_file::{backup_path, lock_path, AtomicFileError};
use palisade_actions::monitors::{
    read_monitors_enabled, read_property, set_monitors_enabled, set_property, FlipOutcome,
    XmlEditError,
};

/// A realistic `threatconnect.xml`: Spring beans, CRLF line ends, odd
/// indentation and attribute layout, single quotes, an entity, and a
/// commented-out decoy of the property right before the real one.
fn threatconnect_xml(monitors: &str) -> String {
    [
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<!-- ThreatConnect application configuration. Managed by ops; see runbook TC-12. -->"#,
        r#"<beans xmlns="http://www.springframework.org/schema/beans""#,
        r#"       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
        r#"       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd">"#,
        r#""#,
        r#"  <bean id="dataSource" class="org.apache.commons.dbcp2.BasicDataSource" destroy-method="close">"#,
        r#"    <property name="driverClassName" value="org.postgresql.Driver"/>"#,
        r#"    <property name="url" value="jdbc:postgresql://db-a.example:5432/threatconnect?ssl=true&amp;sslmode=verify-full" />"#,
        r#"    <property name='username' value='tc'/>"#,
        r#"  </bean>"#,
        r#""#,
        r#"	<bean id="appSettings"   class="com.threatconnect.app.AppSettings">"#,
        r#"    <!-- Only ONE server may run monitors (HA/DR guide)."#,
        r#"    <property name="monitorsEnabled" value="true"/>"#,
        r#"    -->"#,
        &format!(
            "    <property\tvalue = \"{monitors}\"\r\n              name=\"monitorsEnabled\"   />"
        ),
        r#"    <property name="elasticsearchHosts" value="http://es-a1:9200,http://es-a2:9200"/>"#,
        r#"    <property name="documentStorageLocalPath" value="/mnt/nas/tc-docs"/>"#,
        r#"    <property name="jobThreads"><value>8</value></property>"#,
        r#"  </bean>"#,
        r#"</beans>"#,
        r#""#,
    ]
    .join("\r\n")
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, contents).expect("write fixture");
    p
}

fn stamp(p: &Path) -> (i64, i64, u64) {
    let m = fs::metadata(p).expect("stat");
    (m.mtime(), m.mtime_nsec(), m.ino())
}

#[test]
fn flip_true_false_true_changes_only_the_value_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("true"));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).expect("chmod");

    eprintln!("--- step: true -> false");
    let out = set_monitors_enabled(&f, false).expect("flip to false");
    assert!(
        matches!(&out, FlipOutcome::Changed { from, to, backup: Some(b) } if from == "true" && to == "false" && *b == backup_path(&f)),
        "{out:?}"
    );
    assert_eq!(
        fs::read_to_string(&f).expect("read"),
        threatconnect_xml("false")
    );
    assert_eq!(
        fs::read_to_string(backup_path(&f)).expect("read bak"),
        threatconnect_xml("true")
    );
    assert_eq!(read_monitors_enabled(&f).expect("read"), Some(false));
    assert_eq!(
        fs::metadata(&f).expect("stat").mode() & 0o777,
        0o640,
        "mode preserved"
    );
    // The backup is owner-only whatever the original's mode: it lingers,
    // and threatconnect.xml holds the app's database credentials.
    assert_eq!(
        fs::metadata(backup_path(&f)).expect("stat").mode() & 0o777,
        0o600,
        "backup mode is owner-only"
    );

    eprintln!("--- step: false -> true");
    let out = set_monitors_enabled(&f, true).expect("flip to true");
    assert!(out.changed());
    assert_eq!(
        fs::read_to_string(&f).expect("read"),
        threatconnect_xml("true")
    );
    assert_eq!(
        fs::read_to_string(backup_path(&f)).expect("read bak"),
        threatconnect_xml("false")
    );

    // Other properties read through the same parser, entities resolved.
    assert_eq!(
        read_property(&f, "url").expect("url"),
        "jdbc:postgresql://db-a.example:5432/threatconnect?ssl=true&sslmode=verify-full"
    );
    assert_eq!(read_property(&f, "username").expect("username"), "tc");
}

#[test]
fn setting_an_arbitrary_value_escapes_it_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("true"));
    let hosts = "http://es-b1:9200,http://es-b2:9200?a=1&b=\"2\"";
    set_property(&f, "elasticsearchHosts", hosts).expect("set hosts");
    assert_eq!(
        read_property(&f, "elasticsearchHosts").expect("read"),
        hosts
    );
    let expected = threatconnect_xml("true").replace(
        "http://es-a1:9200,http://es-a2:9200",
        "http://es-b1:9200,http://es-b2:9200?a=1&amp;b=&quot;2&quot;",
    );
    assert_eq!(fs::read_to_string(&f).expect("read"), expected);
}

#[test]
fn owner_is_preserved_when_running_as_root() {
    if !is_root() {
        eprintln!("SKIP owner preservation: only root may give a file to another user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("true"));
    // The app's own user owns its config; palisade (root) must not steal it.
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).expect("chown");
    set_monitors_enabled(&f, false).expect("flip");
    for p in [f.clone(), backup_path(&f)] {
        let m = fs::metadata(&p).expect("stat");
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
    }
}

#[test]
fn already_desired_value_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("false"));
    let before = stamp(&f);
    // Make a rewrite visible in the mtime even on coarse clocks.
    std::thread::sleep(Duration::from_millis(20));
    let out = set_monitors_enabled(&f, false).expect("no-op");
    assert_eq!(
        out,
        FlipOutcome::Unchanged {
            value: "false".into()
        }
    );
    assert_eq!(stamp(&f), before, "mtime and inode unchanged");
    assert!(!backup_path(&f).exists(), "no backup written");
    assert!(!lock_path(&f).exists(), "nothing to do needs no lock file");
}

fn assert_refused(f: &Path, original: &str, err: &XmlEditError, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&f.display().to_string()),
        "error names the file: {msg}"
    );
    assert!(msg.contains(needle), "error says why ({needle}): {msg}");
    assert_eq!(
        fs::read_to_string(f).expect("read"),
        original,
        "original intact"
    );
    assert!(!backup_path(f).exists(), "no backup on refusal");
    assert!(!err.is_retryable(), "{msg}");
}

#[test]
fn malformed_missing_and_duplicate_properties_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = threatconnect_xml("true");
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated.xml", good[..good.len() - 12].to_string(), "not well-formed"),
        ("mismatched.xml", good.replace("</bean>\r\n</beans>", "</beans>\r\n</bean>"), "not well-formed"),
        ("unquoted.xml", good.replace("value = \"true\"", "value = true"), "not well-formed"),
        ("twice-attr.xml", good.replace("name=\"monitorsEnabled\"   />", "name=\"monitorsEnabled\" name=\"x\"/>"), "not well-formed"),
        ("unclosed-comment.xml", good.replace("    -->", "    - ->"), "not well-formed"),
        ("missing.xml", good.replace("name=\"monitorsEnabled\"   />", "name=\"monitorsDisabled\"/>"), "no <property name=\"monitorsEnabled\">"),
        (
            "duplicate.xml",
            good.replace(
                "<property name=\"documentStorageLocalPath\"",
                "<property name=\"monitorsEnabled\" value=\"false\"/>\r\n    <property name=\"documentStorageLocalPath\"",
            ),
            "2 <property name=\"monitorsEnabled\"> elements",
        ),
        ("no-value.xml", good.replace("value = \"true\"\r\n", "\r\n"), "has no value attribute"),
    ];
    for (name, text, needle) in cases {
        eprintln!("--- case {name}");
        let f = write(dir.path(), name, &text);
        let err = set_monitors_enabled(&f, false).expect_err(name);
        assert_refused(&f, &text, &err, needle);
        let err = read_property(&f, "monitorsEnabled").expect_err(name);
        assert!(err.to_string().contains(needle), "{err}");
    }
    let absent = dir.path().join("absent.xml");
    let err = set_monitors_enabled(&absent, true).expect_err("absent");
    assert!(err.to_string().contains("absent.xml"), "{err}");
    assert!(!absent.exists());
}

/// Sets or clears the immutable attribute; cleared again on drop so the
/// temp dir can be removed.
struct Immutable(PathBuf);

impl Immutable {
    fn set(p: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Immutable(p.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // Root bypasses permission bits, so chmod alone proves nothing there.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn read_only_file_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = threatconnect_xml("true");
    let f = write(dir.path(), "threatconnect.xml", &text);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o444)).expect("chmod");
    let _guard = if is_root() {
        match Immutable::set(&f) {
            Some(g) => Some(g),
            None => {
                eprintln!(
                    "SKIP read-only file case: running as root and `chattr +i` is unavailable here"
                );
                return;
            }
        }
    } else {
        None
    };
    let before = stamp(&f);
    let err = set_monitors_enabled(&f, false).expect_err("read-only");
    assert!(
        matches!(&err, XmlEditError::File(AtomicFileError::ReadOnly { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("threatconnect.xml"), "{err}");
    assert!(err.to_string().contains("not writable"), "{err}");
    assert_eq!(fs::read_to_string(&f).expect("read"), text);
    assert_eq!(stamp(&f), before);
    // Reading and the no-op case still work on a read-only file.
    assert_eq!(
        set_monitors_enabled(&f, true).expect("no-op"),
        FlipOutcome::Unchanged {
            value: "true".into()
        }
    );
}

#[test]
fn read_only_directory_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("config");
    fs::create_dir(&sub).expect("mkdir");
    let text = threatconnect_xml("true");
    let f = write(&sub, "threatconnect.xml", &text);
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o555)).expect("chmod dir");
    let guard = if is_root() {
        match Immutable::set(&sub) {
            Some(g) => Some(g),
            None => {
                eprintln!("SKIP read-only directory case: running as root and `chattr +i` is unavailable here");
                fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod back");
                return;
            }
        }
    } else {
        None
    };
    let err = set_monitors_enabled(&f, false).expect_err("read-only dir");
    let msg = err.to_string();
    assert!(msg.contains("config/threatconnect.xml"), "{msg}");
    assert!(msg.contains("is its directory writable"), "{msg}");
    assert_eq!(fs::read_to_string(&f).expect("read"), text);
    drop(guard);
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod back");
    let names: Vec<_> = fs::read_dir(&sub)
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp, backup or lock files: {names:?}");
}

#[test]
fn path_under_a_regular_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = write(dir.path(), "plain", "x");
    let f = not_a_dir.join("threatconnect.xml");
    let err = set_monitors_enabled(&f, false).expect_err("ENOTDIR");
    assert!(err.to_string().contains("plain/threatconnect.xml"), "{err}");
    assert_eq!(fs::read_to_string(&not_a_dir).expect("read"), "x");
}

#[test]
fn racing_flips_never_corrupt_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("true"));
    let valid = [threatconnect_xml("true"), threatconnect_xml("false")];
    let done = Arc::new(AtomicBool::new(false));

    // A reader checking, all through the race, that every version it sees
    // is complete: renames must make the switch atomic.
    let reader = {
        let (f, valid, done) = (f.clone(), valid.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&f).expect("read during race");
                assert!(valid.contains(&text), "torn read: {text}");
                reads += 1;
            }
            reads
        })
    };
    // Two writers start together and flip in opposite phase, so nearly
    // every call really writes and the two contend for the lock.
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|phase| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut changed = 0;
                for i in 0..20 {
                    let value = (i + phase) % 2 == 0;
                    if set_monitors_enabled(&f, value)
                        .expect("flip during race")
                        .changed()
                    {
                        changed += 1;
                    }
                }
                changed
            })
        })
        .collect();
    let changes: Vec<u32> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    eprintln!("--- race: changes per writer {changes:?}, {reads} concurrent reads");

    let final_text = fs::read_to_string(&f).expect("read");
    assert!(valid.contains(&final_text), "final file valid");
    let backup = fs::read_to_string(backup_path(&f)).expect("backup");
    assert!(valid.contains(&backup), "backup valid");
    assert_ne!(
        final_text, backup,
        "the backup is the version before the last change"
    );
    assert!(read_monitors_enabled(&f).expect("parse").is_some());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn flip_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "threatconnect.xml", &threatconnect_xml("true"));
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        set_monitors_enabled(&f, i % 2 == 1).expect("flip");
        changed.push(t.elapsed());
        let t = Instant::now();
        set_monitors_enabled(&f, i % 2 == 1).expect("no-op");
        unchanged.push(t.elapsed());
    }
    changed.sort();
    unchanged.sort();
    eprintln!(
        "TIMING monitorsEnabled flip (lock+backup+fsync+rename+dir fsync): p50 {:?}, max {:?}; already-correct check: p50 {:?}",
        changed[changed.len() / 2],
        changed[changed.len() - 1],
        unchanged[unchanged.len() / 2]
    );
    assert!(changed[changed.len() / 2] < Duration::from_millis(500));
}
