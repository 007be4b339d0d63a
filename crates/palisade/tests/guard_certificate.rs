//! A rotated witness certificate reaches the running lease guard (issue 12
//! leftover): the guard renews the lease as the witness, so a certificate
//! that it loaded once and never again would stop its renewals when the
//! old one expires, and freeze a healthy primary.

use palisade_testkit::cluster::{start_cluster, status, FAST, SETTLE, SLOTS};
use palisade_testkit::pg::PgPair;
use palisade_testkit::{step, wait_for};
use palisade_tls::{CertStore, ExpectOwn, TlsPaths, Validity};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_witness_certificate_reaches_its_running_lease_guard() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let c = start_cluster(&pair, FAST).await;
    let pki = c.pki.clone().expect("a TLS cluster");
    let postmaster = pair.primary.postmaster_pid().expect("the primary runs");
    let guard_log = c.nodes[0].data_dir.join("lease-guard.order.log");

    step("re-issue witness 1's certificate in place");
    palisade_tls::issue_witness(&pki.dir, &pki.dir, 1, "a", Validity::days(60)).expect("re-issue");
    let serial = CertStore::load(
        TlsPaths::witness(&pki.dir, 1),
        ExpectOwn::Witness {
            cluster: "test".into(),
            node: 1,
            site: "a".into(),
        },
    )
    .expect("the new certificate loads")
    .current()
    .serial_hex();

    step("the guard reloads it by itself, without a restart");
    wait_for(
        "the guard's reload of the new certificate",
        SETTLE,
        async || {
            let log = std::fs::read_to_string(&guard_log).unwrap_or_default();
            log.lines()
                .any(|l| {
                    l.contains("lease guard: reloaded the witness's certificate")
                        && l.contains(&serial)
                })
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\n{}",
            std::fs::read_to_string(&guard_log).unwrap_or_default()
        )
    });

    step("SIGHUP to the guard (a reload sent to the unit's whole group) does not end it");
    let lock = c.nodes[0].data_dir.join("lease-guard.order.lock");
    let guard: i32 = std::fs::read_to_string(&lock)
        .expect("the guard's lock file")
        .trim()
        .parse()
        .expect("the guard's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_for(
        "the guard's log of the ignored SIGHUP",
        SETTLE,
        async || {
            std::fs::read_to_string(&guard_log)
                .unwrap_or_default()
                .contains("SIGHUP ignored")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        palisade_testkit::procs::alive(guard),
        "the guard died of SIGHUP"
    );

    // Nothing happened to the database meanwhile.
    assert_eq!(
        pair.primary.postmaster_pid(),
        Some(postmaster),
        "the primary was restarted"
    );
    let s = status(&c, 1).await.expect("status of witness 1");
    let a = s.nodes.iter().find(|n| n.site == "a").expect("witness a");
    assert!(
        a.lease_remaining_ms.is_some() && a.serving_under_lease,
        "the lease held through the reload: {a:?}"
    );
}
