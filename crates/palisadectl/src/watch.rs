//! `watch`: the witness's live event stream, one line per event, until the
//! operator stops it (Ctrl-C, exit 0) or the stream ends (exit 3).
//!
//! `--timeout` bounds every wait: the connect, the stream's first answer,
//! and the witness's silence while it streams (see
//! [`Target::connect_stream`]): a frozen witness, or a port that accepts
//! but never speaks, ends the watch with exit 3 instead of hanging it.

use palisade_api::v1::{Event, WatchRequest};
use tokio::signal::unix::{signal, SignalKind};

use crate::client::{Failure, Target};
use crate::json::{self, EventJson};
use crate::output::Out;
use crate::rfc3339::rfc3339_millis;
use crate::table::{cell, clip, MAX_LINE};

/// Width of the KIND column: `operation_finished`, the longest kind.
const KIND_WIDTH: usize = 18;

/// Subscribes and prints events until Ctrl-C or the end of the stream.
pub async fn watch(target: &Target, out: &Out) -> Result<(), Failure> {
    // Installed before subscribing, so a Ctrl-C at any point after the
    // first event is ours to handle, not the default "die with SIGINT".
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Output(format!("cannot handle Ctrl-C: {e}")))?;
    // The stream is meant to last: no timeout on it as a whole, but on
    // its start and on the connection's silence.
    let mut client = target.connect_stream().await?;
    let started = tokio::time::timeout(target.timeout(), client.watch(WatchRequest {})).await;
    let mut stream = match started {
        Ok(r) => r.map_err(|s| target.rpc_failure("watch", &s))?.into_inner(),
        Err(_) => {
            return Err(Failure::Unreachable(format!(
                "watch request to {} failed: no answer within {} ms",
                target.shown(),
                target.timeout().as_millis()
            )))
        }
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            message = stream.message() => match message {
                Ok(Some(event)) => out.emit(&render(out, &event))?,
                Ok(None) => {
                    return Err(Failure::Unreachable(format!(
                        "watch stream from {} ended: the witness closed it",
                        target.shown()
                    )))
                }
                Err(status) => {
                    // A status the witness sent is its reason for ending
                    // the stream ("witness 2 is shutting down"); a
                    // transport failure is described as for any request.
                    let why = if crate::client::is_transport_failure(&status) {
                        target.rpc_failure("watch", &status).message().to_owned()
                    } else {
                        let text = status.message().split_whitespace().collect::<Vec<_>>();
                        format!("{} ({:?})", text.join(" "), status.code())
                    };
                    return Err(Failure::Unreachable(format!(
                        "watch stream from {} ended: {why}",
                        target.shown(),
                    )))
                }
            },
        }
    }
}

fn render(out: &Out, e: &Event) -> String {
    if out.json() {
        json::to_json_line(&EventJson::from(e))
    } else {
        event_line(e)
    }
}

/// `TIME  KIND  epoch N  text`; `-` for no epoch; cut at [`MAX_LINE`].
pub fn event_line(e: &Event) -> String {
    let epoch = if e.epoch == 0 {
        "-".to_owned()
    } else {
        format!("epoch {}", e.epoch)
    };
    let line = format!(
        "{}  {:<KIND_WIDTH$}  {epoch:<8}  {}",
        rfc3339_millis(e.at_ms),
        cell(&e.kind),
        cell(&e.text)
    );
    clip(line.trim_end(), MAX_LINE) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, epoch: u64, text: &str) -> Event {
        Event {
            at_ms: 1_700_000_000_123,
            kind: kind.to_owned(),
            epoch,
            text: text.to_owned(),
        }
    }

    #[test]
    fn event_lines_have_time_kind_epoch_and_text() {
        assert_eq!(
            event_line(&event("step_done", 7, "fenced: stopped (fast) in 210 ms")),
            "2023-11-14T22:13:20.123Z  step_done           epoch 7   fenced: stopped (fast) in 210 ms\n"
        );
        assert_eq!(
            event_line(&event("note", 0, "alice: DR drill\nstarted")),
            "2023-11-14T22:13:20.123Z  note                -         alice: DR drill\\nstarted\n"
        );
        let long = event_line(&event("roles", 3, &"x".repeat(300)));
        assert_eq!(long.trim_end().chars().count(), MAX_LINE);
    }

    #[test]
    fn event_json_nulls_epoch_0() {
        let v: serde_json::Value = serde_json::from_str(&json::to_json_line(&EventJson::from(
            &event("snapshot", 0, "epoch 0, primary a"),
        )))
        .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"at_ms": 1_700_000_000_123_i64, "kind": "snapshot",
                               "epoch": null, "text": "epoch 0, primary a"})
        );
        assert!(
            !json::to_json_line(&EventJson::from(&event("leader", 2, "x")))
                .trim_end()
                .contains('\n')
        );
    }
}
