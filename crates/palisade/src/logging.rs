//! The witness's logs: which events are shown, and repeats held back.
//!
//! * **Filter.** `RUST_LOG` when set (non-empty), else the config's
//!   `log.level` (default `info`). openraft's internals are capped at
//!   `warn` unless the filter names openraft itself
//!   ([`filter_directives`]): at `info` openraft narrates every vote and
//!   replication round, which buries palisade's own events.
//! * **Repeats.** A WARN or ERROR identical to one shown (same call site,
//!   span, message and fields, fractional numbers and request numbers aside)
//!   is held back and counted. After [`REPEAT_WINDOW`] one line says how
//!   many were held back (`… (repeated N more times in the last 60 s)`), at
//!   the event's own level; while it keeps repeating, each next count comes
//!   after twice as long, up to [`MAX_REPEAT_WINDOW`]; a window without a
//!   repeat forgets the event, so that it is shown whole when it comes
//!   back. A leader with a peer down otherwise logs five openraft lines
//!   (one at ERROR) per failed append, five times a second, for as long as
//!   the peer is down (docs/operations.md "Logs").
//!
//! The decision is [`Repeats`], pure and tested with explicit times;
//! [`RepeatLayer`] applies it to the live event stream, and a thread of its
//! own writes the summaries (an event emitted from inside a subscriber's
//! callback would be dropped).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// How long an identical WARN or ERROR is held back after it was shown,
/// before the first count.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// The longest wait between two counts of an event that keeps repeating.
pub const MAX_REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// How often the summary thread looks for windows that have ended.
const SWEEP: Duration = Duration::from_secs(1);

/// Most distinct events remembered at once; beyond, new ones are shown and
/// not remembered (a flood of distinct lines is not a repeat).
const MAX_REMEMBERED: usize = 4096;

/// How much of the repeated event a summary quotes.
const SUMMARY_TEXT: usize = 200;

/// The target of the summary lines (never held back themselves).
const SUMMARY_TARGET: &str = "palisade::logging";

/// The filter of a witness whose config says `level`: openraft capped at
/// `warn` when `level` sets a global level more verbose than that (`info`,
/// `debug`, `trace`) and names no openraft target of its own. So `info`
/// becomes `info,openraft=warn`; `debug,openraft=debug` shows openraft's
/// debug lines; `warn` and `palisade=debug` are left as they are.
pub fn filter_directives(level: &str) -> String {
    let directives: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let names_openraft = directives.iter().any(|d| {
        let target = d.split(['=', '[']).next().unwrap_or_default();
        target == "openraft" || target.starts_with("openraft::")
    });
    let verbose_default = directives
        .iter()
        .any(|d| matches!(d.to_ascii_lowercase().as_str(), "info" | "debug" | "trace"));
    if verbose_default && !names_openraft {
        format!("{},openraft=warn", directives.join(","))
    } else {
        level.to_owned()
    }
}

/// A log filter and where it comes from, for the error when it is not
/// valid.
pub struct Filter {
    /// The `tracing` filter directives.
    pub directives: String,
    /// `RUST_LOG` or `log.level`.
    pub source: &'static str,
}

/// `RUST_LOG` when set and not blank ("asked for"), as written; else
/// `level` (the config's `log.level`) through [`filter_directives`].
pub fn filter_for(level: &str) -> Filter {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => Filter {
            directives: v,
            source: "RUST_LOG",
        },
        _ => Filter {
            directives: filter_directives(level),
            source: "log.level",
        },
    }
}

/// One held-back event: which, since when, how many.
#[derive(Debug)]
struct Held {
    /// When its current window began (it was shown, or last counted).
    since: Instant,
    /// How long its current window is.
    window: Duration,
    /// How many identical ones were held back in this window.
    repeats: u64,
    level: Level,
    /// `target: message fields`, for the summary.
    text: String,
}

/// A window that ended with repeats: what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The level of the repeated event.
    pub level: Level,
    /// The event: its target, message and fields.
    pub text: String,
    /// How many were held back.
    pub repeats: u64,
    /// Over how long (the window, or less on a final flush).
    pub over: Duration,
}

impl Summary {
    /// The summary line's message: the event cut at 200 characters (it
    /// was shown whole when its window began), and the count.
    pub fn message(&self) -> String {
        let mut text: String = self.text.chars().take(SUMMARY_TEXT).collect();
        if text.len() < self.text.len() {
            text.push('…');
        }
        let times = if self.repeats == 1 { "time" } else { "times" };
        format!(
            "{text} (repeated {} more {times} in the last {} s)",
            self.repeats,
            self.over.as_secs().max(1)
        )
    }
}

/// Which repeated events are held back: pure, time passed in.
#[derive(Debug)]
pub struct Repeats {
    first: Duration,
    max: Duration,
    held: HashMap<String, Held>,
}

impl Repeats {
    /// Holds identical events back: counted first after `first`, then
    /// after twice as long each time, up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Repeats {
            first,
            max,
            held: HashMap::new(),
        }
    }

    /// Whether the event `key` (rendered as `text`), seen at `now`, is
    /// shown: one not held is, a repeat of a held one is counted instead.
    pub fn observe(
        &mut self,
        key: String,
        level: Level,
        text: impl FnOnce() -> String,
        now: Instant,
    ) -> bool {
        if let Some(h) = self.held.get_mut(&key) {
            h.repeats += 1;
            return false;
        }
        if self.held.len() < MAX_REMEMBERED {
            self.held.insert(
                key,
                Held {
                    since: now,
                    window: self.first,
                    repeats: 0,
                    level,
                    text: text(),
                },
            );
        }
        true
    }

    /// Ends the windows that are over at `now` (all of them, and forgets
    /// every event, with `all`: at exit): the counts of those that held
    /// something back, whose next window is twice as long; an event whose
    /// window held nothing back is forgotten.
    pub fn sweep(&mut self, now: Instant, all: bool) -> Vec<Summary> {
        let max = self.max;
        let mut out = Vec::new();
        self.held.retain(|_, h| {
            let over = now.saturating_duration_since(h.since);
            if !all && over < h.window {
                return true;
            }
            if h.repeats == 0 {
                return false;
            }
            out.push(Summary {
                level: h.level,
                text: h.text.clone(),
                repeats: h.repeats,
                over,
            });
            h.since = now;
            h.window = (h.window * 2).min(max);
            h.repeats = 0;
            !all
        });
        out.sort_by(|a, b| a.text.cmp(&b.text));
        out
    }
}

/// What makes two events identical: the call site, the span they are in,
/// the message and the fields, with every fractional number (`199.99911`)
/// read as one: openraft's backoff line carries the interval it measured,
/// different each time. Integers (ids, ports, counts) keep events apart.
fn event_key(callsite: impl std::fmt::Debug, span: u64, rendered: &str) -> String {
    let mut key = format!("{callsite:?}|{span}|");
    let mut chars = rendered.chars().peekable();
    let mut digits = String::new();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            key.push(c);
            continue;
        }
        digits.clear();
        digits.push(c);
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        let mut after = chars.clone();
        if after.next() == Some('.') && after.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            key.push_str("#.#");
        } else {
            key.push_str(&digits);
        }
    }
    key
}

/// Fields that number requests one by one: left out of an event's
/// identity, or no two of openraft's "update progress error
/// request_id=AppendEntries(412)" lines would ever be identical.
const SEQUENCE_FIELDS: [&str; 1] = ["request_id"];

/// Renders an event's fields: `message` first, then `name=value`; the
/// identity leaves [`SEQUENCE_FIELDS`] out.
#[derive(Default)]
struct Render {
    message: String,
    fields: String,
    identity: String,
}

impl Render {
    fn field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if name == "message" {
            let _ = self.message.write_fmt(value);
            return;
        }
        let start = self.fields.len();
        let _ = write!(self.fields, " {name}=");
        let _ = self.fields.write_fmt(value);
        if !SEQUENCE_FIELDS.contains(&name) {
            let rendered = self.fields[start..].to_owned();
            self.identity.push_str(&rendered);
        }
    }
}

impl Visit for Render {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field.name(), format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field.name(), format_args!("{value}"));
        } else {
            self.field(field.name(), format_args!("{value:?}"));
        }
    }
}

/// Holds back repeated WARN and ERROR events (see [`Repeats`]); cheap to
/// clone, all clones share one state.
#[derive(Clone)]
pub struct RepeatLayer {
    state: Arc<Mutex<Repeats>>,
}

impl RepeatLayer {
    /// A layer holding identical events back (see [`Repeats::new`]).
    pub fn new(first: Duration, max: Duration) -> Self {
        RepeatLayer {
            state: Arc::new(Mutex::new(Repeats::new(first, max))),
        }
    }

    /// Writes the summaries of the windows that ended (all of them with
    /// `all`: at exit, so that no count is lost) as events of their own.
    pub fn flush(&self, all: bool) {
        let summaries = self
            .state
            .lock()
            .map(|mut s| s.sweep(Instant::now(), all))
            .unwrap_or_default();
        for s in summaries {
            let message = s.message();
            match s.level {
                Level::ERROR => {
                    tracing::error!(target: SUMMARY_TARGET, repeated = s.repeats, "{message}")
                }
                Level::WARN => {
                    tracing::warn!(target: SUMMARY_TARGET, repeated = s.repeats, "{message}")
                }
                _ => tracing::info!(target: SUMMARY_TARGET, repeated = s.repeats, "{message}"),
            }
        }
    }

    /// Starts the thread that writes the summaries as windows end.
    pub fn spawn_summaries(&self) {
        let layer = self.clone();
        let spawned = std::thread::Builder::new()
            .name("log-repeats".into())
            .spawn(move || loop {
                std::thread::sleep(SWEEP);
                layer.flush(false);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the log summary thread: repeated lines are held back without a count");
        }
    }
}

impl<S> Layer<S> for RepeatLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || meta.target() == SUMMARY_TARGET {
            return true;
        }
        let mut r = Render::default();
        event.record(&mut r);
        let span = ctx
            .event_span(event)
            .map(|s| s.id().into_u64())
            .unwrap_or(0);
        let key = event_key(
            meta.callsite(),
            span,
            &format!("{}{}", r.message, r.identity),
        );
        let text = || format!("{}: {}{}", meta.target(), r.message, r.fields);
        match self.state.lock() {
            Ok(mut s) => s.observe(key, *meta.level(), text, Instant::now()),
            Err(_) => true,
        }
    }
}

/// What the binary keeps of its logging: the repeat layer, to flush.
pub struct LogHandle {
    repeats: RepeatLayer,
}

impl LogHandle {
    /// Writes every pending repeat count now (before the process exits).
    pub fn flush(&self) {
        self.repeats.flush(true);
    }
}

/// Installs the process's logging: `filter` (see [`filter_for`]), text or
/// JSON lines on stderr (coloured on a terminal), repeats held back.
pub fn init(json: bool, filter: &Filter) -> anyhow::Result<LogHandle> {
    use std::io::IsTerminal;
    let Filter { directives, source } = filter;
    let filter = EnvFilter::try_new(directives)
        .map_err(|e| anyhow::anyhow!("{source}: {directives:?} is not a valid log filter: {e}"))?;
    let repeats = RepeatLayer::new(REPEAT_WINDOW, MAX_REPEAT_WINDOW);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(repeats.clone());
    if json {
        registry.with(fmt.json()).try_init()?;
    } else {
        registry.with(fmt).try_init()?;
    }
    repeats.spawn_summaries();
    Ok(LogHandle { repeats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_is_capped_at_warn_unless_named() {
        assert_eq!(filter_directives("info"), "info,openraft=warn");
        assert_eq!(filter_directives("debug"), "debug,openraft=warn");
        assert_eq!(
            filter_directives("info, palisade=debug"),
            "info,palisade=debug,openraft=warn"
        );
        for asked in [
            "debug,openraft=debug",
            "info,openraft::replication=info",
            "info,openraft[vote]=trace",
        ] {
            assert_eq!(filter_directives(asked), asked);
        }
        for quiet in ["warn", "error", "off", "palisade=debug"] {
            assert_eq!(filter_directives(quiet), quiet, "nothing to cap");
        }
    }

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn repeats_are_held_back_and_counted_ever_less_often_while_they_last() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut r = Repeats::new(MIN, MAX);
        let text = || "openraft: RPCError err=unreachable".to_string();
        assert!(
            r.observe("a".into(), Level::ERROR, text, s(0)),
            "the first is shown"
        );
        let repeat_until = |r: &mut Repeats, from: u64, to: u64| {
            for ms in (from * 1000..to * 1000).step_by(200).skip(1) {
                let at = t0 + Duration::from_millis(ms);
                assert!(!r.observe("a".into(), Level::ERROR, text, at), "held back");
            }
        };
        repeat_until(&mut r, 0, 60);
        assert!(
            r.observe("b".into(), Level::WARN, || "other".into(), s(10)),
            "another event is shown"
        );
        assert!(r.sweep(s(59), false).is_empty(), "no window has ended");
        let ended = r.sweep(s(60), false);
        assert_eq!(
            ended,
            vec![Summary {
                level: Level::ERROR,
                text: text(),
                repeats: 299,
                over: MIN,
            }]
        );
        assert_eq!(
            ended[0].message(),
            "openraft: RPCError err=unreachable (repeated 299 more times in the last 60 s)"
        );
        assert!(
            r.sweep(s(70), false).is_empty(),
            "'b' was never repeated: no count, and it is forgotten"
        );
        assert!(r.observe("b".into(), Level::WARN, || "other".into(), s(71)));

        // Still repeating: counted after 120 s, 240 s, 480 s, then every 600 s.
        let mut at = 60;
        for window in [120, 240, 480, 600, 600] {
            repeat_until(&mut r, at, at + window);
            assert!(r
                .sweep(s(at + window - 1), false)
                .iter()
                .all(|x| x.text != text()));
            let ended = r.sweep(s(at + window), false);
            let a = ended.iter().find(|x| x.text == text()).expect("a's count");
            assert_eq!(a.over, Duration::from_secs(window));
            at += window;
        }

        // It stops: one more window without it, and it is forgotten, so
        // that it is shown whole when it comes back.
        assert!(r.sweep(s(at + 600), false).is_empty());
        assert!(r.observe("a".into(), Level::ERROR, text, s(at + 601)));
        assert!(!r.observe("a".into(), Level::ERROR, text, s(at + 602)));
        let last = r.sweep(s(at + 603), true);
        assert_eq!(last.len(), 1, "a final flush reports what is pending");
        assert_eq!((last[0].repeats, last[0].over), (1, Duration::from_secs(2)));
        assert!(r.held.is_empty(), "and forgets everything");
    }

    #[test]
    fn a_summary_quotes_the_start_of_a_long_event() {
        let long = Summary {
            level: Level::WARN,
            text: "x".repeat(500),
            repeats: 1,
            over: MIN,
        };
        assert_eq!(
            long.message(),
            format!(
                "{}… (repeated 1 more time in the last 60 s)",
                "x".repeat(200)
            )
        );
    }

    #[test]
    fn fractional_numbers_do_not_make_an_event_new_and_integers_do() {
        let key = |text: &str| event_key("site", 7, text);
        assert_eq!(
            key("backoff mode: drain events interval=199.99911ms"),
            key("backoff mode: drain events interval=199.998614ms")
        );
        assert_ne!(
            key("error replication to target=2"),
            key("error replication to target=3")
        );
        assert_eq!(key("v1.2 at 3.5s"), "\"site\"|7|v#.# at #.#s");
        assert_eq!(key("end 42."), "\"site\"|7|end 42.");
        assert_ne!(
            event_key("site", 7, "x"),
            event_key("site", 8, "x"),
            "another span"
        );
    }

    #[test]
    fn a_filter_that_does_not_parse_is_refused_naming_its_source() {
        let bad = Filter {
            directives: "info,[".into(),
            source: "RUST_LOG",
        };
        let e = init(false, &bad).err().expect("refused");
        assert!(
            e.to_string()
                .starts_with("RUST_LOG: \"info,[\" is not a valid log filter: "),
            "{e}"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let now = Instant::now();
        let mut r = Repeats::new(MIN, MAX);
        for i in 0..MAX_REMEMBERED + 10 {
            assert!(r.observe(i.to_string(), Level::WARN, String::new, now));
        }
        assert_eq!(r.held.len(), MAX_REMEMBERED);
        assert!(r.observe("beyond".into(), Level::WARN, String::new, now));
        assert!(
            r.observe("beyond".into(), Level::WARN, String::new, now),
            "not remembered: shown"
        );
    }

    /// A writer into a shared buffer, for the layer test.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_layer_shows_one_line_and_a_count() {
        let buf = Buffer::default();
        let out = buf.clone();
        let repeats = RepeatLayer::new(MIN, MAX);
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new(filter_directives("info")))
            .with(repeats.clone())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || out.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::error!(target: "openraft::replication", err = "unreachable", "RPCError");
                tracing::warn!(peer = 3, "peer down");
                tracing::info!(peer = 3, "info lines are never held back");
            }
            for i in 0..5 {
                tracing::warn!(request_id = i, "update progress error");
            }
            tracing::warn!(peer = 2, "peer down");
            tracing::info!(target: "openraft::engine", "internals at info are filtered out");
            repeats.flush(true);
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf8");
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(count("RPCError"), 2, "{text}");
        assert_eq!(count("repeated 4 more times"), 3, "{text}");
        assert_eq!(
            count("peer down"),
            3,
            "peer 3 once, its count, peer 2 once: {text}"
        );
        assert_eq!(count("never held back"), 5, "{text}");
        assert_eq!(
            count("update progress error"),
            2,
            "a request number makes no event new: {text}"
        );
        assert_eq!(count("internals"), 0, "{text}");
        assert!(
            text.lines().any(|l| l.contains("ERROR")
                && l.contains(
                    "openraft::replication: RPCError err=\"unreachable\" (repeated 4 more times"
                )),
            "{text}"
        );
    }
}
