//! Issuing certificates and loading them: file modes, names, mismatches.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{site, Pki};
use palisade_tls::{
    cluster_of_ca, identity_of, init_ca, issue_operator, issue_witness, CertStore, ExpectOwn,
    Identity, Role, TlsError, TlsPaths, Validity,
};
use proptest::prelude::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn der(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

fn expect_witness(node: u64) -> ExpectOwn {
    ExpectOwn::Witness {
        cluster: "prod".into(),
        node,
        site: site(node),
    }
}

#[test]
fn issued_files_have_safe_modes_and_the_promised_sans() {
    let pki = Pki::new();
    assert_eq!(mode(&pki.path("ca.key")), 0o600);
    assert_eq!(mode(&pki.path("witness-1.key")), 0o600);
    assert_eq!(mode(&pki.path("bob.key")), 0o600);
    assert_eq!(mode(&pki.path("witness-1.crt")), 0o644);
    assert_eq!(cluster_of_ca(&der(&pki.path("ca.crt"))).unwrap(), "prod");

    let w = der(&pki.path("witness-3.crt"));
    assert_eq!(
        identity_of(&w).unwrap(),
        Identity::Witness {
            cluster: "prod".into(),
            node: 3,
            site: "c".into()
        }
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&w).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let dns: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(dns, vec!["witness-3.prod.palisade".to_owned()]);

    let o = der(&pki.path("bob.crt"));
    let (_, cert) = x509_parser::parse_x509_certificate(&o).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "bob");
    assert_eq!(
        identity_of(&o).unwrap(),
        Identity::Operator {
            cluster: "prod".into(),
            name: "bob".into(),
            role: Role::Operator
        }
    );
    // The CA carries no identity.
    let err = identity_of(&der(&pki.path("ca.crt")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no palisade:// URI SAN"), "{err}");
}

#[test]
fn init_ca_refuses_to_overwrite_unless_forced() {
    let pki = Pki::new();
    let before = std::fs::read(pki.path("ca.crt")).unwrap();
    let err = init_ca(&pki.dir, "prod", Validity::days(10), false).unwrap_err();
    assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert_eq!(std::fs::read(pki.path("ca.crt")).unwrap(), before);

    init_ca(&pki.dir, "prod", Validity::days(10), true).expect("forced");
    assert_ne!(std::fs::read(pki.path("ca.crt")).unwrap(), before);
    assert_eq!(mode(&pki.path("ca.key")), 0o600);
    // Old leaves no longer chain to the new CA.
    let err = CertStore::load(TlsPaths::witness(&pki.dir, 1), expect_witness(1)).unwrap_err();
    assert!(matches!(err, TlsError::Untrusted { .. }), "{err}");
}

#[test]
fn bad_names_are_refused_naming_input_and_reason() {
    let pki = Pki::new();
    let cases: Vec<(Result<_, TlsError>, &str, &str)> = vec![
        (
            issue_witness(&pki.dir, &pki.dir, 0, "a", Validity::days(1)),
            "node id",
            "greater than 0",
        ),
        (
            issue_witness(&pki.dir, &pki.dir, 4, "", Validity::days(1)),
            "site",
            "empty",
        ),
        (
            issue_witness(&pki.dir, &pki.dir, 4, "eu west", Validity::days(1)),
            "\"eu west\"",
            "whitespace",
        ),
        (
            issue_operator(&pki.dir, &pki.dir, "a/b", Role::Viewer, Validity::days(1)),
            "\"a/b\"",
            "'/'",
        ),
        (
            issue_operator(&pki.dir, &pki.dir, "who?", Role::Viewer, Validity::days(1)),
            "operator name",
            "'?'",
        ),
        (
            issue_operator(&pki.dir, &pki.dir, "ca", Role::Viewer, Validity::days(1)),
            "\"ca\"",
            "reserved",
        ),
        (
            init_ca(&pki.dir.join("x"), "Prod Cluster", Validity::days(1), false),
            "cluster",
            "whitespace",
        ),
    ];
    for (result, input, reason) in cases {
        let err = result.expect_err("must be refused").to_string();
        assert!(
            err.contains(input) && err.contains(reason),
            "{err}: want {input} / {reason}"
        );
    }
}

#[test]
fn world_readable_key_file_is_refused_with_its_mode() {
    let pki = Pki::new();
    let key = pki.path("witness-1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertStore::load(TlsPaths::witness(&pki.dir, 1), expect_witness(1)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TlsError::InsecureKeyFile { mode: 0o644, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("0644") && msg.contains(&key.display().to_string()),
        "{msg}"
    );

    // Group-readable is refused too, and so is a reload onto such a file.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = CertStore::load(TlsPaths::witness(&pki.dir, 1), expect_witness(1)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let msg = store.reload().unwrap_err().to_string();
    assert!(msg.contains("0640"), "{msg}");

    // Issuing refuses a CA key others can read.
    std::fs::set_permissions(pki.path("ca.key"), std::fs::Permissions::from_mode(0o604)).unwrap();
    let msg = issue_witness(&pki.dir, &pki.dir, 1, "a", Validity::days(1))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ca.key") && msg.contains("0604"), "{msg}");
}

#[test]
fn load_checks_key_match_and_expected_identity() {
    let pki = Pki::new();
    let mut paths = TlsPaths::witness(&pki.dir, 1);
    paths.key = pki.path("witness-2.key");
    let err = CertStore::load(paths, expect_witness(1)).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

    let err = CertStore::load(TlsPaths::witness(&pki.dir, 1), expect_witness(2)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TlsError::UnexpectedIdentity { .. }), "{msg}");
    assert!(
        msg.contains("witness 2") && msg.contains("witness/1"),
        "{msg}"
    );

    // Right node, wrong site.
    let err = CertStore::load(
        TlsPaths::witness(&pki.dir, 1),
        ExpectOwn::Witness {
            cluster: "prod".into(),
            node: 1,
            site: "z".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::UnexpectedIdentity { .. }), "{err}");

    // An operator cert where a witness is expected, and vice versa.
    let err = CertStore::load(TlsPaths::operator(&pki.dir, "bob"), expect_witness(1)).unwrap_err();
    assert!(matches!(err, TlsError::UnexpectedIdentity { .. }), "{err}");
    let err = CertStore::load(
        TlsPaths::witness(&pki.dir, 1),
        ExpectOwn::Operator { cluster: None },
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::UnexpectedIdentity { .. }), "{err}");

    let err = CertStore::load(
        TlsPaths::operator(&pki.dir, "bob"),
        ExpectOwn::Operator {
            cluster: Some("staging".into()),
        },
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::UnexpectedIdentity { .. }), "{err}");

    let err = CertStore::load(
        TlsPaths::operator(&pki.dir, "nobody"),
        ExpectOwn::Operator { cluster: None },
    )
    .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("nobody.crt"),
        "{err}"
    );
}

#[test]
fn store_reports_expiry() {
    let pki = Pki::new();
    let store = pki.witness(1);
    let left = store.days_left();
    assert!((29..=30).contains(&left), "days_left {left}");
    let later = store.not_after() + std::time::Duration::from_secs(86_400);
    assert_eq!(store.days_left_at(later), -1);
    assert_eq!(store.identity().control_role(), Role::Operator);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn identity_of_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = identity_of(&bytes);
    }

    #[test]
    fn identity_of_never_panics_on_corrupted_certificates(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut cert = CERT.with(|c| c.clone());
        for (at, byte) in flips {
            let i = at.index(cert.len());
            cert[i] ^= byte;
        }
        let _ = identity_of(&cert);
        let _ = identity_of(&cert[..cut.index(cert.len())]);
    }
}

thread_local! {
    static CERT: Vec<u8> = {
        let pki = Pki::new();
        der(&pki.path("witness-1.crt"))
    };
}
