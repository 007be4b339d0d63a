//! `member list|add|remove|replace`: who the witnesses are, as the
//! answering witness's Raft log has them, and the operator's changes to
//! it (`Members`, `ChangeMembers`).
//!
//! The rules are the server's (`palisade_core::membership`): a witness is
//! added at a site that has none, learner first and voter once it has
//! caught up; a removal keeps at least three voters and never takes a
//! database site's witness; a replacement (a new id) takes over the old
//! witness's site in one joint change. palisadectl checks the flags'
//! form before anything is sent (exit 2, naming the flag), asks for
//! confirmation like an operation, says what the leader is about to do,
//! and prints the server's `detail` and the membership after.
//!
//! A change carries no request id: a change already in force is answered
//! "nothing to do: ..." (exit 0), so running the same command again after
//! an unknown outcome (exit 9) is safe.

use std::net::SocketAddr;
use std::time::Duration;

use palisade_api::v1::change_members_request::Action;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{ChangeMembersRequest, Member, MembersReply, MembersRequest};
use serde::Serialize;
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::json;
use crate::output::Out;
use crate::prompt;
use crate::table::{cell, render_table, text_or_none};

/// How long the leader gives a new learner to catch up before it gives
/// up (the server's `CATCH_UP_TIMEOUT`), for the progress line.
pub const CATCH_UP: &str = "30 s";

/// The default `--wait-timeout` of a change: the server's own bounds added
/// up (reaching the new witness 3 s, committing it as a learner 10 s, its
/// catch-up 30 s, the joint change 10 s), with a margin.
pub const DEFAULT_WAIT: &str = "60s";

/// How the server's `detail` starts for a change already in force.
const NOTHING_TO_DO: &str = "nothing to do: ";

/// `clap` value parser for a witness id (`--id`, `ID`, `OLD_ID`): a
/// positive integer.
pub fn id_arg(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(0) => Err("must be a positive integer (a witness id); 0 is no witness".to_owned()),
        Ok(id) => Ok(id),
        Err(_) => Err("must be a positive integer (a witness id)".to_owned()),
    }
}

/// `clap` value parser for `--raft-addr` and `--control-addr`: an
/// `IP:PORT` socket address (the witnesses' own form: no host names), port
/// not 0.
pub fn addr_arg(raw: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw.trim().parse().map_err(|_| {
        "must be IP:PORT, e.g. 127.0.0.1:7304 or [::1]:7304 (an IP address, not a host name)"
            .to_owned()
    })?;
    if addr.port() == 0 {
        return Err("port 0 is not allowed".to_owned());
    }
    Ok(addr)
}

/// `clap` value parser for `--site`: letters, digits, `-` and `_`, as the
/// server requires.
pub fn site_arg(raw: &str) -> Result<String, String> {
    let site = raw.trim();
    if site.is_empty()
        || !site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("must be non-empty letters, digits, '-' and '_'".to_owned());
    }
    Ok(site.to_owned())
}

/// The witness that comes, as the operator gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWitness {
    /// `--id`: a new id.
    pub id: u64,
    /// `--site`; `None` for a replacement: the old witness's site.
    pub site: Option<String>,
    /// `--raft-addr`.
    pub raft_addr: SocketAddr,
    /// `--control-addr`.
    pub control_addr: SocketAddr,
}

/// A membership change the operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A witness at a site that has none (its `site` is set).
    Add(NewWitness),
    /// Witness `id` goes, and its site with it.
    Remove {
        /// The witness that goes.
        id: u64,
    },
    /// `new` takes over the site of witness `old`.
    Replace {
        /// The witness that goes.
        old: u64,
        /// The one that comes.
        new: NewWitness,
    },
}

impl Change {
    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Add(_) => "member add",
            Change::Remove { .. } => "member remove",
            Change::Replace { .. } => "member replace",
        }
    }

    /// `add`, `remove` or `replace`, for JSON.
    fn action(&self) -> &'static str {
        match self {
            Change::Add(_) => "add",
            Change::Remove { .. } => "remove",
            Change::Replace { .. } => "replace",
        }
    }

    /// What `clap` cannot check flag by flag: the two addresses differ,
    /// and a replacement is a new id. A usage error naming the flags.
    pub fn check(&self) -> Result<(), Failure> {
        let new = match self {
            Change::Add(new) => new,
            Change::Remove { .. } => return Ok(()),
            Change::Replace { old, new } => {
                if new.id == *old {
                    return Err(Failure::Usage(format!(
                        "--id {} is OLD_ID: a replacement is a new witness, with a new id",
                        new.id
                    )));
                }
                new
            }
        };
        if new.raft_addr == new.control_addr {
            return Err(Failure::Usage(format!(
                "--raft-addr and --control-addr are both {}: a witness serves them on two ports",
                new.raft_addr
            )));
        }
        Ok(())
    }

    /// The request, sent by `author`.
    pub fn request(&self, author: &str) -> ChangeMembersRequest {
        let member = |w: &NewWitness| Member {
            id: w.id,
            site: w.site.clone().unwrap_or_default(),
            raft_addr: w.raft_addr.to_string(),
            control_addr: w.control_addr.to_string(),
            voter: false,
        };
        let (action, old_id, new_member) = match self {
            Change::Add(new) => (Action::Add, 0, Some(member(new))),
            Change::Remove { id } => (Action::Remove, *id, None),
            Change::Replace { old, new } => (Action::Replace, *old, Some(member(new))),
        };
        ChangeMembersRequest {
            action: action as i32,
            old_id,
            new_member,
            author: author.to_owned(),
        }
    }

    /// What the change will do, for the confirmation prompt: a sentence
    /// (after "about to") and, for a new witness, what must be true of it.
    /// `now` is the membership, when it could be had: it names the old
    /// witness's site.
    pub fn describe(&self, now: Option<&MembersReply>) -> String {
        let join = "The new witness must be running with raft.join = true in its config.\n";
        match self {
            Change::Add(new) => format!(
                "add witness {}{} at raft {} / control {}: a learner first, a voter once it has \
                 caught up.\n{join}",
                new.id,
                site_of_new(new, None),
                new.raft_addr,
                new.control_addr
            ),
            Change::Remove { id } => format!(
                "remove witness {id}{}: it no longer votes, and its site has no witness.\n",
                site_of(now, *id)
            ),
            Change::Replace { old, new } => format!(
                "replace witness {old}{} by witness {}{} at raft {} / control {}, in one joint \
                 change.\n{join}",
                site_of(now, *old),
                new.id,
                site_of_new(new, None),
                new.raft_addr,
                new.control_addr
            ),
        }
    }

    /// The progress line printed before the request is sent: what the
    /// leader is asked to do, and how long it may take.
    pub fn progress(&self, now: Option<&MembersReply>) -> String {
        match self {
            Change::Add(new) => format!(
                "asking the leader to add witness {}{} as a learner, wait for it to catch up (up \
                 to {CATCH_UP}), then make it a voter…\n",
                new.id,
                site_of_new(new, None)
            ),
            Change::Remove { id } => format!(
                "asking the leader to remove witness {id}{}…\n",
                site_of(now, *id)
            ),
            Change::Replace { old, new } => format!(
                "asking the leader to add witness {}{} as a learner, wait for it to catch up (up \
                 to {CATCH_UP}), then replace witness {old} by it in one joint change…\n",
                new.id,
                site_of_new(new, old_site(now, *old))
            ),
        }
    }
}

/// The site of witness `id` in `now`, if known.
fn old_site(now: Option<&MembersReply>, id: u64) -> Option<&str> {
    now?.members
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.site.as_str())
}

/// ` (site S)` for witness `id` when `now` knows it, else nothing.
fn site_of(now: Option<&MembersReply>, id: u64) -> String {
    old_site(now, id)
        .map(|s| format!(" (site {})", cell(s)))
        .unwrap_or_default()
}

/// ` (site S)` for a new witness: its `--site`, else `fallback` (the old
/// witness's), else nothing.
fn site_of_new(new: &NewWitness, fallback: Option<&str>) -> String {
    new.site
        .as_deref()
        .or(fallback)
        .map(|s| format!(" (site {})", cell(s)))
        .unwrap_or_default()
}

/// `member list`.
pub async fn list(target: &Target, out: &Out) -> Result<(), Failure> {
    let mut client = target.connect().await?;
    let reply = client
        .members(MembersRequest {})
        .await
        .map_err(|s| target.read_failure("member list", &s))?
        .into_inner();
    out.emit(&if out.json() {
        json::to_json(&MembersJson::from(&reply))
    } else {
        members_text(&reply)
    })
}

/// What a change command was given besides the change itself.
#[derive(Debug, Clone)]
pub struct ChangeOptions<'a> {
    /// Who asks (`--who`, or the certificate's name over TLS).
    pub author: &'a str,
    /// `--yes`: do not ask.
    pub yes: bool,
    /// `--wait-timeout`: how long the leader's answer may take.
    pub wait: Duration,
    /// The command line that runs the change again, for the message when
    /// its outcome is unknown.
    pub retry: &'a str,
}

/// `member add|remove|replace`: check, confirm, send, print the detail and
/// the membership after.
pub async fn change(
    target: &Target,
    out: &Out,
    change: &Change,
    opts: &ChangeOptions<'_>,
) -> Result<(), Failure> {
    change.check()?;
    // The change waits on the leader (a learner catching up): its request
    // gets `--wait-timeout`, not the `--timeout` of a read.
    let target = target.with_request_timeout(opts.wait);
    if !opts.yes {
        prompt::need_terminal(change.name())?;
    }
    let mut client = target.connect().await?;
    let mut now = None;
    if !opts.yes {
        let (picture, reply) = current(&target, &mut client).await;
        now = reply;
        prompt::ask(
            change.name(),
            &format!("{picture}about to {}", change.describe(now.as_ref())),
        )
        .await?;
    }
    out.progress(&change.progress(now.as_ref()))?;
    let reply = client
        .change_members(change.request(opts.author))
        .await
        .map_err(|s| target.change_failure(change.name(), &s, opts.retry))?
        .into_inner();
    out.emit(&if out.json() {
        json::to_json(&MemberChangeJson::new(change, &reply))
    } else {
        change_text(&reply)
    })
}

/// The membership for the confirmation prompt, on one line, and the reply
/// when there was one; a failure to ask is said, not fatal.
async fn current(
    target: &Target,
    client: &mut ControlClient<Channel>,
) -> (String, Option<MembersReply>) {
    // The channel's requests may wait long (`--wait-timeout`); a read does
    // not need to.
    let asked = tokio::time::timeout(target.timeout(), client.members(MembersRequest {})).await;
    let why = match asked {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            return (members_line(target.shown(), &r), Some(r));
        }
        Ok(Err(s)) => target.read_failure("member list", &s).message().to_owned(),
        Err(_) => format!("timed out after {} ms", target.timeout().as_millis()),
    };
    (
        format!(
            "(could not ask {} for the witnesses: {why})\n",
            target.shown()
        ),
        None,
    )
}

/// `witnesses (via URL): 1 a, 2 b, 3 c; leader 1`, learners marked.
fn members_line(shown: &str, r: &MembersReply) -> String {
    let each: Vec<String> = r
        .members
        .iter()
        .map(|m| {
            format!(
                "{} {}{}",
                m.id,
                text_or_none(&m.site),
                if m.voter { "" } else { " (learner)" }
            )
        })
        .collect();
    format!(
        "witnesses (via {shown}): {}; {}\n",
        if each.is_empty() {
            "none".to_owned()
        } else {
            each.join(", ")
        },
        leader_text(r.leader_id)
    )
}

fn leader_text(leader: Option<u64>) -> String {
    match leader {
        Some(id) => format!("leader {id}"),
        None => "leader: unknown".to_owned(),
    }
}

/// `voter` or `learner`.
fn role(m: &Member) -> &'static str {
    if m.voter {
        "voter"
    } else {
        "learner"
    }
}

/// `member list` for people: who answered, the leader and the log index
/// of the membership, then one row per witness; a note when a learner is
/// among them.
pub fn members_text(r: &MembersReply) -> String {
    let at = if r.log_index == 0 {
        "membership as configured (not in the log yet)".to_owned()
    } else {
        format!("membership at log index {}", r.log_index)
    };
    let mut out = format!(
        "answered by witness {}, {} — {at}\n\n",
        r.node_id,
        leader_text(r.leader_id)
    );
    let rows: Vec<Vec<String>> = r
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                text_or_none(&m.site),
                role(m).to_owned(),
                text_or_none(&m.raft_addr),
                text_or_none(&m.control_addr),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &["ID", "SITE", "ROLE", "RAFT", "CONTROL"],
        &rows,
    ));
    let learners: Vec<String> = r
        .members
        .iter()
        .filter(|m| !m.voter)
        .map(|m| m.id.to_string())
        .collect();
    if !learners.is_empty() {
        out.push_str(&format!(
            "\nlearner {} has no vote: it is catching up, or an add or replace did not finish \
             (run it again, or `palisadectl member remove ID`)\n",
            learners.join(", ")
        ));
    }
    out
}

/// A change's result for people: the server's `detail`, then the
/// membership after it.
pub fn change_text(r: &MembersReply) -> String {
    let detail = if r.detail.is_empty() {
        "done".to_owned()
    } else {
        cell(&r.detail)
    };
    format!("{detail}\n{}", members_text(r))
}

/// `member list --output json`: the membership as the answering witness's
/// log has it.
#[derive(Debug, Serialize)]
pub struct MembersJson {
    /// The witness that answered.
    pub node_id: u64,
    /// The leader it knows; `null` when it knows none.
    pub leader_id: Option<u64>,
    /// The log index of the membership entry; 0: the configured list, the
    /// log has none yet.
    pub log_index: u64,
    /// Every witness, voters and learners, by id.
    pub members: Vec<MemberJson>,
}

/// One witness in [`MembersJson::members`].
#[derive(Debug, Serialize)]
pub struct MemberJson {
    /// Its node id.
    pub id: u64,
    /// Its site.
    pub site: String,
    /// `voter`, or `learner` (no vote yet: catching up, or a change that
    /// did not finish).
    pub role: String,
    /// Its Raft peer address, `IP:PORT`.
    pub raft_addr: String,
    /// Its control address, `IP:PORT`.
    pub control_addr: String,
}

impl From<&Member> for MemberJson {
    fn from(m: &Member) -> Self {
        Self {
            id: m.id,
            site: m.site.clone(),
            role: role(m).to_owned(),
            raft_addr: m.raft_addr.clone(),
            control_addr: m.control_addr.clone(),
        }
    }
}

impl From<&MembersReply> for MembersJson {
    fn from(r: &MembersReply) -> Self {
        Self {
            node_id: r.node_id,
            leader_id: r.leader_id,
            log_index: r.log_index,
            members: r.members.iter().map(MemberJson::from).collect(),
        }
    }
}

/// `member add|remove|replace --output json`: what was asked, what the
/// leader did, and the membership after.
#[derive(Debug, Serialize)]
pub struct MemberChangeJson {
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// The witness that goes; `null` for `add`.
    pub old_id: Option<u64>,
    /// The witness that comes; `null` for `remove`.
    pub new_id: Option<u64>,
    /// `false` when the change was already in force (`detail` starts with
    /// `nothing to do: `): nothing changed now.
    pub changed: bool,
    /// What was done, in words, as the server said it.
    pub detail: String,
    /// The witness that answered.
    pub node_id: u64,
    /// The leader it knows; `null` when it knows none.
    pub leader_id: Option<u64>,
    /// The log index of the membership entry after the change.
    pub log_index: u64,
    /// Every witness after the change, as in [`MembersJson::members`].
    pub members: Vec<MemberJson>,
}

impl MemberChangeJson {
    /// The result of `change`, answered with `r`.
    pub fn new(change: &Change, r: &MembersReply) -> Self {
        let (old_id, new_id) = match change {
            Change::Add(new) => (None, Some(new.id)),
            Change::Remove { id } => (Some(*id), None),
            Change::Replace { old, new } => (Some(*old), Some(new.id)),
        };
        Self {
            action: change.action().to_owned(),
            old_id,
            new_id,
            changed: !r.detail.starts_with(NOTHING_TO_DO),
            detail: r.detail.clone(),
            node_id: r.node_id,
            leader_id: r.leader_id,
            log_index: r.log_index,
            members: r.members.iter().map(MemberJson::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, site: &str, voter: bool) -> Member {
        Member {
            id,
            site: site.to_owned(),
            raft_addr: format!("127.0.0.1:730{id}"),
            control_addr: format!("127.0.0.1:740{id}"),
            voter,
        }
    }

    fn reply() -> MembersReply {
        MembersReply {
            members: vec![
                member(1, "a", true),
                member(2, "b", true),
                member(3, "c", true),
            ],
            node_id: 2,
            leader_id: Some(1),
            log_index: 42,
            detail: String::new(),
        }
    }

    fn new_witness(id: u64, site: Option<&str>) -> NewWitness {
        NewWitness {
            id,
            site: site.map(str::to_owned),
            raft_addr: format!("127.0.0.1:730{id}").parse().expect("addr"),
            control_addr: format!("127.0.0.1:740{id}").parse().expect("addr"),
        }
    }

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(id_arg("4"), Ok(4));
        assert!(id_arg("0").expect_err("zero").contains("positive"));
        assert!(id_arg("-1").is_err());
        assert!(id_arg("four").is_err());
    }

    #[test]
    fn addresses_are_ip_and_port() {
        assert_eq!(
            addr_arg("127.0.0.1:7304"),
            Ok("127.0.0.1:7304".parse().expect("addr"))
        );
        assert!(addr_arg("[::1]:7304").is_ok());
        for bad in [
            "localhost:7304",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "",
        ] {
            assert!(
                addr_arg(bad).expect_err(bad).contains("must be IP:PORT"),
                "{bad}"
            );
        }
        assert_eq!(
            addr_arg("127.0.0.1:0"),
            Err("port 0 is not allowed".to_owned())
        );
    }

    #[test]
    fn sites_are_letters_digits_dash_underscore() {
        assert_eq!(site_arg("site-4_b"), Ok("site-4_b".to_owned()));
        assert!(site_arg("").is_err());
        assert!(site_arg("c d").is_err());
        assert!(site_arg("c/d").is_err());
    }

    #[test]
    fn cross_flag_checks_name_the_flags() {
        let mut same = new_witness(4, Some("d"));
        same.control_addr = same.raft_addr;
        let f = Change::Add(same).check().expect_err("same address");
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message().contains("--raft-addr and --control-addr"),
            "{f:?}"
        );
        let f = Change::Replace {
            old: 3,
            new: new_witness(3, None),
        }
        .check()
        .expect_err("same id");
        assert_eq!(f.exit_code(), 2);
        assert!(f.message().starts_with("--id 3 is OLD_ID"), "{f:?}");
        assert!(Change::Remove { id: 3 }.check().is_ok());
    }

    #[test]
    fn requests_carry_the_action_and_the_new_witness() {
        let r = Change::Replace {
            old: 3,
            new: new_witness(4, None),
        }
        .request("alice");
        assert_eq!(r.action, Action::Replace as i32);
        assert_eq!(r.old_id, 3);
        assert_eq!(r.author, "alice");
        let m = r.new_member.expect("new member");
        assert_eq!(
            (
                m.id,
                m.site.as_str(),
                m.raft_addr.as_str(),
                m.control_addr.as_str()
            ),
            (4, "", "127.0.0.1:7304", "127.0.0.1:7404")
        );
        let r = Change::Remove { id: 3 }.request("alice");
        assert_eq!((r.action, r.old_id), (Action::Remove as i32, 3));
        assert!(r.new_member.is_none());
        let r = Change::Add(new_witness(4, Some("d"))).request("alice");
        assert_eq!((r.action, r.old_id), (Action::Add as i32, 0));
        assert_eq!(r.new_member.expect("new").site, "d");
    }

    #[test]
    fn the_prompt_and_the_progress_say_what_will_happen() {
        let now = reply();
        let replace = Change::Replace {
            old: 3,
            new: new_witness(4, None),
        };
        assert_eq!(
            replace.describe(Some(&now)),
            "replace witness 3 (site c) by witness 4 at raft 127.0.0.1:7304 / control \
             127.0.0.1:7404, in one joint change.\n\
             The new witness must be running with raft.join = true in its config.\n"
        );
        assert_eq!(
            replace.progress(Some(&now)),
            "asking the leader to add witness 4 (site c) as a learner, wait for it to catch up \
             (up to 30 s), then replace witness 3 by it in one joint change…\n"
        );
        // Without the membership the old site is not named.
        assert_eq!(
            replace.progress(None),
            "asking the leader to add witness 4 as a learner, wait for it to catch up (up to \
             30 s), then replace witness 3 by it in one joint change…\n"
        );
        let add = Change::Add(new_witness(4, Some("d")));
        assert_eq!(
            add.progress(None),
            "asking the leader to add witness 4 (site d) as a learner, wait for it to catch up \
             (up to 30 s), then make it a voter…\n"
        );
        assert!(add
            .describe(None)
            .starts_with("add witness 4 (site d) at raft 127.0.0.1:7304 / control 127.0.0.1:7404"));
        let remove = Change::Remove { id: 3 };
        assert_eq!(
            remove.describe(Some(&now)),
            "remove witness 3 (site c): it no longer votes, and its site has no witness.\n"
        );
        assert_eq!(
            remove.progress(Some(&now)),
            "asking the leader to remove witness 3 (site c)…\n"
        );
        assert_eq!(
            members_line("http://127.0.0.1:7401", &now),
            "witnesses (via http://127.0.0.1:7401): 1 a, 2 b, 3 c; leader 1\n"
        );
    }

    #[test]
    fn the_table_names_who_answered_the_leader_and_the_log_index() {
        assert_eq!(
            members_text(&reply()),
            "answered by witness 2, leader 1 — membership at log index 42\n\
             \n\
             ID  SITE  ROLE   RAFT            CONTROL\n\
             1   a     voter  127.0.0.1:7301  127.0.0.1:7401\n\
             2   b     voter  127.0.0.1:7302  127.0.0.1:7402\n\
             3   c     voter  127.0.0.1:7303  127.0.0.1:7403\n"
        );
    }

    #[test]
    fn learners_are_marked_and_explained() {
        let mut r = reply();
        r.members.push(member(4, "d", false));
        r.leader_id = None;
        r.log_index = 0;
        let text = members_text(&r);
        assert!(
            text.starts_with(
                "answered by witness 2, leader: unknown — membership as configured (not in the \
                 log yet)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n4   d     learner  127.0.0.1:7304  127.0.0.1:7404\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nlearner 4 has no vote: it is catching up, or an add or replace did not finish \
                 (run it again, or `palisadectl member remove ID`)\n"
            ),
            "{text}"
        );
        assert_eq!(
            members_line("x", &r),
            "witnesses (via x): 1 a, 2 b, 3 c, 4 d (learner); leader: unknown\n"
        );
    }

    #[test]
    fn a_change_prints_the_detail_then_the_membership() {
        let mut r = reply();
        r.detail = "removed witness 3 (site c); 2 voters".to_owned();
        r.members.pop();
        let text = change_text(&r);
        assert!(
            text.starts_with(
                "removed witness 3 (site c); 2 voters\n\
                 answered by witness 2, leader 1 — membership at log index 42\n\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn members_json_is_exact() {
        let v: serde_json::Value =
            serde_json::from_str(&json::to_json(&MembersJson::from(&reply()))).expect("json");
        assert_eq!(v["node_id"], 2);
        assert_eq!(v["leader_id"], 1);
        assert_eq!(v["log_index"], 42);
        assert_eq!(
            v["members"][0],
            serde_json::json!({
                "id": 1, "site": "a", "role": "voter",
                "raft_addr": "127.0.0.1:7301", "control_addr": "127.0.0.1:7401"
            })
        );
        let mut r = reply();
        r.leader_id = None;
        let v: serde_json::Value =
            serde_json::from_str(&json::to_json(&MembersJson::from(&r))).expect("json");
        assert!(v["leader_id"].is_null());
    }

    #[test]
    fn change_json_says_whether_anything_changed() {
        let mut r = reply();
        r.detail = "nothing to do: witness 3 was already replaced by 4".to_owned();
        let change = Change::Replace {
            old: 3,
            new: new_witness(4, None),
        };
        let v: serde_json::Value =
            serde_json::from_str(&json::to_json(&MemberChangeJson::new(&change, &r)))
                .expect("json");
        let mut keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "action",
                "changed",
                "detail",
                "leader_id",
                "log_index",
                "members",
                "new_id",
                "node_id",
                "old_id"
            ]
        );
        assert_eq!(v["action"], "replace");
        assert_eq!(
            (v["old_id"].as_u64(), v["new_id"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(v["changed"], false);
        r.detail = "removed witness 3 (site c); 2 voters".to_owned();
        let v: serde_json::Value = serde_json::from_str(&json::to_json(&MemberChangeJson::new(
            &Change::Remove { id: 3 },
            &r,
        )))
        .expect("json");
        assert_eq!(v["changed"], true);
        assert!(v["new_id"].is_null());
    }
}
