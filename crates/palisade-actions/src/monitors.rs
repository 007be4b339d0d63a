//! Editing one `<property name="…" value="…"/>` of a Spring-style XML file,
//! first of all `monitorsEnabled` in the app's `threatconnect.xml`.
//!
//! The HA/DR guide requires exactly one application server with
//! `<property name="monitorsEnabled" value="true"/>`, or both run the jobs
//! and write duplicate data. Each site agent reconciles its own app's file to
//! the desired value held in the replicated state.
//!
//! The file is parsed with a real XML parser (quick-xml), so a commented-out
//! decoy, a CDATA section or a `value` attribute of another element is never
//! mistaken for the property; but it is *not* re-serialised: we take the byte
//! span of the `value` attribute from the parse and splice the new value in,
//! so every other byte — comments, CRLF line ends, odd indentation, attribute
//! order and quote style — stays exactly as the operator left it. The write
//! goes through [`crate::atomic_file`] (lock, backup, temp file, fsync,
//! rename, fsync directory).

use std::ops::Range;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::atomic_file::{self, AtomicFileError, Edit, UpdateOptions, Updated};

/// The property the guide tells operators to flip.
pub const MONITORS_ENABLED: &str = "monitorsEnabled";

/// What a property edit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlipOutcome {
    /// The property already had the desired value; the file was not written
    /// (same bytes, mtime and inode).
    Unchanged {
        /// The value found (and wanted).
        value: String,
    },
    /// The value was changed and the file replaced atomically.
    Changed {
        /// The value before.
        from: String,
        /// The value now.
        to: String,
        /// Where the previous version of the file was kept.
        backup: Option<PathBuf>,
    },
}

impl FlipOutcome {
    /// True when the file was written.
    pub fn changed(&self) -> bool {
        matches!(self, FlipOutcome::Changed { .. })
    }
}

/// Why a property could not be read or set. The file is always named and is
/// left untouched on every error. Only a lock timeout is retryable
/// ([`XmlEditError::is_retryable`]); the rest need an operator.
#[derive(Debug, thiserror::Error)]
pub enum XmlEditError {
    /// Reading, locking or writing the file failed.
    #[error(transparent)]
    File(#[from] AtomicFileError),
    /// The file is not well-formed XML.
    #[error("{path} is not well-formed XML (at byte {position}): {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem.
        position: u64,
        /// The parser's complaint.
        reason: String,
    },
    /// No `<property name="NAME" …>` element outside comments.
    #[error("{path} has no <property name=\"{name}\"> element")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The property name.
        name: String,
    },
    /// More than one such element: which one the app reads is not ours to
    /// guess, so we refuse to edit either.
    #[error("{path} has {count} <property name=\"{name}\"> elements (at bytes {positions:?}); expected exactly one")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The property name.
        name: String,
        /// How many were found.
        count: usize,
        /// Byte offsets of each element.
        positions: Vec<usize>,
    },
    /// The element exists but has no `value="…"` attribute (for example it
    /// uses a nested `<value>` element, which we do not edit).
    #[error("{path}: <property name=\"{name}\"> at byte {position} has no value attribute")]
    NoValueAttribute {
        /// The file.
        path: PathBuf,
        /// The property name.
        name: String,
        /// Byte offset of the element.
        position: usize,
    },
    /// The value to write contains characters that cannot appear in an
    /// attribute value even escaped (control characters).
    #[error("refusing to write value {value:?} for property {name} in {path}: {reason}")]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The property name.
        name: String,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl XmlEditError {
    /// True when trying again later may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, XmlEditError::File(e) if e.is_retryable())
    }
}

impl crate::retry::Retryable for XmlEditError {
    fn is_retryable(&self) -> bool {
        XmlEditError::is_retryable(self)
    }
}

/// Where the property's value sits in the file.
#[derive(Debug)]
struct Located {
    /// Byte range of the raw (escaped) value, between the quotes.
    span: Range<usize>,
    /// The value with entities resolved.
    value: String,
}

/// Sets `<property name="NAME" value="…"/>` to `value` in the XML file at
/// `path`, keeping every other byte. Idempotent: the file is not written when
/// the value is already `value`.
///
/// Blocking (file I/O, fsync, a lock wait); async callers use
/// `spawn_blocking`.
pub fn set_property(path: &Path, name: &str, value: &str) -> Result<FlipOutcome, XmlEditError> {
    set_property_with(path, name, value, &UpdateOptions::default())
}

/// [`set_property`] with explicit lock timeout and backup options.
pub fn set_property_with(
    path: &Path,
    name: &str,
    value: &str,
    opts: &UpdateOptions,
) -> Result<FlipOutcome, XmlEditError> {
    let escaped = escape_attr(path, name, value)?;
    let opts = UpdateOptions {
        // The app's own file must exist: creating one would hide a wrong path.
        create_mode: None,
        ..opts.clone()
    };
    let updated = atomic_file::update(path, &opts, |current| -> Result<_, XmlEditError> {
        let bytes = current.unwrap_or_default();
        let found = locate(path, bytes, name)?;
        if found.value == value {
            return Ok(Edit::Keep(found.value));
        }
        let mut contents = Vec::with_capacity(bytes.len() + escaped.len());
        contents.extend_from_slice(&bytes[..found.span.start]);
        contents.extend_from_slice(escaped.as_bytes());
        contents.extend_from_slice(&bytes[found.span.end..]);
        Ok(Edit::Replace {
            contents,
            info: found.value,
        })
    })?;
    let outcome = match updated {
        Updated::Unchanged(value) => FlipOutcome::Unchanged { value },
        Updated::Written { info, backup } => {
            tracing::info!(
                path = %path.display(),
                property = name,
                from = %info,
                to = value,
                "property changed"
            );
            FlipOutcome::Changed {
                from: info,
                to: value.to_owned(),
                backup,
            }
        }
    };
    Ok(outcome)
}

/// Sets `monitorsEnabled` to `true` or `false`.
pub fn set_monitors_enabled(path: &Path, enabled: bool) -> Result<FlipOutcome, XmlEditError> {
    set_property(
        path,
        MONITORS_ENABLED,
        if enabled { "true" } else { "false" },
    )
}

/// Reads the value of `<property name="NAME" value="…"/>` (entities
/// resolved). The same rules apply as for [`set_property`]: exactly one
/// such element, outside comments, with a `value` attribute.
pub fn read_property(path: &Path, name: &str) -> Result<String, XmlEditError> {
    let bytes = atomic_file::read_current(path)?.ok_or_else(|| AtomicFileError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })?;
    Ok(locate(path, &bytes, name)?.value)
}

/// Reads `monitorsEnabled` as a boolean; anything but `true`/`false`
/// (trimmed, case-insensitive, as Spring converts it) is `None`: unknown,
/// not a guess.
pub fn read_monitors_enabled(path: &Path) -> Result<Option<bool>, XmlEditError> {
    let v = read_property(path, MONITORS_ENABLED)?;
    Ok(match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    })
}

fn escape_attr(path: &Path, name: &str, value: &str) -> Result<String, XmlEditError> {
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(XmlEditError::InvalidValue {
            path: path.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            reason: "control characters are not allowed in XML",
        });
    }
    // Escaping both quote kinds makes the value safe whichever quote the
    // file uses around it; whitespace is escaped because attribute-value
    // normalisation would otherwise turn it into spaces on read.
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses the whole document (so a malformed file is rejected even when the
/// property comes before the damage) and finds the single property element.
fn locate(path: &Path, input: &[u8], name: &str) -> Result<Located, XmlEditError> {
    let malformed = |position: u64, reason: String| XmlEditError::Malformed {
        path: path.to_owned(),
        position,
        reason,
    };
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;

    let mut depth: usize = 0;
    let mut roots = 0usize;
    let mut found: Vec<(usize, Option<Located>)> = Vec::new();
    loop {
        let start = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| malformed(reader.error_position(), e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err(malformed(start as u64, "more than one root element".into()));
                    }
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
                // Check every element's attributes, not only ours: a broken
                // attribute elsewhere means the file is not what the app will
                // parse either.
                let hit =
                    inspect(e, input, name).map_err(|reason| malformed(start as u64, reason))?;
                if let Some(hit) = hit {
                    found.push((start, hit));
                }
            }
            Event::End(_) => {
                // quick-xml already rejects mismatched and unmatched end tags.
                depth = depth.saturating_sub(1);
            }
            Event::Text(ref t) if depth == 0 && t.iter().any(|b| !b.is_ascii_whitespace()) => {
                return Err(malformed(
                    start as u64,
                    "text outside the root element".into(),
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(malformed(
            input.len() as u64,
            format!("{depth} element(s) not closed at end of file"),
        ));
    }
    if roots == 0 {
        return Err(malformed(0, "no root element".into()));
    }
    match found.len() {
        0 => Err(XmlEditError::Missing {
            path: path.to_owned(),
            name: name.to_owned(),
        }),
        1 => {
            let (position, hit) = found.pop().expect("length checked");
            hit.ok_or_else(|| XmlEditError::NoValueAttribute {
                path: path.to_owned(),
                name: name.to_owned(),
                position,
            })
        }
        count => Err(XmlEditError::Duplicate {
            path: path.to_owned(),
            name: name.to_owned(),
            count,
            positions: found.into_iter().map(|(p, _)| p).collect(),
        }),
    }
}

/// For an element: `Ok(None)` when it is not our property; `Ok(Some(None))`
/// when it is but has no `value`; `Ok(Some(Some(..)))` with the value's span.
#[allow(clippy::type_complexity)]
fn inspect(
    e: &BytesStart<'_>,
    input: &[u8],
    name: &str,
) -> Result<Option<Option<Located>>, String> {
    let mut name_matches = false;
    let mut value: Option<Located> = None;
    for attr in e.attributes().with_checks(true) {
        let attr = attr.map_err(|err| err.to_string())?;
        let unescaped = attr.unescape_value().map_err(|err| {
            format!(
                "attribute {}: {err}",
                String::from_utf8_lossy(attr.key.as_ref())
            )
        })?;
        if e.local_name().as_ref() != b"property" {
            continue;
        }
        match attr.key.as_ref() {
            b"name" => name_matches = unescaped == name,
            b"value" => {
                let span = span_in(input, &attr.value).ok_or_else(|| {
                    "internal: attribute value is not a slice of the input".to_string()
                })?;
                value = Some(Located {
                    span,
                    value: unescaped.into_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(name_matches.then_some(value))
}

/// The byte range of `part` inside `whole`, when `part` borrows from it.
///
/// quick-xml's slice reader hands out attribute values as borrowed slices of
/// the input (between the quotes, still escaped), so their address gives the
/// exact span to splice — no second, hand-written tokenizer needed. The
/// range is checked against the input before use.
fn span_in(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let base = whole.as_ptr() as usize;
    let at = (part.as_ptr() as usize).checked_sub(base)?;
    let end = at.checked_add(part.len())?;
    (end <= whole.len() && &whole[at..end] == part).then_some(at..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(xml: &str) -> Result<Located, XmlEditError> {
        locate(Path::new("t.xml"), xml.as_bytes(), MONITORS_ENABLED)
    }

    #[test]
    fn finds_value_span_with_any_quotes_order_and_whitespace() {
        for xml in [
            r#"<b><property name="monitorsEnabled" value="true"/></b>"#,
            r#"<b><property value='true' name='monitorsEnabled' /></b>"#,
            "<b><property\r\n   value = \"true\"\n\tname=\"monitorsEnabled\"></property></b>",
        ] {
            let l = loc(xml).expect(xml);
            assert_eq!(&xml[l.span.clone()], "true", "{xml}");
            assert_eq!(l.value, "true");
        }
    }

    #[test]
    fn ignores_comments_cdata_and_other_elements() {
        let xml = r#"<b><!-- <property name="monitorsEnabled" value="x"/> -->
            <![CDATA[<property name="monitorsEnabled" value="y"/>]]>
            <bean name="monitorsEnabled" value="z"/>
            <property name="monitorsEnabled" value="false"/></b>"#;
        assert_eq!(loc(xml).expect("one").value, "false");
    }

    #[test]
    fn rejects_broken_documents() {
        for xml in [
            "<b><property name=\"monitorsEnabled\" value=\"true\"/>",
            "<b><property name=\"monitorsEnabled\" value=\"true\"/></c>",
            "<b><property name=\"monitorsEnabled\" value=true/></b>",
            "<b><property name=\"monitorsEnabled\" name=\"x\" value=\"true\"/></b>",
            "<b/><c/>",
            "",
            "<b><!-- unclosed </b>",
        ] {
            assert!(
                matches!(loc(xml), Err(XmlEditError::Malformed { .. })),
                "{xml}"
            );
        }
    }

    #[test]
    fn a_utf8_byte_order_mark_is_accepted() {
        // Files edited on Windows (`C:\threatconnect\config`) often start
        // with one.
        let xml = "\u{feff}<?xml version=\"1.0\"?>\r\n<b><property name=\"monitorsEnabled\" value=\"true\"/></b>";
        let l = loc(xml).expect("bom");
        assert_eq!(&xml[l.span], "true");
    }

    #[test]
    fn escapes_values() {
        let e = escape_attr(Path::new("t"), "n", "a&b<'\"").expect("ok");
        assert_eq!(e, "a&amp;b&lt;&apos;&quot;");
        assert!(escape_attr(Path::new("t"), "n", "a\u{0}").is_err());
    }
}
