//! `[retention]` (issue 14, bounded state): the leader prunes the journal
//! by its policy, and every witness drops the same notes.

use palisade_testkit::cluster::{Cluster, SETTLE};
use palisade_testkit::{step, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_prunes_the_journal_to_its_policy_on_every_witness() {
    let mut c = Cluster::with_config("[retention]\njournal_max = 5\n");
    for n in &mut c.nodes {
        n.start();
    }
    c.wait_for_agreed_leader("a leader", SETTLE).await;

    step("twelve notes, more than journal_max = 5");
    for i in 1..=12 {
        c.annotate(1 + i % 3, &format!("note {i}"));
    }
    let newest: Vec<String> = (8..=12).map(|i| format!("note {i}")).collect();
    for id in 1..=3 {
        let kept = wait_for(
            &format!("witness {id}'s journal pruned to the newest five"),
            SETTLE,
            async || c.journal(id).filter(|j| j.len() == 5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(kept, newest, "witness {id}");
    }
    let leader_log: String = c.nodes.iter().map(|n| n.log_text()).collect();
    assert!(
        leader_log.contains("retention: dropped the records the policy no longer keeps"),
        "the prune is logged"
    );
    step("a note after the prune is kept");
    c.annotate(1, "note 13");
    let j = wait_for("note 13 in the journal", SETTLE, async || {
        c.journal(2)
            .filter(|j| j.last().map(String::as_str) == Some("note 13"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(j.len() <= 6, "{j:?}");
}
