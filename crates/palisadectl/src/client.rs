//! Talking to a witness: endpoint validation, the channel, and sorting every
//! failure into the class that decides palisadectl's exit code.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::NodeStatusRequest;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// Why a command did not succeed. Each class is one exit code, so scripts can
/// tell "fix the flags" from "retry later" from "ask an operator".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The output could not be written (stdout closed, disk full). Exit 1.
    Output(String),
    /// A flag value clap could not check itself, e.g. `--endpoint`. Exit 2,
    /// the code clap uses for its own parse errors.
    Usage(String),
    /// The endpoint could not be reached, or the RPC failed in transport
    /// (refused, timed out, DNS, connection reset). Exit 3.
    Unreachable(String),
    /// `status` answered but the answering witness knows no leader. Exit 4.
    NoLeader(String),
    /// The server answered the RPC with an error status. Exit 5.
    Rejected(String),
    /// An operation finished but did not succeed (aborted, or completed
    /// with failed checks), or a drill failed. Exit 6.
    NotSucceeded(String),
    /// Waiting for an operation gave up at `--wait-timeout`; the operation
    /// may still be running. Exit 7.
    WaitTimedOut(String),
    /// `status` answered with a leader that has not heard from a majority
    /// of the witnesses within the election timeout: it cannot commit
    /// anything. Exit 8.
    NoQuorum(String),
    /// A request that changes the cluster was sent, but no answer came
    /// (a timeout, a connection lost, a leader that could not finish
    /// committing): it may still take effect. Exit 9.
    OutcomeUnknown(String),
    /// The operator did not confirm an operation at the prompt; nothing
    /// was sent. Exit 10.
    NotConfirmed(String),
}

impl Failure {
    /// The process exit code for this class.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Output(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::NoLeader(_) => 4,
            Failure::Rejected(_) => 5,
            Failure::NotSucceeded(_) => 6,
            Failure::WaitTimedOut(_) => 7,
            Failure::NoQuorum(_) => 8,
            Failure::OutcomeUnknown(_) => 9,
            Failure::NotConfirmed(_) => 10,
        }
    }

    /// The one-line message for stderr, without the `palisadectl: ` prefix.
    pub fn message(&self) -> &str {
        match self {
            Failure::Output(m)
            | Failure::Usage(m)
            | Failure::Unreachable(m)
            | Failure::NoLeader(m)
            | Failure::Rejected(m)
            | Failure::NotSucceeded(m)
            | Failure::WaitTimedOut(m)
            | Failure::NoQuorum(m)
            | Failure::OutcomeUnknown(m)
            | Failure::NotConfirmed(m) => m,
        }
    }
}

/// Checks an `--endpoint` value: `https://HOST:PORT` (mutual TLS, the
/// witnesses' default) or `http://HOST:PORT` (a witness configured
/// `tls.insecure = true`), nothing after the port.
pub fn parse_endpoint(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .parse()
        .map_err(|e| format!("not a valid URI ({e}); expected https://HOST:PORT"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme must be https (or http), not {other:?}")),
        None => return Err("missing scheme; expected https://HOST:PORT".to_owned()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("missing host; expected https://HOST:PORT".to_owned());
    }
    // `Uri` accepts any digits as a port but reports one that does not fit a
    // u16 as absent, so look at the authority to tell "missing" from "bad".
    let authority = uri.authority().map_or("", |a| a.as_str());
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    match (uri.port_u16(), after_host.rsplit_once(':')) {
        (Some(0), _) => return Err("port 0 is not in 1..=65535".to_owned()),
        (Some(_), _) => {}
        (None, Some((_, p))) if !p.is_empty() => {
            return Err(format!("port {p} is not in 1..=65535"))
        }
        (None, _) => return Err("missing port; expected https://HOST:PORT".to_owned()),
    }
    // tonic would put the path in front of every method path and ignore
    // user-info; a witness serves neither, so they can only be mistakes.
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must not have a path or query; expected https://HOST:PORT".to_owned());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry user-info; expected https://HOST:PORT".to_owned());
    }
    Ok(uri)
}

/// A validated witness endpoint and the timeout used both to connect and for
/// each request.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    /// The operator's certificate for an `https` endpoint.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The endpoint as the operator wrote it, for messages; `Uri`'s own
    /// display adds a trailing `/` they never typed.
    shown: String,
    /// The connect timeout (`--timeout`).
    timeout: Duration,
    /// The bound of each request on a channel from [`Target::connect`]:
    /// the timeout, unless [`Target::with_request_timeout`] set another.
    request_timeout: Duration,
}

impl Target {
    /// Validates `raw`; a bad value is a [`Failure::Usage`] naming `--endpoint`.
    pub fn new(raw: &str, timeout: Duration) -> Result<Self, Failure> {
        let uri = parse_endpoint(raw).map_err(|reason| {
            Failure::Usage(format!(
                "invalid --endpoint {raw:?} (or PALISADE_ENDPOINT): {reason}"
            ))
        })?;
        Ok(Self {
            uri,
            tls: None,
            shown: raw.to_owned(),
            timeout,
            request_timeout: timeout,
        })
    }

    /// Presents the operator certificate in `store` on an `https` endpoint.
    pub fn with_certificate(mut self, store: Arc<palisade_tls::CertStore>) -> Self {
        self.tls = Some(palisade_tls::client_config_any_witness(store));
        self
    }

    /// Whether the endpoint is `https` (mutual TLS).
    pub fn is_tls(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// The endpoint to dial: with TLS, an `http` URI for tonic (the TLS is
    /// the connector's), and the connector.
    fn endpoint(&self) -> Result<Endpoint, Failure> {
        if !self.is_tls() {
            return Ok(Endpoint::from(self.uri.clone()));
        }
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| Failure::Usage(format!("invalid --endpoint {:?}: {e}", self.shown)))
    }

    async fn dial(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        match (&self.tls, self.is_tls()) {
            (Some(config), true) => {
                let authority = self.uri.authority().map_or("", |a| a.as_str()).to_owned();
                // Any witness of the CA's cluster is accepted, whatever
                // name: the CLI dials an address, not a node.
                let name = rustls_pki_types::ServerName::try_from("witness.palisade")
                    .expect("a constant DNS name");
                endpoint
                    .connect_with_connector(palisade_tls::dial::connector(
                        config.clone(),
                        authority,
                        name,
                    ))
                    .await
            }
            _ => endpoint.connect().await,
        }
    }

    /// The endpoint as given, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The `--timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This target with each request bounded by `request_timeout` instead
    /// of the timeout (connecting still by the timeout): for a request the
    /// server takes long to answer, such as a membership change, which
    /// waits for a new witness to catch up.
    pub fn with_request_timeout(&self, request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            ..self.clone()
        }
    }

    /// Connects eagerly, so an unreachable endpoint is reported as such
    /// before any request is built, and returns a client on that one channel.
    /// Every request on it is bounded by the timeout. The channel reconnects
    /// by itself after a transport failure, so one client serves a whole
    /// wait loop.
    pub async fn connect(&self) -> Result<ControlClient<Channel>, Failure> {
        self.connect_with(self.endpoint()?.timeout(self.request_timeout))
            .await
    }

    /// For a stream (`watch`): requests are not bounded as a whole (the
    /// stream is meant to last until the operator stops it), but the
    /// connection is: palisadectl sends an HTTP/2 ping whenever the witness
    /// has been silent for the timeout and drops the connection when a
    /// ping goes unanswered for the timeout, so a frozen witness, or a port
    /// that accepts but never speaks, ends the stream instead of hanging.
    /// The connect timeout still applies; the caller bounds the wait for
    /// the stream's first answer.
    pub async fn connect_stream(&self) -> Result<ControlClient<Channel>, Failure> {
        self.connect_with(
            self.endpoint()?
                .http2_keep_alive_interval(self.timeout)
                .keep_alive_timeout(self.timeout)
                .keep_alive_while_idle(true),
        )
        .await
    }

    async fn connect_with(&self, endpoint: Endpoint) -> Result<ControlClient<Channel>, Failure> {
        if self.is_tls() && self.tls.is_none() {
            return Err(Failure::Usage(format!(
                "{} is https (mutual TLS): give your operator certificate with --cert, --key and --ca \
                 (or PALISADE_CERT, PALISADE_KEY, PALISADE_CA; `palisade cert issue --operator NAME \
                 --role viewer|operator` makes one), or use http:// for a witness configured \
                 tls.insecure = true",
                self.shown
            )));
        }
        let channel = self
            .dial(endpoint.connect_timeout(self.timeout))
            .await
            .map_err(|e| {
                Failure::Unreachable(format!(
                    "cannot reach {}: {}",
                    self.shown,
                    self.describe(&e, self.timeout)
                ))
            })?;
        Ok(ControlClient::new(channel))
    }

    /// Classifies a failed `rpc` (named for the message).
    pub fn rpc_failure(&self, rpc: &str, status: &Status) -> Failure {
        if status.code() == Code::Unimplemented && status.source().is_none() {
            return Failure::Usage(format!(
                "{} does not serve the palisade control API ({rpc}: Unimplemented): is it a \
                 witness's raft_addr? --endpoint must be a witness's control_addr",
                self.shown
            ));
        }
        if is_transport_failure(status) {
            let cause = match status.source() {
                Some(source) => self.describe(source, self.request_timeout),
                // A deadline or cancellation the server sent: its words.
                None => format!("{} ({:?})", message_of(status), status.code()),
            };
            Failure::Unreachable(format!("{rpc} request to {} failed: {cause}", self.shown))
        } else {
            Failure::Rejected(format!(
                "{} rejected {rpc}: {} ({:?})",
                self.shown,
                message_of(status),
                status.code()
            ))
        }
    }

    /// Classifies a failed request that changes the cluster (`rpc`, sent
    /// with `request_id`): like [`Target::rpc_failure`], except that a
    /// failure after the request may have reached the witness (a timeout,
    /// a lost connection, a witness that could not finish committing, a
    /// leader that did not answer the witness that forwarded it) is
    /// [`Failure::OutcomeUnknown`]: it may still take effect. `retry` is
    /// the command line that retries it safely (with `--request-id`).
    pub fn request_failure(
        &self,
        rpc: &str,
        status: &Status,
        request_id: &str,
        retry: &str,
    ) -> Failure {
        if !may_have_been_sent(status) {
            return self.rpc_failure(rpc, status);
        }
        let cause = self.no_answer_cause(status);
        Failure::OutcomeUnknown(unknown_outcome(
            &format!(
                "{rpc} request {request_id} to {} got no answer: {cause}",
                self.shown
            ),
            request_id,
            retry,
        ))
    }

    /// Classifies a failed membership change (`rpc`, e.g. `member add`;
    /// it carries no request id). A refusal (`InvalidArgument`,
    /// `FailedPrecondition`, ...) is [`Failure::Rejected`] with the
    /// server's message; `Unavailable` from the server (no leader, or the
    /// leader lost) is [`Failure::Unreachable`]: retry once a leader is
    /// known. A failure after the request may have reached the witness (a
    /// timeout, a lost connection, `Unknown`, `DeadlineExceeded`) is
    /// [`Failure::OutcomeUnknown`]: check `member list`; `retry`, the
    /// same command again, is safe, since a change already in force
    /// changes nothing. A server without the membership RPCs (an older
    /// release) is named as such.
    pub fn change_failure(&self, rpc: &str, status: &Status, retry: &str) -> Failure {
        if may_have_been_sent(status) {
            return Failure::OutcomeUnknown(format!(
                "{rpc} request to {} got no answer: {}; it may still take effect: check with \
                 `palisadectl member list`; running `{retry}` again is safe (a change already in \
                 force changes nothing)",
                self.shown,
                self.no_answer_cause(status)
            ));
        }
        match status.code() {
            Code::Unavailable if status.source().is_none() => Failure::Unreachable(format!(
                "{} could not carry out {rpc}: {} (Unavailable); retry once a leader is known \
                 (`palisadectl status`)",
                self.shown,
                message_of(status)
            )),
            _ => self.read_failure(rpc, status),
        }
    }

    /// Classifies a failed `member` request (`rpc`) as
    /// [`Target::rpc_failure`] does, except that `Unimplemented` names a
    /// witness of a release without the membership RPCs as a likely cause.
    pub fn read_failure(&self, rpc: &str, status: &Status) -> Failure {
        if status.code() == Code::Unimplemented && status.source().is_none() {
            // "does not serve the palisade control API" makes `run` look
            // for a Raft peer port, as for any command.
            return Failure::Usage(format!(
                "{} does not serve the palisade control API's {rpc} (Unimplemented): a witness of \
                 a release without membership changes (upgrade every witness first), or not a \
                 witness's control_addr",
                self.shown
            ));
        }
        self.rpc_failure(rpc, status)
    }

    /// Why a request that may have been sent got no answer, on one line.
    fn no_answer_cause(&self, status: &Status) -> String {
        match status.source() {
            Some(source) => self.describe(source, self.request_timeout),
            None => format!("{} ({:?})", message_of(status), status.code()),
        }
    }

    /// When `rpc` was refused as unimplemented, whether the endpoint is a
    /// witness's Raft peer port: it answers `RaftPeer.NodeStatus`, which
    /// names the witness and its control address.
    pub async fn peer_port_hint(&self) -> Option<String> {
        let endpoint = self
            .endpoint()
            .ok()?
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        let channel = self.dial(endpoint).await.ok()?;
        let me = RaftPeerClient::new(channel)
            .node_status(NodeStatusRequest {})
            .await
            .ok()?
            .into_inner();
        Some(format!(
            "{} is the Raft peer port of witness {} (site {}), not a control endpoint; use \
             --endpoint {}://{}",
            self.shown,
            me.id,
            me.site,
            if self.is_tls() { "https" } else { "http" },
            me.control_addr
        ))
    }

    /// The real cause of a transport error on one line. A timeout is named
    /// with its length (`limit`) instead: tonic's "Timeout expired" does
    /// not say which.
    fn describe(&self, err: &(dyn Error + 'static), limit: Duration) -> String {
        if chain(err).any(is_timeout) {
            format!("timed out after {} ms", limit.as_millis())
        } else {
            root_cause(err)
        }
    }
}

/// Whether a failed request that changes the cluster may have reached the
/// witness, so that it may still take effect: a transport failure other
/// than a connection never made, or a server's `DeadlineExceeded`,
/// `Cancelled` or `Unknown`.
fn may_have_been_sent(status: &Status) -> bool {
    match status.source() {
        Some(source) => !never_sent(source),
        None => matches!(
            status.code(),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
    }
}

/// Whether a failed RPC is the transport's fault rather than the server's
/// answer. tonic attaches the underlying error as `source` exactly when it
/// made the status up locally (connect error, timeout, reset); a status the
/// server sent has none. A deadline or cancellation, from either side, is a
/// timeout and so also counts as transport.
pub fn is_transport_failure(status: &Status) -> bool {
    status.source().is_some() || matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
}

/// The one-line message of a request whose outcome is unknown: `what`
/// happened, then how to find out and how to retry safely.
pub fn unknown_outcome(what: &str, request_id: &str, retry: &str) -> String {
    format!(
        "{what}; it may still take effect: check with `palisadectl history --request {request_id}`; \
         retrying with `{retry} --request-id {request_id}` is safe (it takes effect at most once)"
    )
}

/// Whether a transport error happened before anything was sent: the
/// connection was never made (refused, no route, no such host).
fn never_sent(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        }) || e.to_string().contains("tcp connect error")
            || e.to_string().starts_with("dns error")
    })
}

/// An error and its sources, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn Error + 'static)| e.source())
}

/// The innermost non-empty message of the chain: the outer layers of a tonic
/// transport error say only "transport error" or "tcp connect error", while
/// the innermost says e.g. "Connection refused (os error 111)".
pub fn root_cause(err: &(dyn Error + 'static)) -> String {
    let messages: Vec<String> = chain(err).map(|e| one_line(&e.to_string())).collect();
    messages
        .into_iter()
        .rev()
        .find(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown error".to_owned())
}

fn is_timeout(err: &(dyn Error + 'static)) -> bool {
    err.is::<tonic::TimeoutExpired>()
        || err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        // tower's `Elapsed` (the connect timeout) is not reachable without a
        // tower dependency; its message is stable.
        || err.to_string() == "request timed out"
}

/// The server's message on one line, or the code's description if it sent none.
fn message_of(status: &Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        one_line(status.message())
    }
}

/// Collapses whitespace (newlines included) so every message stays one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_are_accepted() {
        for raw in [
            "http://127.0.0.1:7401",
            "http://127.0.0.1:7401/",
            "http://localhost:1",
            "http://witness-2.example.internal:7401",
            "http://[::1]:7401",
            "https://127.0.0.1:7401",
        ] {
            assert!(
                parse_endpoint(raw).is_ok(),
                "{raw}: {:?}",
                parse_endpoint(raw)
            );
        }
    }

    #[test]
    fn bad_endpoints_are_refused_with_a_reason() {
        for (raw, reason) in [
            ("nonsense", "missing scheme"),
            ("127.0.0.1:7401", "missing scheme"),
            ("", "not a valid URI"),
            ("http://", "not a valid URI"),
            ("http://exa mple:1", "not a valid URI"),
            ("ftp://127.0.0.1:7401", "scheme must be https"),
            ("http://127.0.0.1", "missing port"),
            ("http://127.0.0.1:", "missing port"),
            ("http://[::1]", "missing port"),
            ("http://127.0.0.1:0", "port 0 is not in 1..=65535"),
            ("http://127.0.0.1:99999", "port 99999 is not in 1..=65535"),
            ("http://127.0.0.1:7401/palisade", "must not have a path"),
            ("http://127.0.0.1:7401?x=1", "must not have a path or query"),
            ("http://op@127.0.0.1:7401", "user-info"),
        ] {
            let err = parse_endpoint(raw).expect_err(raw);
            assert!(err.contains(reason), "{raw}: {err}");
        }
    }

    #[test]
    fn bad_endpoint_is_a_usage_failure_naming_the_flag() {
        let f = Target::new("nonsense", Duration::from_secs(1)).expect_err("invalid");
        assert_eq!(f.exit_code(), 2);
        assert!(f.message().contains("--endpoint"), "{}", f.message());
        assert!(f.message().contains("\"nonsense\""), "{}", f.message());
    }

    fn target() -> Target {
        Target::new("http://127.0.0.1:7401", Duration::from_millis(3000)).expect("valid")
    }

    #[test]
    fn server_statuses_are_rejections_exit_5() {
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::Unavailable,
            Code::PermissionDenied,
            Code::Internal,
        ] {
            let f = target().rpc_failure("annotate", &Status::new(code, "no leader\nknown"));
            assert_eq!(f.exit_code(), 5, "{code:?}");
            assert_eq!(
                f.message(),
                format!("http://127.0.0.1:7401 rejected annotate: no leader known ({code:?})")
            );
        }
        let f = target().rpc_failure("journal", &Status::new(Code::Internal, ""));
        assert!(f.message().ends_with("Internal error (Internal)"), "{f:?}");
    }

    #[test]
    fn an_endpoint_that_does_not_serve_the_control_api_is_a_usage_error() {
        let f = target().rpc_failure("status", &Status::new(Code::Unimplemented, ""));
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message()
                .contains("does not serve the palisade control API"),
            "{f:?}"
        );
    }

    const ID: &str = "20231114T221320.123Z-9f86d081884c7d65";

    #[test]
    fn a_request_without_an_answer_after_sending_is_exit_9_with_its_id() {
        // The defect of issue 11: a timed-out `pause` exited 3 and took
        // effect later. Now the outcome is unknown, and says how to check
        // and how to retry safely.
        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let f = target().request_failure("pause", &timed_out, ID, "palisadectl pause");
        assert_eq!(f.exit_code(), 9);
        assert_eq!(
            f.message(),
            format!(
                "pause request {ID} to http://127.0.0.1:7401 got no answer: timed out after 3000 ms; \
                 it may still take effect: check with `palisadectl history --request {ID}`; \
                 retrying with `palisadectl pause --request-id {ID}` is safe (it takes effect at \
                 most once)"
            )
        );
        for status in [
            Status::deadline_exceeded("leader 1 did not answer"),
            Status::unknown("the leader could not finish committing"),
            Status::from_error(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))),
        ] {
            let f = target().request_failure("annotate", &status, ID, "palisadectl annotate x");
            assert_eq!(f.exit_code(), 9, "{status:?}");
        }
    }

    #[test]
    fn a_request_that_was_never_sent_or_was_refused_is_not_unknown() {
        let refused = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        let f = target().request_failure("pause", &refused, ID, "palisadectl pause");
        assert_eq!(f.exit_code(), 3, "{f:?}");
        let f = target().request_failure(
            "pause",
            &Status::failed_precondition("already paused"),
            ID,
            "palisadectl pause",
        );
        assert_eq!(f.exit_code(), 5, "{f:?}");
    }

    #[test]
    fn membership_changes_map_refusals_to_5_no_leader_to_3_no_answer_to_9() {
        let retry = "palisadectl member remove 4 --yes";
        for code in [Code::InvalidArgument, Code::FailedPrecondition] {
            let f = target().change_failure("member remove", &Status::new(code, "why"), retry);
            assert_eq!(f.exit_code(), 5, "{code:?}");
            assert_eq!(
                f.message(),
                format!("http://127.0.0.1:7401 rejected member remove: why ({code:?})")
            );
        }
        let f = target().change_failure("member remove", &Status::unavailable("no leader"), retry);
        assert_eq!(f.exit_code(), 3);
        assert!(f.message().contains("no leader (Unavailable)"), "{f:?}");
        for status in [
            Status::unknown("did not commit"),
            Status::deadline_exceeded("leader 1 did not answer"),
            Status::from_error(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))),
        ] {
            let f = target().change_failure("member remove", &status, retry);
            assert_eq!(f.exit_code(), 9, "{status:?}");
            assert!(
                f.message().ends_with(
                    "it may still take effect: check with `palisadectl member list`; running \
                     `palisadectl member remove 4 --yes` again is safe (a change already in \
                     force changes nothing)"
                ),
                "{f:?}"
            );
        }
        // The request's own bound is named, not the connect timeout.
        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let f = target()
            .with_request_timeout(Duration::from_secs(60))
            .change_failure("member remove", &timed_out, retry);
        assert!(
            f.message()
                .starts_with("member remove request to http://127.0.0.1:7401 got no answer: timed out after 60000 ms;"),
            "{f:?}"
        );
        // Never sent: exit 3.
        let refused = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        assert_eq!(
            target()
                .change_failure("member remove", &refused, retry)
                .exit_code(),
            3
        );
        // A witness without the RPC: an older release is named.
        let f = target().read_failure("member list", &Status::unimplemented(""));
        assert_eq!(f.exit_code(), 2);
        assert!(
            f.message()
                .contains("does not serve the palisade control API's member list"),
            "{f:?}"
        );
        assert!(f.message().contains("upgrade every witness first"), "{f:?}");
    }

    #[test]
    fn transport_statuses_and_timeouts_are_unreachable_exit_3() {
        let refused = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        let f = target().rpc_failure("status", &refused);
        assert_eq!(f.exit_code(), 3);
        assert_eq!(
            f.message(),
            "status request to http://127.0.0.1:7401 failed: Connection refused (os error 111)"
        );

        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let f = target().rpc_failure("status", &timed_out);
        assert_eq!(f.exit_code(), 3);
        assert_eq!(
            f.message(),
            "status request to http://127.0.0.1:7401 failed: timed out after 3000 ms"
        );

        for code in [Code::DeadlineExceeded, Code::Cancelled] {
            let f = target().rpc_failure("annotate", &Status::new(code, "commit timed out"));
            assert_eq!(f.exit_code(), 3, "{code:?}");
            assert_eq!(
                f.message(),
                format!(
                    "annotate request to http://127.0.0.1:7401 failed: commit timed out ({code:?})"
                )
            );
        }
    }

    #[test]
    fn root_cause_is_the_innermost_message_on_one_line() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("dns error:\n  no such host"));
        assert_eq!(root_cause(&e), "dns error: no such host");
    }
}
