//! What the lease guard does to the local PostgreSQL server, decided
//! purely from the witness's last order, the server's observed state and
//! the time.
//!
//! The primary's site agent may keep its database writable only while its
//! quorum lease is live (DESIGN.md safety rule 2). Enforcing that from the
//! witness process itself fails exactly when it matters: a witness that is
//! SIGKILLed, SIGSTOPped or hung enforces nothing, while the cluster, having
//! waited out the lease, promotes the standby. So the enforcement lives in
//! a separate small process, the lease guard, and the witness only writes
//! it **orders**: "this boot's epoch `E` may write until monotonic instant
//! `D`", renewed with each lease renewal. A guard that hears nothing more
//! acts on the last order: at `D` it freezes the server.
//!
//! Freezing (SIGSTOP of every server process) instead of killing makes a
//! lease that lapses for a moment (a link flap, a slow renewal) cost a
//! pause, not a crash-recovery restart: when an order of the *same* epoch
//! comes back, the guard thaws the server and every session carries on. A
//! freeze is not forever: after [`GuardConfig::hard_after_ms`] without the
//! lease coming back, or at once on a `hard` order (a committed failover),
//! the guard kills the server.
//!
//! Clock: every instant here is `CLOCK_MONOTONIC` in milliseconds, which
//! all processes of a machine share, so an order written by the witness
//! means the same instant to the guard. It is meaningless on another boot;
//! the guard treats an order written on another boot as no order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default of [`GuardConfig::hard_after_ms`].
pub const DEFAULT_HARD_AFTER_MS: u64 = 10_000;

/// The witness's order to the guard: how long its database may write.
///
/// Written by the primary's site agent on each lease renewal (and with
/// `hard` when a failover away from this site is committed); read by the
/// guard on every poll. Only the latest order counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuardOrder {
    /// The failover epoch the lease belongs to. A freeze made under one
    /// epoch is undone only by a live order of the same epoch: a later
    /// epoch means the cluster moved on, and the frozen server's data may
    /// no longer be the primary's.
    pub epoch: u64,
    /// `CLOCK_MONOTONIC` milliseconds (system-wide) at which the lease,
    /// less the agent's safety margin, runs out. From this instant on the
    /// server must not acknowledge a write.
    pub deadline_ms: u64,
    /// A committed failover moved the primary away: kill the server, never
    /// thaw it. Its data is about to be rewound or replaced.
    pub hard: bool,
}

impl GuardOrder {
    /// True when this order lets the server write at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.hard && now_ms < self.deadline_ms
    }
}

/// The local server as the guard sees it on one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Some server process can run: it may acknowledge writes. A server
    /// that somebody other than this guard stopped (an operator, a chaos
    /// test) counts as running: whoever stopped it may resume it at any
    /// time, and the guard must not thaw what it did not freeze.
    Running,
    /// This guard stopped every server process.
    Frozen {
        /// Epoch of the order whose lease had run out when the guard froze
        /// the server; `None` when there was no order at all (none
        /// written on this boot). Only a live order of this very epoch
        /// thaws it, so a server frozen without an order is never thawed.
        epoch: Option<u64>,
        /// When the guard froze it (`CLOCK_MONOTONIC` ms); the bound
        /// [`GuardConfig::hard_after_ms`] counts from here.
        since_ms: u64,
    },
    /// No server process exists. Nothing to enforce.
    Stopped,
}

/// The guard's tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// How long a freeze may last before the guard kills the server. A
    /// frozen server holds its clients' connections and locks; once the
    /// lease has been gone this long it is not a flap any more, and the
    /// site will be failed over or restarted, both of which need it
    /// stopped.
    pub hard_after_ms: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            hard_after_ms: DEFAULT_HARD_AFTER_MS,
        }
    }
}

/// What the guard does on this poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardAction {
    /// Leave the server as it is.
    Nothing,
    /// Stop every server process (SIGSTOP), postmaster first.
    Freeze,
    /// Resume every server process (SIGCONT).
    Thaw,
    /// Kill every server process (SIGKILL); crash recovery on next start.
    Kill,
}

/// Why the guard does what it does, in words for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No server process exists.
    NotRunning,
    /// The latest order is hard: a failover away from this site is
    /// committed.
    HardOrder {
        /// The order's epoch.
        epoch: u64,
    },
    /// The latest order lets the server write.
    LeaseLive {
        /// The order's epoch.
        epoch: u64,
        /// Time left until its deadline.
        left_ms: u64,
    },
    /// No order was written on this boot: there is no lease.
    NoOrder,
    /// The latest order's deadline has passed.
    Expired {
        /// The order's epoch.
        epoch: u64,
        /// How long ago the deadline passed.
        late_ms: u64,
    },
    /// A live order of the epoch the server was frozen under came back.
    LeaseBack {
        /// The order's epoch.
        epoch: u64,
        /// Time left until its deadline.
        left_ms: u64,
    },
    /// The latest order is live but of another epoch than the freeze.
    OtherEpoch {
        /// Epoch the server was frozen under (`None`: frozen without any
        /// order).
        frozen: Option<u64>,
        /// The live order's epoch.
        order: u64,
    },
    /// The server stayed frozen for the whole bound.
    FrozenTooLong {
        /// Epoch the server was frozen under.
        frozen: Option<u64>,
        /// How long it has been frozen.
        frozen_ms: u64,
        /// [`GuardConfig::hard_after_ms`].
        bound_ms: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let epoch = |e: &Option<u64>| match e {
            Some(e) => format!("epoch {e}"),
            None => "no order".to_owned(),
        };
        match self {
            Reason::NotRunning => write!(f, "no server process runs"),
            Reason::HardOrder { epoch } => write!(
                f,
                "hard order for epoch {epoch}: a failover away from this site is committed"
            ),
            Reason::LeaseLive { epoch, left_ms } => {
                write!(f, "lease of epoch {epoch} live for {left_ms} ms more")
            }
            Reason::NoOrder => write!(
                f,
                "no lease order written on this boot: no lease, the server must not write"
            ),
            Reason::Expired { epoch, late_ms } => write!(
                f,
                "lease of epoch {epoch} ran out {late_ms} ms ago and was not renewed"
            ),
            Reason::LeaseBack { epoch, left_ms } => write!(
                f,
                "lease of epoch {epoch} is back, live for {left_ms} ms: the freeze was a flap"
            ),
            Reason::OtherEpoch { frozen, order } => write!(
                f,
                "frozen under {} but the live order is for epoch {order}: stays frozen",
                epoch(frozen)
            ),
            Reason::FrozenTooLong {
                frozen,
                frozen_ms,
                bound_ms,
            } => write!(
                f,
                "frozen under {} for {frozen_ms} ms, bound {bound_ms} ms: the lease did not come back",
                epoch(frozen)
            ),
        }
    }
}

/// One decision: the action and its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do now.
    pub action: GuardAction,
    /// Why, for the log.
    pub reason: Reason,
    /// The epoch of the order this decision follows (`None`: no order).
    /// After a [`GuardAction::Freeze`] the guard records the server as
    /// frozen under this epoch.
    pub epoch: Option<u64>,
}

impl Decision {
    /// The reason in words.
    pub fn why(&self) -> String {
        self.reason.to_string()
    }
}

/// Decides what the guard does to the server at `now_ms`.
///
/// `order` is the latest order written on this boot (`None`: none, or
/// only one from another boot, which is the same as none). The rules, in
/// order:
///
/// 1. Nothing runs: nothing to do.
/// 2. A hard order: kill, whatever the server's state.
/// 3. Running: nothing while the order is live, else freeze (no order is no
///    lease).
/// 4. Frozen: thaw when a live order of the freeze's epoch came back;
///    otherwise stay frozen, and kill once frozen for `hard_after_ms`.
pub fn decide(
    order: Option<&GuardOrder>,
    server: ServerState,
    now_ms: u64,
    cfg: &GuardConfig,
) -> Decision {
    let epoch = order.map(|o| o.epoch);
    let decision = |action, reason| Decision {
        action,
        reason,
        epoch,
    };
    let hard_epoch = order.filter(|o| o.hard).map(|o| o.epoch);
    match (server, hard_epoch) {
        (ServerState::Stopped, _) => decision(GuardAction::Nothing, Reason::NotRunning),
        (_, Some(epoch)) => decision(GuardAction::Kill, Reason::HardOrder { epoch }),
        (ServerState::Running, None) => match order {
            None => decision(GuardAction::Freeze, Reason::NoOrder),
            Some(o) if o.is_live(now_ms) => decision(
                GuardAction::Nothing,
                Reason::LeaseLive {
                    epoch: o.epoch,
                    left_ms: o.deadline_ms - now_ms,
                },
            ),
            Some(o) => decision(
                GuardAction::Freeze,
                Reason::Expired {
                    epoch: o.epoch,
                    late_ms: now_ms - o.deadline_ms,
                },
            ),
        },
        (
            ServerState::Frozen {
                epoch: frozen,
                since_ms,
            },
            None,
        ) => {
            if let Some(o) = order.filter(|o| o.is_live(now_ms) && Some(o.epoch) == frozen) {
                return decision(
                    GuardAction::Thaw,
                    Reason::LeaseBack {
                        epoch: o.epoch,
                        left_ms: o.deadline_ms - now_ms,
                    },
                );
            }
            let frozen_ms = now_ms.saturating_sub(since_ms);
            if frozen_ms >= cfg.hard_after_ms {
                return decision(
                    GuardAction::Kill,
                    Reason::FrozenTooLong {
                        frozen,
                        frozen_ms,
                        bound_ms: cfg.hard_after_ms,
                    },
                );
            }
            let reason = match order {
                None => Reason::NoOrder,
                Some(o) if o.is_live(now_ms) => Reason::OtherEpoch {
                    frozen,
                    order: o.epoch,
                },
                Some(o) => Reason::Expired {
                    epoch: o.epoch,
                    late_ms: now_ms.saturating_sub(o.deadline_ms),
                },
            };
            decision(GuardAction::Nothing, reason)
        }
    }
}

/// How long the guard may sleep before its next poll: `poll_ms`, but never
/// past a live order's deadline, so the freeze happens at the deadline and
/// not up to a poll interval later.
pub fn wake_in_ms(order: Option<&GuardOrder>, now_ms: u64, poll_ms: u64) -> u64 {
    match order {
        Some(o) if o.is_live(now_ms) => poll_ms.min(o.deadline_ms - now_ms),
        _ => poll_ms,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CFG: GuardConfig = GuardConfig {
        hard_after_ms: 10_000,
    };

    fn order(epoch: u64, deadline_ms: u64) -> GuardOrder {
        GuardOrder {
            epoch,
            deadline_ms,
            hard: false,
        }
    }

    fn hard(epoch: u64) -> GuardOrder {
        GuardOrder {
            epoch,
            deadline_ms: u64::MAX,
            hard: true,
        }
    }

    fn frozen(epoch: Option<u64>, since_ms: u64) -> ServerState {
        ServerState::Frozen { epoch, since_ms }
    }

    fn act(order: Option<&GuardOrder>, server: ServerState, now: u64) -> GuardAction {
        decide(order, server, now, &CFG).action
    }

    #[test]
    fn a_stopped_server_is_left_alone_even_on_a_hard_order() {
        let d = decide(Some(&hard(3)), ServerState::Stopped, 5, &CFG);
        assert_eq!(d.action, GuardAction::Nothing);
        assert_eq!(d.reason, Reason::NotRunning);
        assert_eq!(act(None, ServerState::Stopped, 5), GuardAction::Nothing);
    }

    #[test]
    fn a_hard_order_kills_a_running_or_frozen_server() {
        let d = decide(Some(&hard(3)), ServerState::Running, 5, &CFG);
        assert_eq!(d.action, GuardAction::Kill);
        assert_eq!(d.reason, Reason::HardOrder { epoch: 3 });
        // Not thawed, even when frozen under that very epoch.
        assert_eq!(
            act(Some(&hard(3)), frozen(Some(3), 4), 5),
            GuardAction::Kill
        );
        assert!(d.why().contains("failover"), "{}", d.why());
    }

    #[test]
    fn a_running_server_without_an_order_is_frozen() {
        let d = decide(None, ServerState::Running, 5, &CFG);
        assert_eq!(d.action, GuardAction::Freeze);
        assert_eq!(d.reason, Reason::NoOrder);
        assert_eq!(d.epoch, None);
    }

    #[test]
    fn a_running_server_under_a_live_order_keeps_running() {
        let d = decide(Some(&order(2, 1_000)), ServerState::Running, 400, &CFG);
        assert_eq!(d.action, GuardAction::Nothing);
        assert_eq!(
            d.reason,
            Reason::LeaseLive {
                epoch: 2,
                left_ms: 600
            }
        );
    }

    #[test]
    fn the_freeze_happens_at_the_deadline_itself() {
        assert_eq!(
            act(Some(&order(2, 1_000)), ServerState::Running, 999),
            GuardAction::Nothing
        );
        let d = decide(Some(&order(2, 1_000)), ServerState::Running, 1_000, &CFG);
        assert_eq!(d.action, GuardAction::Freeze);
        assert_eq!(
            d.reason,
            Reason::Expired {
                epoch: 2,
                late_ms: 0
            }
        );
        assert_eq!(d.epoch, Some(2), "the freeze is recorded under epoch 2");
    }

    #[test]
    fn a_lease_back_for_the_same_epoch_thaws() {
        let d = decide(Some(&order(2, 3_000)), frozen(Some(2), 1_000), 2_000, &CFG);
        assert_eq!(d.action, GuardAction::Thaw);
        assert_eq!(
            d.reason,
            Reason::LeaseBack {
                epoch: 2,
                left_ms: 1_000
            }
        );
    }

    #[test]
    fn an_expired_order_of_the_same_epoch_does_not_thaw() {
        let d = decide(Some(&order(2, 1_000)), frozen(Some(2), 1_000), 2_000, &CFG);
        assert_eq!(d.action, GuardAction::Nothing);
        assert_eq!(
            d.reason,
            Reason::Expired {
                epoch: 2,
                late_ms: 1_000
            }
        );
    }

    #[test]
    fn a_live_order_of_another_epoch_does_not_thaw() {
        let d = decide(Some(&order(3, 9_000)), frozen(Some(2), 1_000), 2_000, &CFG);
        assert_eq!(d.action, GuardAction::Nothing);
        assert_eq!(
            d.reason,
            Reason::OtherEpoch {
                frozen: Some(2),
                order: 3
            }
        );
        // ... and the bound still applies.
        assert_eq!(
            act(Some(&order(3, 99_000)), frozen(Some(2), 1_000), 11_000),
            GuardAction::Kill
        );
    }

    #[test]
    fn a_server_frozen_without_an_order_is_never_thawed() {
        for epoch in [0, 1, 7] {
            assert_eq!(
                act(Some(&order(epoch, 9_000)), frozen(None, 1_000), 2_000),
                GuardAction::Nothing
            );
        }
        assert_eq!(
            decide(None, frozen(None, 1_000), 2_000, &CFG).reason,
            Reason::NoOrder
        );
    }

    #[test]
    fn a_freeze_that_lasts_the_bound_becomes_a_kill() {
        let o = order(2, 1_000);
        assert_eq!(
            act(Some(&o), frozen(Some(2), 1_000), 10_999),
            GuardAction::Nothing
        );
        let d = decide(Some(&o), frozen(Some(2), 1_000), 11_000, &CFG);
        assert_eq!(d.action, GuardAction::Kill);
        assert_eq!(
            d.reason,
            Reason::FrozenTooLong {
                frozen: Some(2),
                frozen_ms: 10_000,
                bound_ms: 10_000
            }
        );
        assert_eq!(act(None, frozen(None, 0), 10_000), GuardAction::Kill);
    }

    #[test]
    fn a_lease_back_wins_over_the_bound() {
        // The renewal arrived: the freeze was a long flap, but a thaw costs
        // nothing and a kill costs crash recovery.
        assert_eq!(
            act(Some(&order(2, 30_000)), frozen(Some(2), 0), 20_000),
            GuardAction::Thaw
        );
    }

    #[test]
    fn every_reason_reads_as_words() {
        let reasons = [
            Reason::NotRunning,
            Reason::HardOrder { epoch: 1 },
            Reason::LeaseLive {
                epoch: 1,
                left_ms: 2,
            },
            Reason::NoOrder,
            Reason::Expired {
                epoch: 1,
                late_ms: 2,
            },
            Reason::LeaseBack {
                epoch: 1,
                left_ms: 2,
            },
            Reason::OtherEpoch {
                frozen: None,
                order: 1,
            },
            Reason::FrozenTooLong {
                frozen: Some(1),
                frozen_ms: 2,
                bound_ms: 3,
            },
        ];
        for r in reasons {
            let text = r.to_string();
            assert!(text.len() > 10 && !text.contains("{"), "{text}");
        }
    }

    #[test]
    fn the_guard_wakes_at_the_deadline() {
        assert_eq!(wake_in_ms(Some(&order(1, 1_005)), 1_000, 20), 5);
        assert_eq!(wake_in_ms(Some(&order(1, 9_000)), 1_000, 20), 20);
        assert_eq!(wake_in_ms(Some(&order(1, 900)), 1_000, 20), 20);
        assert_eq!(wake_in_ms(None, 1_000, 20), 20);
        assert_eq!(wake_in_ms(Some(&hard(1)), 1_000, 20), 20);
    }

    /// What happens between two polls of the guard.
    #[derive(Clone, Debug)]
    enum Event {
        /// The witness writes an order (deadline relative to now; may be
        /// in the past: a slow writer).
        Order {
            epoch: u64,
            deadline_in: i64,
            hard: bool,
        },
        /// The order file vanishes or turns out to be from another boot.
        NoOrder,
        /// Time passes.
        Wait(u64),
        /// Somebody (the agent restarting it in place) starts a stopped
        /// server.
        Start,
        /// Somebody resumes a frozen server behind the guard's back.
        ExternalThaw,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (1u64..4, -300i64..1_500, prop::bool::weighted(0.1))
                .prop_map(|(epoch, deadline_in, hard)| Event::Order { epoch, deadline_in, hard }),
            1 => Just(Event::NoOrder),
            6 => (0u64..800).prop_map(Event::Wait),
            1 => Just(Event::Start),
            1 => Just(Event::ExternalThaw),
        ]
    }

    /// The world as the guard's runtime sees it, with the guard's actions
    /// applied as the runtime applies them.
    struct World {
        now: u64,
        order: Option<GuardOrder>,
        server: ServerState,
    }

    impl World {
        fn apply(&mut self, event: &Event) {
            match *event {
                Event::Order {
                    epoch,
                    deadline_in,
                    hard,
                } => {
                    self.order = Some(GuardOrder {
                        epoch,
                        deadline_ms: self.now.saturating_add_signed(deadline_in),
                        hard,
                    })
                }
                Event::NoOrder => self.order = None,
                Event::Wait(ms) => self.now += ms,
                Event::Start => {
                    if self.server == ServerState::Stopped {
                        self.server = ServerState::Running;
                    }
                }
                Event::ExternalThaw => {
                    if matches!(self.server, ServerState::Frozen { .. }) {
                        // The runtime sees a process that is not stopped:
                        // running, whatever it froze before.
                        self.server = ServerState::Running;
                    }
                }
            }
        }

        /// One poll: decide, check the decision, act.
        fn poll(&mut self) -> Result<(), TestCaseError> {
            let before = self.server;
            let d = decide(self.order.as_ref(), before, self.now, &CFG);
            let live = self.order.as_ref().filter(|o| o.is_live(self.now));
            if d.action == GuardAction::Thaw {
                let o = live.ok_or_else(|| {
                    TestCaseError::fail(format!("thawed without a live order: {d:?}"))
                })?;
                prop_assert!(!o.hard, "thawed on a hard order");
                prop_assert!(
                    matches!(before, ServerState::Frozen { epoch: Some(e), .. } if e == o.epoch),
                    "thawed {:?} under an order of epoch {}",
                    before,
                    o.epoch
                );
            }
            if self.order.is_some_and(|o| o.hard) && before != ServerState::Stopped {
                prop_assert_eq!(d.action, GuardAction::Kill, "a hard order must kill");
            }
            self.server = match d.action {
                GuardAction::Nothing => before,
                GuardAction::Freeze => ServerState::Frozen {
                    epoch: d.epoch,
                    since_ms: self.now,
                },
                GuardAction::Thaw => ServerState::Running,
                GuardAction::Kill => ServerState::Stopped,
            };
            // The safety property: after each poll, no server that may
            // write unless the latest order is live.
            if live.is_none() {
                prop_assert_ne!(
                    self.server,
                    ServerState::Running,
                    "running at {} without a live lease (order {:?})",
                    self.now,
                    self.order
                );
            }
            // The liveness bound: no freeze outlasts its bound unthawed.
            if let ServerState::Frozen { since_ms, .. } = self.server {
                prop_assert!(self.now - since_ms < CFG.hard_after_ms);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Over any sequence of orders, waits, restarts and outside
        /// interference: after every poll, the server is not running
        /// unless the latest order is live; a thaw happens only under a
        /// live, non-hard order of the epoch the server was frozen under;
        /// a hard order always kills; no freeze outlasts its bound.
        #[test]
        fn never_writable_without_a_live_order(
            start_running in any::<bool>(),
            events in prop::collection::vec(event(), 1..80),
        ) {
            let mut world = World {
                now: 1_000_000,
                order: None,
                server: if start_running { ServerState::Running } else { ServerState::Stopped },
            };
            world.poll()?;
            for e in &events {
                world.apply(e);
                world.poll()?;
            }
        }

        /// Polling at the interval [`wake_in_ms`] gives never skips a
        /// deadline: a running server is frozen at the deadline's instant.
        #[test]
        fn polls_land_on_the_deadline(
            now in 0u64..1_000_000,
            deadline_in in 0u64..5_000,
            poll in 1u64..50,
        ) {
            let o = order(1, now + deadline_in);
            let mut t = now;
            let mut server = ServerState::Running;
            while t <= o.deadline_ms {
                let d = decide(Some(&o), server, t, &CFG);
                if d.action == GuardAction::Freeze {
                    server = ServerState::Frozen { epoch: d.epoch, since_ms: t };
                    break;
                }
                t += wake_in_ms(Some(&o), t, poll);
            }
            prop_assert_eq!(server, ServerState::Frozen { epoch: Some(1), since_ms: o.deadline_ms });
        }
    }
}
