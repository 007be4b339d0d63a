//! The `monitorsEnabled` flipper fed hostile and broken files: arbitrary
//! bytes, and mutations of a valid `threatconnect.xml`. Whatever the file
//! holds, the flipper returns a value or an error naming the file, never
//! panics, and the file on disk is either exactly as it was (every refusal)
//! or the same bytes with only the value spliced (a flip): never a mix.

use std::fs;
use std::path::Path;

use palisade_actions::atomic_file::{backup_path, lock_path};
use palisade_actions::monitors::{read_monitors_enabled, set_monitors_enabled, FlipOutcome};
use proptest::prelude::*;

/// A valid file: Spring beans, CRLF, a commented-out decoy, single quotes,
/// an entity, and the property with its attributes reversed.
fn valid_xml(monitors: &str) -> Vec<u8> {
    [
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<beans xmlns="http://www.springframework.org/schema/beans">"#,
        r#"  <bean id="dataSource" class="org.apache.commons.dbcp2.BasicDataSource">"#,
        r#"    <property name="url" value="jdbc:postgresql://db-a:5432/tc?ssl=true&amp;x=1" />"#,
        r#"    <property name='username' value='tc'/>"#,
        r#"  </bean>"#,
        r#"  <bean id="appSettings" class="com.threatconnect.app.AppSettings">"#,
        r#"    <!-- <property name="monitorsEnabled" value="true"/> -->"#,
        &format!("    <property value=\"{monitors}\"\r\n      name=\"monitorsEnabled\"/>"),
        r#"    <property name="elasticsearchHosts" value="http://es-a1:9200"/>"#,
        r#"    <property name="jobThreads"><value>8</value></property>"#,
        r#"  </bean>"#,
        r#"</beans>"#,
        r#""#,
    ]
    .join("\r\n")
    .into_bytes()
}

/// Pieces a mutation splices in: the tokens that break or confuse XML.
const SNIPPETS: &[&str] = &[
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<property name=\"monitorsEnabled\" value=\"true\"/>",
    "<property name=\"monitorsEnabled\"/>",
    "name=\"monitorsEnabled\"",
    "value=\"false\"",
    "&",
    "&bogus;",
    "&#0;",
    "\"",
    "'",
    "<",
    ">",
    "/>",
    "</beans>",
    "<beans>",
    "\u{feff}",
    "\0",
    "\r",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE beans [<!ENTITY x \"y\">]>",
];

/// One mutation of a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte.
    Flip { at: usize, with: u8 },
    /// Remove a run of bytes.
    Delete { at: usize, len: usize },
    /// Insert one of [`SNIPPETS`].
    Insert { at: usize, snippet: usize },
    /// Cut the file short.
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, with)| Mutation::Flip { at, with }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len();
        match *m {
            Mutation::Flip { at, with } if n > 0 => bytes[at % n] ^= with,
            Mutation::Delete { at, len } if n > 0 => {
                let at = at % n;
                bytes.drain(at..(at + len).min(n));
            }
            Mutation::Insert { at, snippet } => {
                let at = at % (n + 1);
                bytes.splice(at..at, SNIPPETS[snippet].bytes());
            }
            Mutation::Truncate { at } => bytes.truncate(at % (n + 1)),
            _ => {}
        }
    }
    bytes
}

/// The directory's entries other than the file, its lock and its backup:
/// a temporary file left behind would be a half-done write.
fn strays(dir: &Path, file: &Path) -> Vec<String> {
    let keep = [file.to_owned(), lock_path(file), backup_path(file)];
    fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| !keep.contains(p))
        .map(|p| p.display().to_string())
        .collect()
}

/// Flips `monitorsEnabled` to `enabled` in a file holding `before`, and
/// checks the file afterwards: unchanged on every error and on an
/// idempotent call; on a change, the same bytes but for the value, the
/// old ones kept as the backup, and the new value read back.
fn flip_checked(before: &[u8], enabled: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("threatconnect.xml");
    fs::write(&file, before).expect("write fixture");
    let name = file.display().to_string();

    // Reading never panics, and an error names the file.
    if let Err(e) = read_monitors_enabled(&file) {
        prop_assert!(e.to_string().contains(&name), "names the file: {}", e);
    }
    let outcome = set_monitors_enabled(&file, enabled);
    let after = fs::read(&file).expect("the file is still there");
    prop_assert!(
        strays(dir.path(), &file).is_empty(),
        "left behind: {:?}",
        strays(dir.path(), &file)
    );
    match outcome {
        Err(e) => {
            prop_assert!(e.to_string().contains(&name), "names the file: {}", e);
            prop_assert_eq!(
                &after,
                &before.to_vec(),
                "a refused flip leaves the file untouched"
            );
        }
        Ok(FlipOutcome::Unchanged { .. }) => {
            prop_assert_eq!(&after, &before.to_vec(), "nothing to do, nothing written");
        }
        Ok(FlipOutcome::Changed { .. }) => {
            let want = if enabled { "true" } else { "false" };
            // Everything but one run inside the value is byte-identical.
            let prefix = before
                .iter()
                .zip(&after)
                .take_while(|(a, b)| a == b)
                .count();
            let rest = before.len().min(after.len()) - prefix;
            let suffix = before
                .iter()
                .rev()
                .zip(after.iter().rev())
                .take(rest)
                .take_while(|(a, b)| a == b)
                .count();
            let spliced = &after[prefix..after.len() - suffix];
            prop_assert!(
                want.as_bytes()
                    .windows(spliced.len().max(1))
                    .any(|w| w == spliced)
                    || spliced.is_empty(),
                "only the value changed, to {:?}: spliced {:?}",
                want,
                String::from_utf8_lossy(spliced)
            );
            prop_assert_eq!(
                fs::read(backup_path(&file)).expect("a backup of the old file"),
                before.to_vec()
            );
            prop_assert_eq!(
                read_monitors_enabled(&file).map_err(|e| e.to_string()),
                Ok(Some(enabled))
            );
        }
    }
    Ok(())
}

#[test]
fn the_valid_fixture_flips_both_ways() {
    for (value, enabled) in [("true", false), ("false", true), ("true", true)] {
        flip_checked(&valid_xml(value), enabled).expect("flips");
    }
}

#[test]
fn pinned_hostile_files_are_refused_and_left_untouched() {
    let valid = valid_xml("true");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, bytes) in [
        Vec::new(),
        vec![0xff, 0xfe, 0x00],
        b"\xef\xbb\xbf".to_vec(),
        b"<beans><property name=\"monitorsEnabled\" value=\"tr\xffue\"/></beans>".to_vec(),
        b"<beans><property name=\"monitorsEnabled\" value=\"&#0;\"/></beans>".to_vec(),
        b"<beans><property name=\"monitorsEnabled\" value=\"&nope;\"/></beans>".to_vec(),
        b"<!DOCTYPE b [<!ENTITY e \"&e;\">]><b><property name=\"monitorsEnabled\" value=\"&e;\"/></b>".to_vec(),
        valid[..valid.len() / 2].to_vec(),
        valid.repeat(2),
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(format!("case-{i}.xml"));
        fs::write(&file, &bytes).expect("write");
        let e = set_monitors_enabled(&file, false).expect_err("refused");
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        assert_eq!(fs::read(&file).expect("read"), bytes, "case {i} untouched");
        flip_checked(&bytes, true).expect("checked");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arbitrary_bytes_never_panic_the_flipper_nor_half_write(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        enabled in any::<bool>(),
    ) {
        flip_checked(&bytes, enabled)?;
    }

    #[test]
    fn mutated_valid_files_flip_cleanly_or_are_refused_untouched(
        value in prop_oneof![Just("true"), Just("false"), Just(""), Just(" TRUE "), Just("&amp;")],
        mutations in proptest::collection::vec(mutation(), 1..6),
        enabled in any::<bool>(),
    ) {
        flip_checked(&mutate(valid_xml(value), &mutations), enabled)?;
    }
}
