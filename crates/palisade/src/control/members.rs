//! `Members` and `ChangeMembers`: who the witnesses are, and the
//! operator's changes to it (`palisadectl member`). The rules are
//! `palisade_core::membership`; here they are carried out with openraft's
//! learner and joint-consensus changes, each step bounded in time.

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_core::membership::{plan, Change, Plan};
use palisade_core::{Command, NodeId, Witness};
use tonic::{Response, Status};

use super::ControlService;

/// How long the new witness has to answer before anything is changed.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new learner has to catch up with the log (a snapshot and the
/// entries after it: small, see `[retention]`).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the joint change may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a change takes on the leader (a follower forwarding one
/// waits this long, plus a margin).
pub(super) const LONGEST_CHANGE: Duration = Duration::from_secs(3 + 10 + 30 + 10 + 5);

impl ControlService {
    /// The membership as this witness's log has it.
    pub(super) fn members_reply(&self, detail: String) -> pb::MembersReply {
        let view = self.members.view();
        pb::MembersReply {
            members: view
                .nodes
                .iter()
                .map(|(id, w)| member_pb(*id, w, view.topology.witnesses.contains_key(id)))
                .collect(),
            node_id: self.own_id(),
            leader_id: self.raft.metrics().borrow().current_leader,
            log_index: view.log_id.map_or(0, |l| l.index),
            detail,
        }
    }

    pub(super) async fn change_members_here(
        &self,
        body: pb::ChangeMembersRequest,
    ) -> Result<Response<pb::MembersReply>, Status> {
        self.finish_joint_change().await?;
        let change = change_from_pb(&body, &self.members.topology().witnesses)?;
        let view = self.members.view();
        let learners: BTreeMap<NodeId, Witness> = view
            .nodes
            .iter()
            .filter(|(id, _)| !view.topology.witnesses.contains_key(id))
            .map(|(id, w)| (*id, w.clone()))
            .collect();
        let state = self.state.cluster_state();
        let decided = plan(&change, &view.topology.witnesses, &learners, &state).map_err(|r| {
            if r.field.is_empty() {
                Status::failed_precondition(r.to_string())
            } else {
                Status::invalid_argument(r.to_string())
            }
        })?;
        let (learner, voters, detail) = match decided {
            Plan::InForce { detail } => {
                tracing::info!(%detail, "membership change already in force");
                return Ok(Response::new(
                    self.members_reply(format!("nothing to do: {detail}")),
                ));
            }
            Plan::Change {
                learner,
                voters,
                detail,
            } => (learner, voters, detail),
        };
        tracing::info!(author = %body.author, %detail, "membership change: starting");
        if let Some((id, w)) = &learner {
            self.reach(*id, w).await?;
            let added = tokio::time::timeout(
                COMMIT_TIMEOUT,
                self.raft.add_learner(*id, w.clone(), false),
            )
            .await
            .map_err(|_| {
                Status::unknown(format!(
                    "adding witness {id} as a learner did not commit within {COMMIT_TIMEOUT:?}: it may still; check `palisadectl member list`"
                ))
            })?
            .map_err(|e| raft_refusal(&e.to_string()))?;
            self.caught_up(*id, added.log_id.index).await?;
        }
        tokio::time::timeout(
            COMMIT_TIMEOUT,
            self.raft.change_membership(voters.clone(), false),
        )
        .await
        .map_err(|_| {
            Status::unknown(format!(
                "the new voters {voters:?} did not commit within {COMMIT_TIMEOUT:?}: check `palisadectl member list`"
            ))
        })?
        .map_err(|e| raft_refusal(&e.to_string()))?;
        tracing::info!(author = %body.author, %detail, "membership change: committed");
        let note = Command::Annotate {
            at_unix_ms: palisade_raft::unix_ms_now(),
            author: if body.author.is_empty() {
                "palisade".into()
            } else {
                body.author.clone()
            },
            text: format!("membership: {detail}"),
        };
        if let Err(e) = self.raft.client_write(note).await {
            tracing::warn!(error = %e, "the membership change is committed, but its journal note is not");
        }
        // The follow task updates the view from the metrics; read them now
        // so that the reply shows the change.
        self.members.update(&self.raft.metrics().borrow());
        Ok(Response::new(self.members_reply(detail)))
    }

    /// A change left joint (its leader stopped between openraft's two
    /// steps) is finished first, to the voters it was going to: otherwise
    /// the retry of that very change would find the new witness a voter
    /// already and the old one still one, and be refused.
    async fn finish_joint_change(&self) -> Result<(), Status> {
        let view = self.members.view();
        let [_, target] = view.voters.sets.as_slice() else {
            return Ok(());
        };
        tracing::warn!(
            voters = ?target,
            "a membership change was left joint (its leader stopped mid-way): finishing it"
        );
        tokio::time::timeout(
            COMMIT_TIMEOUT,
            self.raft.change_membership(target.clone(), false),
        )
        .await
        .map_err(|_| {
            Status::unknown(format!(
                "finishing the joint membership change to {target:?} did not commit within {COMMIT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| raft_refusal(&e.to_string()))?;
        self.members.update(&self.raft.metrics().borrow());
        Ok(())
    }

    /// The new witness answers on its peer port, as itself: a typo in an
    /// address fails here, before the log changes.
    async fn reach(&self, id: NodeId, w: &Witness) -> Result<(), Status> {
        let unreachable = |why: String| {
            Status::failed_precondition(format!(
                "new witness {id} at {} cannot be reached ({why}); start it first, with raft.join = true in its config",
                w.raft_addr
            ))
        };
        let channel = self
            .transport
            .channel(id, &w.raft_addr, self.connect_timeout)
            .map_err(|e| Status::invalid_argument(format!("new_member.raft_addr: {e}")))?;
        let status = tokio::time::timeout(
            REACH_TIMEOUT,
            RaftPeerClient::new(channel).node_status(pb::NodeStatusRequest {}),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {REACH_TIMEOUT:?}")))?
        .map_err(|s| unreachable(s.message().to_string()))?
        .into_inner();
        if status.id != id || status.site != w.site {
            return Err(Status::invalid_argument(format!(
                "new_member: the witness at {} is witness {} of site {}, not {id} of site {}",
                w.raft_addr, status.id, status.site, w.site
            )));
        }
        Ok(())
    }

    /// Waits until the leader has replicated to learner `id` up to `index`.
    async fn caught_up(&self, id: NodeId, index: u64) -> Result<(), Status> {
        let mut metrics = self.raft.metrics();
        let waited = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
            loop {
                let matched = metrics
                    .borrow_and_update()
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                if matched.is_some_and(|m| m >= index) {
                    return true;
                }
                if metrics.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(Status::unknown(format!(
                "raft stopped while witness {id} caught up as a learner; check `palisadectl member list`"
            ))),
            Err(_) => Err(Status::failed_precondition(format!(
                "witness {id} was added as a learner but did not catch up within {CATCH_UP_TIMEOUT:?}; \
                 it stays a learner (no vote): retry the same command, or remove it with `palisadectl member remove {id}`"
            ))),
        }
    }
}

/// An openraft refusal in the API's terms: another change in progress, or
/// leadership lost.
fn raft_refusal(e: &str) -> Status {
    if e.contains("ForwardToLeader") || e.contains("forward") {
        Status::unavailable(format!("this witness is no longer the leader: {e}"))
    } else {
        Status::failed_precondition(format!("openraft refused the change: {e}"))
    }
}

fn member_pb(id: NodeId, w: &Witness, voter: bool) -> pb::Member {
    pb::Member {
        id,
        site: w.site.clone(),
        raft_addr: w.raft_addr.clone(),
        control_addr: w.control_addr.clone(),
        voter,
    }
}

/// The request as a change; fields checked for presence here, their values
/// by `palisade_core::membership::plan`.
fn change_from_pb(
    body: &pb::ChangeMembersRequest,
    voters: &BTreeMap<NodeId, Witness>,
) -> Result<Change, Status> {
    use pb::change_members_request::Action;
    let new = |site_default: Option<&str>| -> Result<(NodeId, Witness), Status> {
        let m = body
            .new_member
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("new_member: missing"))?;
        let site = match (m.site.is_empty(), site_default) {
            (true, Some(s)) => s.to_owned(),
            _ => m.site.clone(),
        };
        Ok((
            m.id,
            Witness {
                site,
                raft_addr: m.raft_addr.clone(),
                control_addr: m.control_addr.clone(),
            },
        ))
    };
    if body.author.len() > 128 {
        return Err(Status::invalid_argument("author: longer than 128 bytes"));
    }
    match Action::try_from(body.action) {
        Ok(Action::Add) => {
            let (id, witness) = new(None)?;
            Ok(Change::Add { id, witness })
        }
        Ok(Action::Remove) => Ok(Change::Remove { id: body.old_id }),
        Ok(Action::Replace) => {
            // An empty site is the old witness's; on a retry after the
            // change, the new one's.
            let new_id = body.new_member.as_ref().map_or(0, |m| m.id);
            let old_site = voters
                .get(&body.old_id)
                .or_else(|| voters.get(&new_id))
                .map(|w| w.site.as_str());
            let (id, witness) = new(old_site)?;
            Ok(Change::Replace {
                old: body.old_id,
                id,
                witness,
            })
        }
        Ok(Action::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "action: {} is not add (1), remove (2) or replace (3)",
            body.action
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::change_members_request::Action;

    fn refusal(body: pb::ChangeMembersRequest) -> Status {
        change_from_pb(&body, &BTreeMap::new()).expect_err("refused")
    }

    #[test]
    fn malformed_requests_are_refused_naming_the_field() {
        let s = refusal(pb::ChangeMembersRequest {
            action: 9,
            ..Default::default()
        });
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("action: 9"), "{}", s.message());
        let s = refusal(pb::ChangeMembersRequest {
            action: Action::Add as i32,
            ..Default::default()
        });
        assert_eq!(s.message(), "new_member: missing");
        let s = refusal(pb::ChangeMembersRequest {
            action: Action::Remove as i32,
            old_id: 3,
            author: "x".repeat(129),
            ..Default::default()
        });
        assert!(s.message().starts_with("author:"), "{}", s.message());
    }

    #[test]
    fn a_replacement_without_a_site_takes_the_old_witnesss() {
        let voters = BTreeMap::from([(
            3,
            Witness {
                site: "c".into(),
                raft_addr: "127.0.0.1:1".into(),
                control_addr: "127.0.0.1:2".into(),
            },
        )]);
        let change = change_from_pb(
            &pb::ChangeMembersRequest {
                action: Action::Replace as i32,
                old_id: 3,
                new_member: Some(pb::Member {
                    id: 4,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &voters,
        )
        .expect("a change");
        assert!(
            matches!(&change, Change::Replace { old: 3, id: 4, witness } if witness.site == "c"),
            "{change:?}"
        );
    }
}
