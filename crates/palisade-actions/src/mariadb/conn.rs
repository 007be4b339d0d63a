//! Talking to the local server: one admin connection per operation, every
//! statement over the text protocol and bounded by the site's timeout, and
//! every answer read as text (what the text protocol sends anyway), so
//! that `SHOW` output decodes the same whatever column types the server
//! declares.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Column, Connection, Executor, Row};

use super::error::{error_number, MariaError};
use super::MariaSite;

/// `ER_NO_SUCH_THREAD`: `KILL` of a session that is gone already.
pub(super) const ER_NO_SUCH_THREAD: u16 = 1094;

/// `ER_LOCK_WAIT_TIMEOUT`: `SET GLOBAL read_only` waited longer than
/// `lock_wait_timeout` for a commit or an explicit table lock.
pub(super) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// One row of an answer, every column as text (`None`: SQL NULL).
#[derive(Clone, Debug, Default)]
pub(super) struct TextRow {
    columns: Vec<(String, Option<String>)>,
}

impl TextRow {
    fn from_row(row: &MySqlRow) -> Result<Self, sqlx::Error> {
        let mut columns = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            // Unchecked: the text protocol sends every value as text,
            // whatever type the column declares.
            let value = row.try_get_unchecked::<Option<Vec<u8>>, _>(i)?;
            columns.push((
                column.name().to_owned(),
                value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            ));
        }
        Ok(Self { columns })
    }

    /// The value of the column named `name` (ASCII case ignored);
    /// `None` when the column is missing or NULL.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the answer has a column named `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.columns
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The value of the `i`th column; `None` when missing or NULL.
    pub(super) fn at(&self, i: usize) -> Option<&str> {
        self.columns.get(i).and_then(|(_, v)| v.as_deref())
    }
}

impl MariaSite {
    /// The admin DSN's options, with the password held apart applied.
    pub(super) fn admin_options(&self) -> Result<MySqlConnectOptions, MariaError> {
        let options = MySqlConnectOptions::from_str(&self.admin_dsn).map_err(|e| {
            MariaError::InvalidInput {
                server: self.server(),
                what: "admin_dsn",
                detail: redact(&e.to_string()),
            }
        })?;
        Ok(match &self.admin_password {
            Some(p) => options.password(p.expose()),
            None => options,
        })
    }

    /// Opens one admin connection, bounded by `timeout`.
    pub(super) async fn connect(&self) -> Result<MySqlConnection, MariaError> {
        let opts = self.admin_options()?;
        self.bounded(
            "an admin connection",
            "connecting with admin_dsn",
            MySqlConnection::connect_with(&opts),
        )
        .await
    }

    /// Runs `fut` (a driver call doing `action`) bounded by `timeout`.
    pub(super) async fn bounded<T>(
        &self,
        what: &'static str,
        action: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, MariaError> {
        self.bounded_by(self.timeout, what, action, fut).await
    }

    /// Runs `fut` (a driver call doing `action`) bounded by `bound`.
    async fn bounded_by<T>(
        &self,
        bound: Duration,
        what: &'static str,
        action: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, MariaError> {
        match tokio::time::timeout(bound, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(self.sql_error(action, source)),
            Err(_) => Err(MariaError::Timeout {
                server: self.server(),
                what,
                timeout: bound,
                last: format!("{action}: no answer"),
            }),
        }
    }

    pub(super) fn sql_error(&self, action: impl Into<String>, source: sqlx::Error) -> MariaError {
        MariaError::Sql {
            server: self.server(),
            action: action.into(),
            source,
        }
    }

    /// Runs one statement that returns no rows.
    pub(super) async fn exec(
        &self,
        conn: &mut MySqlConnection,
        sql: &str,
    ) -> Result<(), MariaError> {
        self.exec_within(self.timeout, conn, sql).await
    }

    /// Runs one statement that returns no rows, bounded by `bound` (for a
    /// statement the server itself bounds, which must answer first).
    pub(super) async fn exec_within(
        &self,
        bound: Duration,
        conn: &mut MySqlConnection,
        sql: &str,
    ) -> Result<(), MariaError> {
        self.bounded_by(bound, "a statement's answer", sql, conn.execute(sql))
            .await
            .map(|_| ())
    }

    /// Runs one statement and returns its rows as text.
    pub(super) async fn rows(
        &self,
        conn: &mut MySqlConnection,
        sql: &str,
    ) -> Result<Vec<TextRow>, MariaError> {
        let rows = self
            .bounded("a statement's answer", sql, conn.fetch_all(sql))
            .await?;
        rows.iter()
            .map(TextRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| self.sql_error(sql, e))
    }

    /// Runs a query answering one value (first column of the first row);
    /// `None` when it answers no row or NULL.
    pub(super) async fn scalar(
        &self,
        conn: &mut MySqlConnection,
        sql: &str,
    ) -> Result<Option<String>, MariaError> {
        Ok(self
            .rows(conn, sql)
            .await?
            .first()
            .and_then(|r| r.at(0).map(str::to_owned)))
    }

    /// Like [`MariaSite::scalar`], for a value that must be there.
    pub(super) async fn required(
        &self,
        conn: &mut MySqlConnection,
        sql: &'static str,
    ) -> Result<String, MariaError> {
        self.scalar(conn, sql)
            .await?
            .ok_or_else(|| self.unexpected(sql, "no value"))
    }

    /// `@@GLOBAL.read_only`.
    pub(super) async fn read_only(&self, conn: &mut MySqlConnection) -> Result<bool, MariaError> {
        let v = self.required(conn, super::sql::READ_ONLY).await?;
        parse_bool(&v).ok_or_else(|| self.unexpected(super::sql::READ_ONLY, v))
    }

    /// Kills session `id`. False when it was gone already.
    pub(super) async fn kill(
        &self,
        conn: &mut MySqlConnection,
        id: u64,
    ) -> Result<bool, MariaError> {
        let sql = format!("{}{id}", super::sql::KILL_CONNECTION);
        match self.exec(conn, &sql).await {
            Ok(()) => Ok(true),
            Err(MariaError::Sql { source, .. })
                if error_number(&source) == Some(ER_NO_SUCH_THREAD) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn unexpected(&self, what: &'static str, detail: impl Into<String>) -> MariaError {
        MariaError::Unexpected {
            server: self.server(),
            what,
            detail: detail.into(),
        }
    }

    /// Closes a connection politely; a failure only means the server
    /// closes it instead.
    pub(super) async fn close(&self, conn: MySqlConnection) {
        let _ = tokio::time::timeout(self.timeout, conn.close()).await;
    }
}

/// A MariaDB boolean as text: `1`/`0`, `ON`/`OFF`.
pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_uppercase().as_str() {
        "1" | "ON" | "YES" | "TRUE" => Some(true),
        "0" | "OFF" | "NO" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Hides the password of a `mysql://user:password@host` URL inside `text`
/// (driver errors may quote the URL).
pub(super) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact("bad url mysql://palisade:s3cret@127.0.0.1:3306/ here"),
            "bad url mysql://palisade:***@127.0.0.1:3306/ here"
        );
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact("no url"), "no url");
    }

    #[test]
    fn reads_mariadb_booleans() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("OFF"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
