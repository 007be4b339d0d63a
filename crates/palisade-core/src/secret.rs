//! Secrets (database passwords, HMAC keys, API credentials) kept out of
//! config files, logs, status and errors.
//!
//! A [`Secret`] holds its value and where it came from. Its `Debug` and
//! `Display` never show the value (`Secret(from file /etc/palisade/pg.pass)`,
//! `***`); [`Secret::expose`] is the only way to read it, and is meant to be
//! called at the last moment, where the value goes into a library call or
//! onto the wire.
//!
//! A [`ConnString`] is a PostgreSQL connection string (`postgres://` URL or
//! libpq `key=value` conninfo) whose password is held apart as a `Secret`:
//! its text never carries the password, so it can be logged and shown as is.
//!
//! A [`ClientTls`] is the CA bundle and client identity of an HTTPS
//! client, the identity's private key held as a `Secret`.
//!
//! Pure: reading secret files and the environment is the daemon's
//! (`palisade::config::secrets`).

use std::fmt;
use std::path::PathBuf;

/// Where a secret came from: shown in place of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the config file itself (discouraged outside tests/demos).
    Inline,
    /// Read from this file at start-up.
    File(PathBuf),
    /// Read from this environment variable at start-up.
    Env(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline => f.write_str("inline"),
            Self::File(p) => write!(f, "from file {}", p.display()),
            Self::Env(v) => write!(f, "from env {v}"),
        }
    }
}

/// A secret value. `Debug` prints `Secret(from file PATH)` (or
/// `Secret(inline)`, `Secret(from env VAR)`), `Display` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    source: SecretSource,
}

impl Secret {
    /// A secret with a known source.
    pub fn new(value: impl Into<String>, source: SecretSource) -> Self {
        Self {
            value: value.into(),
            source,
        }
    }

    /// A secret written inline (in a config file or a test).
    pub fn inline(value: impl Into<String>) -> Self {
        Self::new(value, SecretSource::Inline)
    }

    /// The value. Call it where the value leaves palisade (a library call,
    /// a header, a child's environment), never to log or show it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::inline(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::inline(value)
    }
}

/// A PostgreSQL connection string with its password held apart.
///
/// The text is a `postgres://` / `postgresql://` URL or libpq `key=value`
/// conninfo and never carries a password: [`ConnString::from_inline`] moves
/// an inline one into the [`Secret`]. `Display` shows the text; `Debug`
/// adds the password's source.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnString {
    text: String,
    password: Option<Secret>,
}

impl ConnString {
    /// `text` with a password from elsewhere. Refused (as ambiguous) when
    /// `text` carries a password itself.
    pub fn with_password(text: &str, password: Secret) -> Result<Self, String> {
        let split = Self::from_inline(text);
        if split.password.is_some() {
            return Err(format!(
                "{split} carries a password too; give the password once, either in the connection string or apart from it"
            ));
        }
        Ok(Self {
            text: split.text,
            password: Some(password),
        })
    }

    /// `text` as written, an inline password (URL userinfo, a `password`
    /// URL parameter or a `password=` conninfo pair) moved into the
    /// [`Secret`].
    pub fn from_inline(text: &str) -> Self {
        let (text, password) = if is_url(text) {
            split_url(text)
        } else {
            split_key_values(text)
        };
        Self {
            text,
            password: password.map(Secret::inline),
        }
    }

    /// The connection string without its password: safe to log and show.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Whether it is a `postgres://` URL (else libpq `key=value` conninfo).
    pub fn is_url(&self) -> bool {
        is_url(&self.text)
    }

    /// The same connection string with other text and the same password.
    pub fn with_text(&self, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            password: self.password.clone(),
        }
    }

    /// The value of connection parameter `key` (`sslmode`) as written in
    /// the text: a URL's query parameter or a conninfo pair. The last one
    /// wins, as in libpq.
    pub fn param(&self, key: &str) -> Option<String> {
        let pairs = if self.is_url() {
            url_params(&self.text)
        } else {
            key_values(&self.text)
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect()
        };
        pairs
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The same connection string with `params` added at the end (URL
    /// query parameters, percent-encoded, or quoted conninfo pairs), and
    /// the same password. The caller checks the text does not set them
    /// already ([`ConnString::param`]).
    pub fn with_params(&self, params: &[(&str, &str)]) -> Self {
        let mut text = self.text.trim_end().to_owned();
        for (key, value) in params {
            if self.is_url() {
                text.push(if text.contains('?') { '&' } else { '?' });
                text.push_str(&format!("{key}={}", percent_encode(value)));
            } else {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&format!("{key}='{quoted}'"));
            }
        }
        self.with_text(text)
    }

    /// The full libpq connection string, password included, for a library
    /// or a file that needs it whole (`primary_conninfo`). Wrapped in a
    /// [`Secret`] so it is exposed only where it is used.
    pub fn libpq(&self) -> Secret {
        let Some(p) = &self.password else {
            return Secret::inline(self.text.clone());
        };
        let full = if self.is_url() {
            let sep = if self.text.contains('?') { '&' } else { '?' };
            format!("{}{sep}password={}", self.text, percent_encode(p.expose()))
        } else {
            let quoted = p.expose().replace('\\', "\\\\").replace('\'', "\\'");
            format!("{} password='{quoted}'", self.text.trim_end())
        };
        Secret::new(full, p.source().clone())
    }
}

impl fmt::Display for ConnString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ConnString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnString")
            .field("text", &self.text)
            .field("password", &self.password)
            .finish()
    }
}

impl From<&str> for ConnString {
    fn from(text: &str) -> Self {
        Self::from_inline(text)
    }
}

impl From<&String> for ConnString {
    fn from(text: &String) -> Self {
        Self::from_inline(text)
    }
}

impl From<String> for ConnString {
    fn from(text: String) -> Self {
        Self::from_inline(&text)
    }
}

impl From<&ConnString> for ConnString {
    fn from(c: &ConnString) -> Self {
        c.clone()
    }
}

/// TLS material of an HTTPS client palisade drives (Elasticsearch, a
/// webhook, a STONITH endpoint): the CA bundle it trusts and the client
/// identity it presents. Read from the files named in the config at
/// start-up (`ca_file`, `client_cert_file`, `client_key_file`), so a
/// missing or unreadable file is a config error, not a failed failover.
/// The default trusts the HTTP library's built-in roots and presents no
/// certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates (`ca_file`). When set they are the only roots
    /// trusted: the built-in public roots are not.
    pub ca_pem: Option<String>,
    /// PEM client certificate chain followed by its private key
    /// (`client_cert_file` then `client_key_file`), for mutual TLS. A
    /// [`Secret`] because it holds the key; its source names the key file.
    pub identity_pem: Option<Secret>,
}

impl ClientTls {
    /// Whether anything differs from the default.
    pub fn is_set(&self) -> bool {
        self.ca_pem.is_some() || self.identity_pem.is_some()
    }
}

fn is_url(s: &str) -> bool {
    let s = s.trim_start();
    // MariaDB's URLs (`[[database]] engine = "mariadb"`) hold their
    // password the same way.
    ["postgres://", "postgresql://", "mysql://", "mariadb://"]
        .iter()
        .any(|scheme| s.starts_with(scheme))
}

/// Splits the password out of a URL: `user:PW@` in the userinfo (the
/// last `@` before the path, as libpq reads it) and `password=PW` among
/// the parameters. Values are percent-decoded.
fn split_url(s: &str) -> (String, Option<String>) {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
        return (s.to_owned(), None);
    };
    let (head, rest) = s.split_at(scheme_end);
    let (authority_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_path.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (authority_path, None),
    };
    let mut password = None;
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, pw)) => {
                password = Some(percent_decode(pw));
                format!("{user}@{hosts}")
            }
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{head}{authority}");
    if let Some(p) = path {
        out.push('/');
        out.push_str(p);
    }
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| match kv.strip_prefix("password=") {
                Some(v) => {
                    password = Some(percent_decode(v));
                    false
                }
                None => true,
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    (out, password)
}

/// Splits `password=...` (quoted or not, as libpq reads it) out of libpq
/// `key=value` conninfo. Text it cannot read is returned unchanged.
fn split_key_values(s: &str) -> (String, Option<String>) {
    let Some(pairs) = key_values(s) else {
        return (s.to_owned(), None);
    };
    let mut password = None;
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for pair in pairs {
        if pair.key == "password" {
            password = Some(pair.value);
            cut.push(pair.span);
        }
    }
    if cut.is_empty() {
        return (s.to_owned(), None);
    }
    let mut out = String::new();
    let mut from = 0;
    for (a, b) in cut {
        out.push_str(&s[from..a]);
        from = b;
    }
    out.push_str(&s[from..]);
    (
        out.split_whitespace().collect::<Vec<_>>().join(" "),
        password,
    )
}

/// One `key=value` pair of libpq conninfo: the key, the value unquoted and
/// unescaped, and the pair's byte range in the text.
struct KeyValue {
    key: String,
    value: String,
    span: (usize, usize),
}

/// The pairs of libpq `key=value` conninfo, read as libpq reads them
/// (values quoted with `'` or bare, `\` escapes); `None` for text that is
/// not conninfo.
fn key_values(s: &str) -> Option<Vec<KeyValue>> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let pos = |i: usize| chars.get(i).map_or(s.len(), |c| c.0);
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i).is_none() {
            return Some(pairs);
        }
        let start = pos(i);
        let key_start = i;
        while at(i).is_some_and(|c| c != '=' && !c.is_whitespace()) {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().map(|c| c.1).collect();
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            return None;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i) {
                    Some('\\') => {
                        i += 1;
                        value.push(at(i)?);
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return None,
                }
                i += 1;
            }
            i += 1;
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    i += 1;
                    if let Some(e) = at(i) {
                        value.push(e);
                    }
                } else {
                    value.push(c);
                }
                i += 1;
            }
        }
        pairs.push(KeyValue {
            key,
            value,
            span: (start, pos(i)),
        });
    }
}

/// The `key=value` parameters after `?` in a URL, percent-decoded.
fn url_params(s: &str) -> Vec<(String, String)> {
    let Some((_, query)) = s.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr!t pa'ss@word";

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(
            "hunter2",
            SecretSource::File("/etc/palisade/pg.pass".into()),
        );
        assert_eq!(format!("{s:?}"), "Secret(from file /etc/palisade/pg.pass)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Secret::inline("hunter2")), "Secret(inline)");
        assert_eq!(
            format!(
                "{:?}",
                Secret::new("hunter2", SecretSource::Env("PG_PW".into()))
            ),
            "Secret(from env PG_PW)"
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn inline_passwords_are_split_out_of_urls_and_conninfo() {
        let c = ConnString::from_inline("postgres://palisade:p%40ss@127.0.0.1:5432/postgres");
        assert_eq!(c.text(), "postgres://palisade@127.0.0.1:5432/postgres");
        assert_eq!(c.password().map(Secret::expose), Some("p@ss"));
        let c = ConnString::from_inline("postgres://u@h/db?password=pw&sslmode=disable");
        assert_eq!(c.text(), "postgres://u@h/db?sslmode=disable");
        assert_eq!(c.password().map(Secret::expose), Some("pw"));
        let c = ConnString::from_inline("host=h password='a b\\'c' user=u");
        assert_eq!(c.text(), "host=h user=u");
        assert_eq!(c.password().map(Secret::expose), Some("a b'c"));
        let c = ConnString::from_inline("postgres://u@h/db");
        assert_eq!(c.text(), "postgres://u@h/db");
        assert!(c.password().is_none());
        assert!(!format!("{c:?}{c}").contains("pw"));
    }

    #[test]
    fn a_password_given_twice_is_ambiguous() {
        let e = ConnString::with_password("postgres://u:pw@h/db", Secret::inline("x"))
            .expect_err("ambiguous");
        assert!(e.contains("postgres://u@h/db") && !e.contains("pw@"), "{e}");
        ConnString::with_password("host=h user=u", Secret::inline("x")).expect("no inline one");
    }

    #[test]
    fn params_are_read_and_added_in_both_forms() {
        let url =
            ConnString::from_inline("postgres://u:pw@h/db?sslmode=require&application_name=x");
        assert_eq!(url.param("sslmode").as_deref(), Some("require"));
        assert_eq!(url.param("sslrootcert"), None);
        let url = ConnString::from_inline("postgres://u:pw@h/db").with_params(&[
            ("sslmode", "verify-full"),
            ("sslrootcert", "/etc/ca dir/ca.pem"),
        ]);
        assert_eq!(
            url.text(),
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem"
        );
        assert_eq!(
            url.param("sslrootcert").as_deref(),
            Some("/etc/ca dir/ca.pem")
        );
        assert_eq!(url.password().map(Secret::expose), Some("pw"));
        let kv = ConnString::from_inline("host=h user=u sslmode='verify-ca'");
        assert_eq!(kv.param("sslmode").as_deref(), Some("verify-ca"));
        let kv = ConnString::from_inline("host=h user=u password=pw")
            .with_params(&[("sslrootcert", "/etc/it's/ca.pem")]);
        assert_eq!(kv.text(), "host=h user=u sslrootcert='/etc/it\\'s/ca.pem'");
        assert_eq!(kv.param("sslrootcert").as_deref(), Some("/etc/it's/ca.pem"));
        assert_eq!(kv.password().map(Secret::expose), Some("pw"));
    }

    #[test]
    fn libpq_string_round_trips_the_password() {
        for text in [
            "postgres://u@h:5432/db",
            "postgres://u@h/db?sslmode=disable",
        ] {
            let c = ConnString::with_password(text, Secret::inline(PW)).expect("valid");
            let full = c.libpq();
            let back = ConnString::from_inline(full.expose());
            assert_eq!(back.text(), text);
            assert_eq!(back.password().map(Secret::expose), Some(PW));
        }
        let c = ConnString::with_password("host=h user=u", Secret::inline(PW)).expect("valid");
        let back = ConnString::from_inline(c.libpq().expose());
        assert_eq!(back.text(), "host=h user=u");
        assert_eq!(back.password().map(Secret::expose), Some(PW));
        assert_eq!(ConnString::from_inline("host=h").libpq().expose(), "host=h");
    }
}
