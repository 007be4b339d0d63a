//! The console's charts: replication lag and probe latency, per witness and
//! database, over the last hour. An in-memory ring buffer (lost on
//! restart, by design: the long view is Prometheus's), filled from the
//! status the console refreshes (each witness's latest probes, as its
//! observer reports them), drawn as small inline SVG with a table of the
//! same numbers beside it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use palisade_api::v1::StatusReply;

use super::render::esc;

/// How far back the charts reach.
pub const WINDOW_MS: i64 = 3_600_000;
/// At most one sample per series this often.
pub const SAMPLE_EVERY_MS: i64 = 5_000;
/// Samples kept per series: one hour of them.
const CAPACITY: usize = (WINDOW_MS / SAMPLE_EVERY_MS) as usize;

/// One probe of one database by one witness.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// When it was recorded, Unix ms (this witness's clock).
    at_ms: i64,
    /// The standby's replay lag in seconds; `None` when not reported
    /// (a primary, or a standby not probed).
    lag_s: Option<f64>,
    /// The probe's round trip; `None` when the database did not answer.
    latency_ms: Option<u64>,
}

/// The ring buffers, one per (witness id, database site).
#[derive(Debug, Default)]
pub struct Charts {
    series: BTreeMap<(u64, String), VecDeque<Sample>>,
    last_ms: Option<i64>,
}

impl Charts {
    /// Records every witness's latest probe of every database in `status`,
    /// at `now_ms`, unless the last sample is younger than
    /// [`SAMPLE_EVERY_MS`]; drops what is older than [`WINDOW_MS`].
    pub fn record(&mut self, now_ms: i64, status: &StatusReply) {
        if self
            .last_ms
            .is_some_and(|last| now_ms - last < SAMPLE_EVERY_MS)
        {
            return;
        }
        self.last_ms = Some(now_ms);
        for n in &status.nodes {
            for d in &n.databases {
                let q = self.series.entry((n.id, d.site.clone())).or_default();
                q.push_back(Sample {
                    at_ms: now_ms,
                    lag_s: d.replay_lag_seconds,
                    latency_ms: d.reachable.then_some(d.latency_ms),
                });
                while q.len() > CAPACITY {
                    q.pop_front();
                }
            }
        }
        for q in self.series.values_mut() {
            while q.front().is_some_and(|s| now_ms - s.at_ms > WINDOW_MS) {
                q.pop_front();
            }
        }
        self.series.retain(|_, q| !q.is_empty());
    }

    /// The two charts and their text equivalent, as of `now_ms`.
    pub fn html(&self, now_ms: i64) -> String {
        if self.series.is_empty() {
            return "<p>No probes recorded yet: samples are taken every 5 s while the witness runs.</p>"
                .into();
        }
        let mut out = String::new();
        out.push_str(&self.chart(now_ms, "Replication lag (s)", "lag", |s| s.lag_s));
        out.push_str(&self.chart(now_ms, "Probe latency (ms)", "latency", |s| {
            s.latency_ms.map(|v| v as f64)
        }));
        out.push_str(&self.table());
        out
    }

    fn chart(
        &self,
        now_ms: i64,
        title: &str,
        id: &str,
        value: fn(&Sample) -> Option<f64>,
    ) -> String {
        const W: f64 = 600.0;
        const H: f64 = 140.0;
        let max = self
            .series
            .values()
            .flatten()
            .filter_map(value)
            .fold(0.0_f64, f64::max)
            .max(if id == "lag" { 1.0 } else { 10.0 });
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<figure class=\"chart\"><figcaption id=\"chart-{id}\">{} over the last hour (max {})</figcaption>\
             <svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-{id}\" preserveAspectRatio=\"none\">\
             <line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\"/>",
            esc(title),
            num(max),
        );
        for (i, ((witness, db), q)) in self.series.iter().enumerate() {
            let points: Vec<String> = q
                .iter()
                .filter_map(|s| {
                    let v = value(s)?;
                    let x = W - (now_ms - s.at_ms) as f64 / WINDOW_MS as f64 * W;
                    let y = H - v / max * (H - 4.0);
                    Some(format!("{x:.1},{y:.1}"))
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            let _ = write!(
                svg,
                "<polyline class=\"series s{}\" points=\"{}\"><title>witness {witness} → db {}</title></polyline>",
                i % 6,
                points.join(" "),
                esc(db)
            );
        }
        svg.push_str("</svg></figure>");
        svg
    }

    /// The text equivalent: the latest and the highest value of each series.
    fn table(&self) -> String {
        let mut t = String::from(
            "<table class=\"chart-table\"><caption>Chart values (last hour)</caption>\
             <thead><tr><th scope=\"col\">Line</th><th scope=\"col\">Witness → database</th>\
             <th scope=\"col\">Lag now</th><th scope=\"col\">Lag max</th>\
             <th scope=\"col\">Latency now</th><th scope=\"col\">Latency max</th></tr></thead><tbody>",
        );
        for (i, ((witness, db), q)) in self.series.iter().enumerate() {
            let last = q.back();
            let lag_max = q
                .iter()
                .filter_map(|s| s.lag_s)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            let lat_max = q.iter().filter_map(|s| s.latency_ms).max();
            let _ = write!(
                t,
                "<tr><td><span class=\"swatch s{}\" aria-hidden=\"true\"></span> line {}</td><td>witness {witness} → db {}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i % 6,
                i + 1,
                esc(db),
                last.and_then(|s| s.lag_s).map(|v| format!("{} s", num(v))).unwrap_or_else(|| "—".into()),
                lag_max.map(|v| format!("{} s", num(v))).unwrap_or_else(|| "—".into()),
                match last {
                    Some(Sample { latency_ms: Some(v), .. }) => format!("{v} ms"),
                    Some(_) => "no answer".into(),
                    None => "—".into(),
                },
                lat_max.map(|v| format!("{v} ms")).unwrap_or_else(|| "—".into()),
            );
        }
        t.push_str("</tbody></table>");
        t
    }
}

/// A number with at most two decimals.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_api::v1::{DatabaseView, NodeStatus};

    fn status(lag: f64) -> StatusReply {
        StatusReply {
            nodes: vec![NodeStatus {
                id: 1,
                databases: vec![DatabaseView {
                    site: "b".into(),
                    reachable: true,
                    replay_lag_seconds: Some(lag),
                    latency_ms: 3,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn samples_are_spaced_and_an_hour_old_ones_dropped() {
        let mut c = Charts::default();
        c.record(0, &status(1.0));
        c.record(1_000, &status(2.0));
        assert_eq!(
            c.series[&(1u64, "b".to_string())].len(),
            1,
            "too soon for a second sample"
        );
        c.record(SAMPLE_EVERY_MS, &status(2.0));
        assert_eq!(c.series[&(1u64, "b".to_string())].len(), 2);
        c.record(WINDOW_MS + SAMPLE_EVERY_MS + 1, &status(3.0));
        let q = &c.series[&(1u64, "b".to_string())];
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].lag_s, Some(3.0));
    }

    #[test]
    fn the_charts_carry_a_text_equivalent() {
        let mut c = Charts::default();
        c.record(0, &status(1.5));
        let html = c.html(10);
        assert!(html.contains("<polyline"), "{html}");
        assert!(html.contains("witness 1 → db b"), "{html}");
        assert!(html.contains("1.5 s"), "{html}");
        assert!(html.contains("3 ms"), "{html}");
    }
}
