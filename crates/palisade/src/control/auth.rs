//! Who may do what on the control port, and under which name it is
//! recorded.
//!
//! With mutual TLS the handshake admitted only operators and witnesses of
//! this cluster; each RPC then needs a role: `viewer` for status, history,
//! journal and watch, `operator` for everything else. The name recorded in
//! the history, the journal and maintenance mode is the certificate's, not
//! what the client typed (`--who`). A follower that forwards an operator's
//! request to the leader has checked the role and put the operator's name
//! in the request; the leader trusts that from a witness certificate only.
//!
//! On an insecure witness (`tls.insecure = true`) nobody is authenticated:
//! every request is allowed and the typed name is recorded as typed.

use palisade_api::v1 as pb;
use palisade_tls::{Identity, Role};
use tonic::{Request, Status};

use super::ControlService;

/// The request's name field, which authorization overwrites with the
/// authenticated name.
pub(super) trait Named {
    /// The field that names who asked.
    fn name_mut(&mut self) -> Option<&mut String>;
}

macro_rules! named_by {
    ($t:ty, $field:ident) => {
        impl Named for $t {
            fn name_mut(&mut self) -> Option<&mut String> {
                Some(&mut self.$field)
            }
        }
    };
}
named_by!(pb::SwitchoverRequest, who);
named_by!(pb::FailoverRequest, who);
named_by!(pb::FailbackRequest, who);
named_by!(pb::PauseRequest, who);
named_by!(pb::ResumeRequest, who);
named_by!(pb::AnnotateRequest, author);
named_by!(pb::ChangeMembersRequest, author);

impl Named for pb::RecordDrillRequest {
    fn name_mut(&mut self) -> Option<&mut String> {
        self.drill.as_mut().map(|d| &mut d.who)
    }
}

/// The authenticated caller, in words (for status): empty when insecure.
pub(super) fn describe(identity: &Option<Identity>) -> String {
    match identity {
        None => String::new(),
        Some(Identity::Operator { name, role, .. }) => format!("operator {name} (role {role})"),
        Some(Identity::Witness { node, site, .. }) => format!("witness {node} (site {site})"),
    }
}

impl ControlService {
    /// The caller's identity from its certificate (`None`: insecure).
    pub(super) fn identity<T>(&self, req: &Request<T>) -> Result<Option<Identity>, Status> {
        let identity = palisade_raft::transport::caller(req, self.tls.is_some())?;
        if let Some(id) = &identity {
            if id.cluster() != self.cluster_name {
                return Err(Status::permission_denied(format!(
                    "{} is not of cluster {}",
                    id.uri(),
                    self.cluster_name
                )));
            }
        }
        Ok(identity)
    }

    /// A read: any operator or witness of the cluster (viewer role).
    pub(super) fn may_read<T>(&self, req: &Request<T>) -> Result<Option<Identity>, Status> {
        self.identity(req)
    }

    /// A change: the operator role, checked before anything is done or
    /// forwarded; the request's name field is set to the certificate's
    /// name. Refusals are logged with the identity (an audit trail of who
    /// tried what).
    pub(super) fn may_change<T: Named>(
        &self,
        mut req: Request<T>,
        what: &str,
    ) -> Result<Request<T>, Status> {
        let Some(identity) = self.identity(&req)? else {
            return Ok(req);
        };
        match &identity {
            Identity::Operator { name, role, .. } => {
                if *role < Role::Operator {
                    tracing::warn!(caller = %identity.uri(), what, "refused: a viewer asked for a change");
                    return Err(Status::permission_denied(format!(
                        "{what} needs the operator role; {name}'s certificate grants {role}"
                    )));
                }
                if let Some(field) = req.get_mut().name_mut() {
                    *field = name.clone();
                }
            }
            // A follower forwarding an operator's request: it checked the
            // role and set the name.
            Identity::Witness { node, .. } => {
                if let Some(field) = req.get_mut().name_mut() {
                    if field.is_empty() {
                        *field = format!("witness-{node}");
                    }
                }
            }
        }
        Ok(req)
    }
}
