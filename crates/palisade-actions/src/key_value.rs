//! Editing one `key=value` line of a properties-style file (Java
//! `.properties`, an env file, an app's `es.hosts=` setting), with the same
//! guarantees as the XML edit: only the value's bytes change, comments and
//! every other line stay byte-identical (CRLF included), the write is atomic
//! with a backup, and a file that already has the value is not written.
//!
//! Recognised syntax (the subset of Java properties config files use): a
//! line is `key`, optional blanks, `=` or `:` (or just blanks), optional
//! blanks, then the value to the end of the line. Lines starting with `#`
//! or `!` (after blanks) are comments. A value continued on the next line
//! with a trailing `\` is refused rather than half-edited, and new values
//! may not contain `\`, CR or LF, because whether they need properties
//! escaping depends on who reads the file, which we cannot know.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::atomic_file::{self, AtomicFileError, Edit, UpdateOptions, Updated};
use crate::monitors::FlipOutcome;

/// Why a key could not be read or set. The file is named and left
/// untouched on every error.
#[derive(Debug, thiserror::Error)]
pub enum KeyValueError {
    /// Reading, locking or writing the file failed.
    #[error(transparent)]
    File(#[from] AtomicFileError),
    /// No line sets the key.
    #[error("{path} has no line setting {key}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// Several lines set the key; which one wins depends on the reader.
    #[error("{path} sets {key} on {} lines ({lines:?}); expected exactly one", lines.len())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// 1-based line numbers.
        lines: Vec<usize>,
    },
    /// The key's value continues on the next line (trailing `\`).
    #[error("{path} line {line}: the value of {key} is continued over several lines, which palisade does not edit")]
    Continued {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// 1-based line number.
        line: usize,
    },
    /// The key or value cannot be written safely.
    #[error("refusing to set {key} in {path} to {value:?}: {reason}")]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl KeyValueError {
    /// True when trying again later may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KeyValueError::File(e) if e.is_retryable())
    }
}

/// Sets `key`'s value in the properties-style file at `path`. Blocking.
pub fn set_key_value(path: &Path, key: &str, value: &str) -> Result<FlipOutcome, KeyValueError> {
    set_key_value_with(path, key, value, &UpdateOptions::default())
}

/// [`set_key_value`] with explicit lock timeout and backup options.
pub fn set_key_value_with(
    path: &Path,
    key: &str,
    value: &str,
    opts: &UpdateOptions,
) -> Result<FlipOutcome, KeyValueError> {
    let invalid = |reason| KeyValueError::InvalidValue {
        path: path.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || matches!(c, '=' | ':' | '\\'))
    {
        return Err(invalid(
            "keys may not be empty or contain blanks, '=', ':' or '\\'",
        ));
    }
    if value.contains(['\\', '\r', '\n']) {
        return Err(invalid("values may not contain '\\', CR or LF"));
    }
    let opts = UpdateOptions {
        create_mode: None,
        ..opts.clone()
    };
    let updated = atomic_file::update(path, &opts, |current| -> Result<_, KeyValueError> {
        let bytes = current.unwrap_or_default();
        let span = locate(path, bytes, key)?;
        let old = String::from_utf8_lossy(&bytes[span.clone()]).into_owned();
        if old == value {
            return Ok(Edit::Keep(old));
        }
        let mut contents = Vec::with_capacity(bytes.len() + value.len());
        contents.extend_from_slice(&bytes[..span.start]);
        contents.extend_from_slice(value.as_bytes());
        contents.extend_from_slice(&bytes[span.end..]);
        Ok(Edit::Replace {
            contents,
            info: old,
        })
    })?;
    Ok(match updated {
        Updated::Unchanged(value) => FlipOutcome::Unchanged { value },
        Updated::Written { info, backup } => {
            tracing::info!(path = %path.display(), key, from = %info, to = value, "key changed");
            FlipOutcome::Changed {
                from: info,
                to: value.to_owned(),
                backup,
            }
        }
    })
}

/// Reads `key`'s raw value (everything after the separator to the end of
/// the line).
pub fn read_key_value(path: &Path, key: &str) -> Result<String, KeyValueError> {
    let bytes = atomic_file::read_current(path)?.ok_or_else(|| AtomicFileError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })?;
    let span = locate(path, &bytes, key)?;
    Ok(String::from_utf8_lossy(&bytes[span]).into_owned())
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\x0c')
}

/// True when `s` ends in an odd number of backslashes (a continuation).
fn continues(s: &[u8]) -> bool {
    s.iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1
}

/// Finds the value span of the single logical line that sets `key`.
fn locate(path: &Path, input: &[u8], key: &str) -> Result<Range<usize>, KeyValueError> {
    let mut hits: Vec<(usize, Range<usize>, bool)> = Vec::new();
    let mut offset = 0;
    let mut continuation = false;
    for (i, raw) in input.split_inclusive(|b| *b == b'\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let mut content = raw.strip_suffix(b"\n").unwrap_or(raw);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        let was_continuation = continuation;
        continuation = continues(content);
        if was_continuation {
            continue;
        }
        let lead = content.iter().take_while(|b| is_blank(**b)).count();
        let body = &content[lead..];
        if body.is_empty() || body[0] == b'#' || body[0] == b'!' {
            // A comment never continues.
            continuation = false;
            continue;
        }
        let key_len = body
            .iter()
            .take_while(|b| !is_blank(**b) && **b != b'=' && **b != b':')
            .count();
        if &body[..key_len] != key.as_bytes() {
            continue;
        }
        let mut at = key_len;
        while at < body.len() && is_blank(body[at]) {
            at += 1;
        }
        if at < body.len() && (body[at] == b'=' || body[at] == b':') {
            at += 1;
            while at < body.len() && is_blank(body[at]) {
                at += 1;
            }
        }
        let value_start = start + lead + at;
        let value_end = start + content.len();
        hits.push((i + 1, value_start..value_end, continuation));
    }
    match hits.len() {
        0 => Err(KeyValueError::Missing {
            path: path.to_owned(),
            key: key.to_owned(),
        }),
        1 => {
            let (line, span, continued) = hits.pop().expect("length checked");
            if continued {
                return Err(KeyValueError::Continued {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    line,
                });
            }
            Ok(span)
        }
        _ => Err(KeyValueError::Duplicate {
            path: path.to_owned(),
            key: key.to_owned(),
            lines: hits.into_iter().map(|(l, _, _)| l).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(input: &str, key: &str) -> Result<String, KeyValueError> {
        locate(Path::new("t"), input.as_bytes(), key).map(|r| input[r].to_string())
    }

    #[test]
    fn finds_values_with_any_separator() {
        let f =
            "# es.hosts=commented\r\n ! also\r\nes.hosts = http://a:9200\r\nother:1\nlast  x y\n";
        assert_eq!(value(f, "es.hosts").expect("hosts"), "http://a:9200");
        assert_eq!(value(f, "other").expect("other"), "1");
        assert_eq!(value(f, "last").expect("last"), "x y");
        assert!(matches!(value(f, "es"), Err(KeyValueError::Missing { .. })));
    }

    #[test]
    fn duplicates_and_continuations_are_refused() {
        assert!(matches!(
            value("a=1\na=2\n", "a"),
            Err(KeyValueError::Duplicate { .. })
        ));
        assert!(matches!(
            value("a=1,\\\n  2\n", "a"),
            Err(KeyValueError::Continued { .. })
        ));
        // A key inside another key's continuation is not a key.
        assert_eq!(value("b=x\\\na=1\na=2\n", "a").expect("one"), "2");
        // An escaped backslash at the end is not a continuation.
        assert_eq!(value("a=c:\\\\\n", "a").expect("a"), "c:\\\\");
    }
}
