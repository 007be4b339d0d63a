//! Repointing a front door through a rendered config file and a reload
//! command (nginx upstreams, an HAProxy config without a runtime API, a DNS
//! zone snippet, a keepalived include…).
//!
//! The template is plain text with `{{name}}` placeholders (whitespace
//! inside the braces allowed) filled from a map, typically the surviving
//! site's addresses. A placeholder with no value is an error naming it: a
//! config with a hole in it must never reach a reload. The rendered text is
//! written with [`crate::atomic_file`] — idempotently: when the file already
//! holds exactly that text, nothing is written and nothing is reloaded —
//! and then the reload command runs. If the reload fails, the previous file
//! is put back (from the copy read under the lock, also kept as
//! `<file>.palisade.bak`) so the next reload or restart of the service does
//! not pick up a config its own reload just rejected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::atomic_file::{self, AtomicFileError, FileLock, UpdateOptions};
use crate::command::{self, CommandError, CommandOutput, CommandSpec};

/// A template placeholder problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{name}}` with no value in the map.
    #[error("template placeholder {{{{{name}}}}} on line {line} has no value (known: {known:?})")]
    UnknownPlaceholder {
        /// The placeholder's name.
        name: String,
        /// 1-based line of the template.
        line: usize,
        /// The names that do have values.
        known: Vec<String>,
    },
    /// `{{` without a closing `}}`, or a name with characters other than
    /// letters, digits, `_`, `-`, `.`.
    #[error("template line {line}: malformed placeholder {text:?}")]
    Malformed {
        /// 1-based line of the template.
        line: usize,
        /// The offending text.
        text: String,
    },
}

/// Replaces every `{{name}}` in `template` with `vars[name]`. Text outside
/// placeholders is copied unchanged. There is no escaping syntax: a literal
/// `{{` cannot appear in a template (none of the formats we target need it).
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let line_of = |rest: &str| {
        template[..template.len() - rest.len()]
            .matches('\n')
            .count()
            + 1
    };
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let line = line_of(&rest[open..]);
        let Some(close) = after.find("}}") else {
            return Err(TemplateError::Malformed {
                line,
                text: after.chars().take(40).collect(),
            });
        };
        let name = after[..close].trim();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(TemplateError::Malformed {
                line,
                text: format!("{{{{{}}}}}", &after[..close]),
            });
        }
        let value = vars
            .get(name)
            .ok_or_else(|| TemplateError::UnknownPlaceholder {
                name: name.to_owned(),
                line,
                known: vars.keys().cloned().collect(),
            })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A config file palisade renders, and how to make its consumer read it.
#[derive(Clone, Debug)]
pub struct ConfigFileTarget {
    /// The file to write.
    pub path: PathBuf,
    /// The template text (the daemon reads it from the configured file).
    pub template: String,
    /// Run after a change; `None` when the consumer watches the file itself.
    pub reload: Option<CommandSpec>,
    /// Mode for a file that does not exist yet; an existing file keeps its
    /// own mode and owner.
    pub create_mode: u32,
    /// How long to wait for another writer's lock.
    pub lock_timeout: Duration,
}

impl ConfigFileTarget {
    /// A target with mode 0644 for new files and a 10 s lock timeout.
    pub fn new(
        path: impl Into<PathBuf>,
        template: impl Into<String>,
        reload: Option<CommandSpec>,
    ) -> Self {
        Self {
            path: path.into(),
            template: template.into(),
            reload,
            create_mode: 0o644,
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The file already had the rendered content: not written, not reloaded.
    Unchanged,
    /// The file was replaced and reloaded.
    Written {
        /// Where the previous version was kept (`None` when there was none).
        backup: Option<PathBuf>,
        /// The reload command's output, when one is configured.
        reload: Option<CommandOutput>,
    },
}

/// Why a config file could not be applied. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The template could not be rendered. Fatal.
    #[error("cannot render the template for {path}: {source}")]
    Template {
        /// The target file.
        path: PathBuf,
        /// What is wrong with the template.
        source: TemplateError,
    },
    /// Reading, locking or writing failed; the file is untouched.
    #[error(transparent)]
    File(#[from] AtomicFileError),
    /// The reload command failed after the file was replaced. `restored`
    /// says whether the previous file was put back (if it was not,
    /// `restore_error` says why, and an operator must look).
    #[error("reload of {path} failed ({source}); previous file {}", if *restored { "restored".to_string() } else { format!("NOT restored: {}", restore_error.as_deref().unwrap_or("unknown")) })]
    ReloadFailed {
        /// The target file.
        path: PathBuf,
        /// The reload error.
        source: CommandError,
        /// Whether the previous content is back in place.
        restored: bool,
        /// Why restoring failed, if it did.
        restore_error: Option<String>,
    },
    /// A blocking file task panicked or was cancelled. Retryable.
    #[error("file task for {path} did not complete: {reason}")]
    Task {
        /// The target file.
        path: PathBuf,
        /// The join error.
        reason: String,
    },
}

impl ConfigFileError {
    /// True when applying again may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConfigFileError::Template { .. } => false,
            ConfigFileError::File(e) => e.is_retryable(),
            ConfigFileError::ReloadFailed {
                source, restored, ..
            } => *restored && source.is_retryable(),
            ConfigFileError::Task { .. } => true,
        }
    }
}

impl crate::retry::Retryable for ConfigFileError {
    fn is_retryable(&self) -> bool {
        ConfigFileError::is_retryable(self)
    }
}

/// What the locked write step hands to the reload step.
struct Written {
    lock: FileLock,
    target: PathBuf,
    previous: Option<Vec<u8>>,
    backup: Option<PathBuf>,
}

/// Renders the template with `vars`, writes it if it differs from the file,
/// and runs the reload command; on reload failure puts the previous file
/// back. The file lock is held until the reload has finished, so two
/// applies cannot interleave write and reload.
#[tracing::instrument(skip_all, fields(path = %target.path.display()))]
pub async fn apply(
    target: &ConfigFileTarget,
    vars: &BTreeMap<String, String>,
) -> Result<ConfigOutcome, ConfigFileError> {
    let rendered = render(&target.template, vars).map_err(|source| ConfigFileError::Template {
        path: target.path.clone(),
        source,
    })?;
    let opts = UpdateOptions {
        lock_timeout: target.lock_timeout,
        backup: true,
        create_mode: Some(target.create_mode),
    };

    let path = target.path.clone();
    let write_opts = opts.clone();
    let written = blocking(&target.path, move || {
        write_if_changed(&path, rendered.into_bytes(), &write_opts)
    })
    .await??;
    let Some(written) = written else {
        return Ok(ConfigOutcome::Unchanged);
    };

    let Some(reload) = &target.reload else {
        return Ok(ConfigOutcome::Written {
            backup: written.backup,
            reload: None,
        });
    };
    match command::run_checked(reload).await {
        Ok(output) => {
            tracing::info!(
                duration_ms = output.duration.as_millis() as u64,
                "config written and reloaded"
            );
            Ok(ConfigOutcome::Written {
                backup: written.backup,
                reload: Some(output),
            })
        }
        Err(source) => {
            let Written {
                lock,
                target: file,
                previous,
                ..
            } = written;
            let restore = blocking(&target.path, move || {
                let r = match &previous {
                    Some(prev) => atomic_file::replace(
                        &file,
                        prev,
                        None,
                        &UpdateOptions {
                            backup: false,
                            ..opts
                        },
                    )
                    .map(drop),
                    None => atomic_file::remove(&file),
                };
                drop(lock);
                r
            })
            .await;
            let restore_error = match restore {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            let err = ConfigFileError::ReloadFailed {
                path: target.path.clone(),
                source,
                restored: restore_error.is_none(),
                restore_error,
            };
            tracing::error!(error = %err, "config reload failed");
            Err(err)
        }
    }
}

fn write_if_changed(
    path: &Path,
    rendered: Vec<u8>,
    opts: &UpdateOptions,
) -> Result<Option<Written>, ConfigFileError> {
    let target = atomic_file::resolve(path)?;
    // Unlocked fast path: nothing to do must not need a lock (or a reload).
    if atomic_file::read_current(&target)?.as_deref() == Some(&rendered[..]) {
        return Ok(None);
    }
    let lock = FileLock::acquire(&target, opts.lock_timeout)?;
    let previous = atomic_file::read_current(&target)?;
    if previous.as_deref() == Some(&rendered[..]) {
        return Ok(None);
    }
    let backup = atomic_file::replace(&target, &rendered, previous.as_deref(), opts)?;
    Ok(Some(Written {
        lock,
        target,
        previous,
        backup,
    }))
}

async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConfigFileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConfigFileError::Task {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_placeholders_with_optional_spaces() {
        let v = vars(&[("host", "10.0.0.2"), ("port", "5432")]);
        assert_eq!(
            render("server db {{host}}:{{ port }} # {not} {x}}\n", &v).expect("render"),
            "server db 10.0.0.2:5432 # {not} {x}}\n"
        );
    }

    #[test]
    fn unknown_and_malformed_placeholders_are_errors() {
        let v = vars(&[("host", "h")]);
        let e = render("a\nb {{hots}}", &v).expect_err("unknown");
        assert!(
            matches!(&e, TemplateError::UnknownPlaceholder { name, line: 2, .. } if name == "hots"),
            "{e}"
        );
        assert!(e.to_string().contains("{{hots}}"), "{e}");
        assert!(matches!(
            render("{{host", &v),
            Err(TemplateError::Malformed { .. })
        ));
        assert!(matches!(
            render("{{a b}}", &v),
            Err(TemplateError::Malformed { .. })
        ));
    }

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new(["sh", "-c", script], Duration::from_secs(5))
    }

    #[tokio::test]
    async fn writes_reloads_once_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("upstream.conf");
        let count = dir.path().join("reloads");
        let t = ConfigFileTarget::new(
            &file,
            "upstream db { server {{host}}; }\n",
            Some(sh(&format!("echo x >> {}", count.display()))),
        );
        let out = apply(&t, &vars(&[("host", "b:5432")]))
            .await
            .expect("apply");
        assert!(matches!(
            out,
            ConfigOutcome::Written {
                backup: None,
                reload: Some(_)
            }
        ));
        let out = apply(&t, &vars(&[("host", "b:5432")]))
            .await
            .expect("apply");
        assert_eq!(out, ConfigOutcome::Unchanged);
        assert_eq!(std::fs::read_to_string(&count).expect("count"), "x\n");
        assert_eq!(
            std::fs::read_to_string(&file).expect("file"),
            "upstream db { server b:5432; }\n"
        );
    }

    #[tokio::test]
    async fn failed_reload_restores_the_previous_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("upstream.conf");
        std::fs::write(&file, "server a;\n").expect("seed");
        let t = ConfigFileTarget::new(
            &file,
            "server {{host}};\n",
            Some(sh("echo 'bad config' >&2; exit 3")),
        );
        let e = apply(&t, &vars(&[("host", "b")]))
            .await
            .expect_err("reload fails");
        assert!(
            matches!(e, ConfigFileError::ReloadFailed { restored: true, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("bad config"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("file"), "server a;\n");

        // A file that did not exist before is removed again.
        let fresh = dir.path().join("fresh.conf");
        let t = ConfigFileTarget::new(&fresh, "x {{host}}\n", Some(sh("exit 1")));
        apply(&t, &vars(&[("host", "b")]))
            .await
            .expect_err("reload fails");
        assert!(!fresh.exists());
    }
}
