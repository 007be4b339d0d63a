//! `--output table`: padded columns for people.

use palisade_api::v1::{AnnotateReply, JournalReply, Role, StatusReply};

use crate::json::role_name;
use crate::rfc3339::rfc3339_millis;

/// Space between table columns.
const GAP: &str = "  ";

/// Shown in a table cell when a value is unset or empty.
const NONE: &str = "-";

/// `status` for people: a header line, the node table and, when the leader
/// reported it, the replication table.
pub fn status_table(r: &StatusReply) -> String {
    let cluster = if r.cluster_name.is_empty() {
        "(unnamed)"
    } else {
        &r.cluster_name
    };
    let leader = match r.leader_id {
        Some(id) => format!("leader {id}"),
        None => "leader: unknown".to_owned(),
    };
    let mut out = format!(
        "cluster {} — answered by node {}, {leader} (term {})\n\n",
        cell(cluster),
        r.node_id,
        r.term
    );

    // The NOTE column only earns its width when some node has something to say.
    let with_note = r.nodes.iter().any(|n| !n.error.is_empty());
    let mut headers = vec![
        "ID",
        "SITE",
        "ROLE",
        "TERM",
        "LEADER",
        "LAST LOG",
        "APPLIED",
        "CONTROL ADDR",
    ];
    if with_note {
        headers.push("NOTE");
    }
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            let unreachable = Role::try_from(n.role) == Ok(Role::Unreachable);
            let mut row = vec![
                n.id.to_string(),
                text_or_none(&n.site),
                role_name(n.role).to_owned(),
                // An unreachable node's term is a zero filler, not an observation.
                if unreachable {
                    NONE.to_owned()
                } else {
                    n.term.to_string()
                },
                opt(n.leader_id),
                opt(n.last_log_index),
                opt(n.last_applied_index),
                text_or_none(&n.control_addr),
            ];
            if with_note {
                row.push(cell(&n.error));
            }
            row
        })
        .collect();
    out.push_str(&render_table(&headers, &rows));

    if !r.replication.is_empty() {
        out.push_str("\nreplication (leader's view)\n");
        let rows: Vec<Vec<String>> = r
            .replication
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    opt(p.matched_index),
                    p.lag_entries.to_string(),
                    match p.last_contact_ms {
                        Some(ms) => format!("{ms} ms ago"),
                        None => "never".to_owned(),
                    },
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["PEER", "MATCHED", "LAG", "LAST CONTACT"],
            &rows,
        ));
    }
    out
}

/// `annotate` for people.
pub fn annotate_text(r: &AnnotateReply) -> String {
    format!(
        "noted at log index {} (leader {})\n",
        r.log_index, r.leader_id
    )
}

/// `journal` for people: one row per note, oldest first.
pub fn journal_table(r: &JournalReply) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.log_index.to_string(),
                rfc3339_millis(e.at_unix_ms),
                cell(&e.author),
                cell(&e.text),
            ]
        })
        .collect();
    render_table(&["INDEX", "WHEN", "AUTHOR", "TEXT"], &rows)
}

/// Left-aligned columns padded to the widest cell, two spaces apart. Lines
/// carry no trailing spaces, so the last column is never padded.
pub fn render_table<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h.as_ref())).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(c));
        }
    }
    let header: Vec<&str> = headers.iter().map(AsRef::as_ref).collect();
    let mut out = String::new();
    let body = rows.iter().map(|r| r.iter().map(String::as_str).collect());
    for line in std::iter::once(header).chain(body) {
        let mut text = String::new();
        for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str(GAP);
            }
            text.push_str(c);
            text.extend(std::iter::repeat_n(' ', w.saturating_sub(width(c))));
        }
        out.push_str(text.trim_end_matches(' '));
        out.push('\n');
    }
    out
}

/// Display width, counted in chars: exact for the ASCII we mostly show and
/// close enough for the rest without pulling in a unicode-width crate.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// A server-supplied string made safe for one table cell: control characters
/// (a newline in a note, say) would break the row, so they are escaped.
fn cell(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A cell for a string that may be empty.
fn text_or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        cell(s)
    }
}

/// A cell for an optional number.
fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| NONE.to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn status_table_has_header_aligned_columns_and_replication() {
        let expected = "\
cluster palisade-local — answered by node 2, leader 1 (term 5)

ID  SITE    ROLE         TERM  LEADER  LAST LOG  APPLIED  CONTROL ADDR    NOTE
1   a       leader       5     1       12        12       127.0.0.1:7401
2   b       follower     5     1       12        12       127.0.0.1:7402
3   site-c  unreachable  -     -       -         -        127.0.0.1:7403  connection refused

replication (leader's view)
PEER  MATCHED  LAG  LAST CONTACT
2     12       0    42 ms ago
3     -        12   never
";
        let got = status_table(&fixtures::status());
        assert_eq!(got, expected, "got:\n{got}");

        // Every value starts in the column its header starts in.
        let lines: Vec<&str> = got.lines().collect();
        let header = lines[2];
        for (name, value_row, value) in [
            ("ROLE", 5, "unreachable"),
            ("CONTROL ADDR", 3, "127.0.0.1:7401"),
            ("NOTE", 5, "connection refused"),
        ] {
            assert_eq!(header.find(name), lines[value_row].find(value), "{name}");
        }
    }

    #[test]
    fn status_table_without_leader_errors_or_replication() {
        let mut r = fixtures::status();
        r.leader_id = None;
        r.replication.clear();
        r.nodes.truncate(1);
        r.nodes[0].role = Role::Candidate as i32;
        let got = status_table(&r);
        assert_eq!(
            got,
            "\
cluster palisade-local — answered by node 2, leader: unknown (term 5)

ID  SITE  ROLE       TERM  LEADER  LAST LOG  APPLIED  CONTROL ADDR
1   a     candidate  5     1       12        12       127.0.0.1:7401
"
        );
    }

    #[test]
    fn annotate_and_journal_render() {
        let a = AnnotateReply {
            log_index: 17,
            leader_id: 1,
        };
        assert_eq!(annotate_text(&a), "noted at log index 17 (leader 1)\n");
        assert_eq!(
            journal_table(&fixtures::journal()),
            "\
INDEX  WHEN                      AUTHOR  TEXT
9      2023-11-14T22:13:20.123Z  alice   DR drill:\\ncheckpoint taken
14     2023-11-14T22:14:20.000Z  bob     done
"
        );
    }

    #[test]
    fn empty_journal_is_just_the_header() {
        assert_eq!(
            journal_table(&JournalReply::default()),
            "INDEX  WHEN  AUTHOR  TEXT\n"
        );
    }
}
