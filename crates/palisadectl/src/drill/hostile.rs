//! The drill plan parser fed hostile and broken plans: arbitrary bytes, and
//! mutations of the shipped plan (`deploy/drills/dr-test.toml`). It returns
//! a plan or a one-line error naming the file, and never panics.

use proptest::prelude::*;

use super::plan::{load, parse};

/// The plan the repository ships: every phase, step kind and check.
const SHIPPED: &str = include_str!("../../../../deploy/drills/dr-test.toml");

const FILE: &str = "hostile-plan.toml";

/// Pieces a mutation splices in: what breaks TOML or stretches a value.
const SNIPPETS: &[&str] = &[
    "[[phase]]\n",
    "name = \"failover\"\n",
    "checks_timeout = \"99999999999999999999h\"\n",
    "timeout = \"18446744073709551615s\"\n",
    "timeout = \"1h1h1h\"\n",
    "timeout = \"-1s\"\n",
    "timeout = \"\"\n",
    "timeout = 5\n",
    "wait = \"584942417355y\"\n",
    "run = []\n",
    "run = [\"\"]\n",
    "checks = [\"nonsense\"]\n",
    "\"",
    "'''",
    "[",
    "]",
    "=",
    "\n",
    "#",
    "\u{feff}",
    "\0",
    "\u{202e}",
];

/// Parses `text` and checks the answer: a plan, or an error naming the file.
fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = parse(FILE, text) {
        let line = e.to_string();
        prop_assert!(
            line.starts_with(&format!("drill plan {FILE}: ")),
            "names the file: {}",
            line
        );
        prop_assert!(!e.reason.is_empty(), "says why: {}", line);
    }
    Ok(())
}

#[test]
fn the_shipped_plan_parses() {
    parse(FILE, SHIPPED).expect("the shipped plan is valid");
}

#[test]
fn pinned_hostile_plans_are_refused_naming_the_file() {
    for text in [
        "",
        "\0",
        "name = \"x\"\n[[phase]]\nname = \"failover\"\nchecks_timeout = \"99999999999999999999h\"\n",
        "name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nchecks_timeout = \"584942417355y\"\n",
        "name = \"x\"\n[[phase]]\nname = \"checkpoint\"\n[[phase.step]]\nwait = \"18446744073709551615s 1s\"\n",
        "name = \"\u{202e}\"\n",
        "name = [[]]\n",
    ] {
        let e = parse(FILE, text).expect_err(text);
        assert!(
            e.to_string().starts_with(&format!("drill plan {FILE}: ")),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn a_plan_file_that_is_not_text_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, [0xff, 0xfe, b'n', 0x00]).expect("write");
    let e = load(&path).expect_err("not UTF-8");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_plan_parser(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        parse_checked(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_shipped_plans_parse_or_are_refused_naming_the_file(
        edits in proptest::collection::vec((any::<usize>(), 0..SNIPPETS.len(), 0usize..24), 1..6),
    ) {
        let mut text = SHIPPED.to_string();
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
}
