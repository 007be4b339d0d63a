//! Each class of bad configuration stops `palisade run` with exit code 1 and
//! one stderr line naming the file, the key and the reason.

use std::path::Path;

use palisade_testkit::cluster::{palisade, Cluster};

/// Runs `palisade run` on `config` and returns its one-line error.
fn refused(config: &Path) -> String {
    let out = palisade(&["run"], config);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "must exit 1; stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&config.display().to_string()),
        "names the file: {stderr}"
    );
    stderr
}

fn with_edit(edit: impl Fn(&str) -> String) -> (Cluster, std::path::PathBuf) {
    let c = Cluster::new();
    let config = c.nodes[0].config.clone();
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(&config, edit(&text)).expect("write config");
    (c, config)
}

#[test]
fn unknown_key() {
    let (_c, f) = with_edit(|t| t.replace("[cluster]", "[cluster]\nnmae = \"oops\""));
    let e = refused(&f);
    assert!(e.contains("cluster") && e.contains("nmae"), "{e}");
}

#[test]
fn duplicate_id() {
    let (_c, f) = with_edit(|t| t.replace("id = 3", "id = 2"));
    let e = refused(&f);
    assert!(
        e.contains("witness[2].id") && e.contains("duplicate id 2"),
        "{e}"
    );
}

#[test]
fn duplicate_address() {
    let (c, f) = with_edit(|t| t.to_string());
    let text = std::fs::read_to_string(&f).expect("read");
    let a_control = c.nodes[0]
        .control
        .split("//")
        .last()
        .unwrap_or_default()
        .to_string();
    let b_control = c.nodes[1]
        .control
        .split("//")
        .last()
        .unwrap_or_default()
        .to_string();
    std::fs::write(&f, text.replace(&b_control, &a_control)).expect("write");
    let e = refused(&f);
    assert!(
        e.contains("witness[1].control_addr")
            && e.contains("already used by witness[0].control_addr"),
        "{e}"
    );
}

#[test]
fn own_id_not_among_witnesses() {
    let (_c, f) = with_edit(|t| t.replace("node_id = 1", "node_id = 4"));
    let e = refused(&f);
    assert!(
        e.contains("node_id") && e.contains("4 is not the id of any [[witness]]"),
        "{e}"
    );
}

#[test]
fn bad_address() {
    let (_c, f) =
        with_edit(|t| t.replacen("raft_addr = \"127.0.0.1:", "raft_addr = \"not-an-ip:", 1));
    let e = refused(&f);
    assert!(
        e.contains("witness[0].raft_addr") && e.contains("not an IP:port"),
        "{e}"
    );
}

#[test]
fn unwritable_data_dir() {
    let (c, f) = with_edit(|t| t.to_string());
    // A directory cannot be created below a regular file, not even by root.
    let blocker = c.dir.path().join("blocker");
    std::fs::write(&blocker, b"").expect("write blocker");
    let text = std::fs::read_to_string(&f).expect("read");
    let bad = blocker.join("data");
    std::fs::write(
        &f,
        text.replace(
            "data_dir = \"data/{site}\"",
            &format!("data_dir = \"{}\"", bad.display()),
        ),
    )
    .expect("write");
    let e = refused(&f);
    assert!(
        e.contains("storage.data_dir") && e.contains("cannot create"),
        "{e}"
    );
}

#[test]
fn missing_file_and_syntax_error() {
    let e = refused(Path::new("/nonexistent/palisade.toml"));
    assert!(e.contains("cannot read"), "{e}");
    let (_c, f) = with_edit(|t| format!("{t}\n[[witness]\n"));
    let e = refused(&f);
    assert!(e.contains("(syntax)"), "{e}");
}

#[test]
fn port_in_use_is_named() {
    let c = Cluster::new();
    let control = c.nodes[0]
        .control
        .split("//")
        .last()
        .unwrap_or_default()
        .to_string();
    let _squatter = std::net::TcpListener::bind(&control).expect("occupy the control port");
    let e = refused(&c.nodes[0].config);
    assert!(
        e.contains("witness[0].control_addr") && e.contains(&control),
        "{e}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let c = Cluster::new();
    let out = palisade(&["check-config"], &c.nodes[1].config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok: node 2 (site b), 3 witnesses"),
        "{stdout}"
    );
}

/// Issue 11: `level = "inf"` passed `check-config`, and then silenced all
/// logging (EnvFilter reads a bare word as a target name). A filter with an
/// unknown level, or one that says nothing, is refused naming `log.level`,
/// by `check-config` and at start alike.
#[test]
fn a_log_level_typo_is_refused_by_check_config_and_at_start() {
    for (level, why) in [
        ("inf", "\"inf\" is not a level"),
        ("info,openraft=wran", "\"wran\" is not a level"),
        (" , ", "names no level"),
    ] {
        let (_c, f) = with_edit(|t| {
            t.replace(
                "[storage]",
                &format!("[log]\nlevel = \"{level}\"\n\n[storage]"),
            )
        });
        for cmd in ["check-config", "run"] {
            let out = palisade(&[cmd], &f);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(out.status.code(), Some(1), "{cmd} {level:?}: {stderr}");
            let line = stderr.trim();
            assert_eq!(line.lines().count(), 1, "one line: {stderr}");
            assert!(
                line.contains(&format!("{}: log.level: ", f.display())) && line.contains(why),
                "{cmd} {level:?}: {line}"
            );
        }
    }
    // Real filters still pass.
    for level in [
        "warn",
        "info,openraft=warn",
        "palisade::controller=debug,info",
        "off",
    ] {
        let (_c, f) = with_edit(|t| {
            t.replace(
                "[storage]",
                &format!("[log]\nlevel = \"{level}\"\n\n[storage]"),
            )
        });
        let out = palisade(&["check-config"], &f);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{level:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
