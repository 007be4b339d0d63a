//! Where palisadectl writes: the result on stdout; progress lines on stdout
//! for people (`--output table`) and on stderr with `--output json`, so
//! stdout then holds only the JSON document a script parses.

use std::io::Write;

use crate::client::Failure;
use crate::Format;

/// The output side of one run.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// The `--output` format.
    pub format: Format,
}

impl Out {
    /// Whether results are JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Writes a result to stdout.
    pub fn emit(&self, text: &str) -> Result<(), Failure> {
        emit(text)
    }

    /// Writes a progress line (or lines, each ending in a newline): stdout
    /// for tables, stderr for JSON.
    pub fn progress(&self, text: &str) -> Result<(), Failure> {
        match self.format {
            Format::Table => emit(text),
            Format::Json => {
                let mut err = std::io::stderr().lock();
                err.write_all(text.as_bytes())
                    .and_then(|()| err.flush())
                    .map_err(|e| Failure::Output(format!("cannot write progress: {e}")))
            }
        }
    }
}

/// Writes to stdout, turning a closed or full stdout into a failure instead
/// of the panic `print!` would give.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Output(format!("cannot write output: {e}")))
}

/// A warning that does not change the exit code, on stderr in the
/// `palisadectl: ` form of errors.
pub fn warn(text: &str) {
    // Nothing better to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "palisadectl: {text}");
}
