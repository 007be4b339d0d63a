//! The confirmation prompt of the commands that change who leads or who
//! votes (`switchover`, `failover`, `failback`, `member add|remove|replace`):
//! on a terminal, ask; without one, refuse unless `--yes`.

use std::io::IsTerminal;

use crate::client::Failure;

/// Without a terminal on stdin `name` cannot be confirmed: a usage error
/// naming `--yes`.
pub fn need_terminal(name: &str) -> Result<(), Failure> {
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "{name} asks for confirmation, but stdin is not a terminal; add --yes to run it \
         without asking"
    )))
}

/// Prints `text` (what will happen, ending in a newline) and `Proceed? [y/N]`
/// on stderr and reads the answer from stdin. Anything but `y` or `yes` is a
/// no: [`Failure::NotConfirmed`] (exit 10), naming `name`.
pub async fn ask(name: &str, text: &str) -> Result<(), Failure> {
    eprint!("{text}Proceed? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Failure::Output(format!("cannot read the answer: {e}")))?
    .map_err(|e| Failure::Output(format!("cannot read the answer: {e}")))?;
    // The terminal echoed the answer and its newline; stderr elsewhere
    // (a log file) needs its own, so the next line starts on its own.
    if !std::io::stderr().is_terminal() {
        eprintln!();
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::NotConfirmed(format!(
            "{name} not confirmed: nothing was sent"
        ))),
    }
}
