//! libpq connection strings: parsing both forms (`key=value ...` and
//! `postgresql://` URIs), rendering them back, and keeping passwords out of
//! logs.
//!
//! We need this because one `primary_conninfo` serves three purposes: it is
//! written into the standby's configuration as is, `pg_basebackup` uses it,
//! and `pg_rewind`'s `--source-server` is derived from it by swapping in a
//! superuser and a database name.

/// A parsed libpq connection string: ordered `key = value` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    pairs: Vec<(String, String)>,
}

impl ConnInfo {
    /// Parses a `key=value` connection string or a `postgres://` /
    /// `postgresql://` URI, as libpq does.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            parse_uri(rest)
        } else {
            parse_key_values(s)
        }
    }

    /// The value of `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        self.remove(key);
        self.pairs.push((key.to_owned(), value.to_owned()));
    }

    /// Removes `key` and returns its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<String> {
        let found = self.get(key).map(str::to_owned);
        self.pairs.retain(|(k, _)| k != key);
        found
    }

    /// Renders `key='value' ...`, quoting every value, as libpq reads it.
    pub(crate) fn render(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn parse_key_values(s: &str) -> Result<ConnInfo, String> {
    let mut out = ConnInfo::default();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("missing \"=\" after \"{key}\""));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated quoted value of \"{key}\"")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value of \"{key}\"")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.pairs.push((key, value));
    }
}

/// Parses what follows `postgresql://`:
/// `[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`.
fn parse_uri(rest: &str) -> Result<ConnInfo, String> {
    let mut out = ConnInfo::default();
    let (authority_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, dbname) = match authority_path.split_once('/') {
        Some((a, d)) => (a, Some(d)),
        None => (authority_path, None),
    };
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.pairs.push(("user".into(), percent_decode(user)?));
            }
            if let Some(p) = password {
                out.pairs.push(("password".into(), percent_decode(p)?));
            }
            hosts
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for spec in hostlist.split(',').filter(|h| !h.is_empty()) {
        let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("unterminated IPv6 address in \"{spec}\""))?;
            (h.to_owned(), after.strip_prefix(':').unwrap_or(""))
        } else {
            match spec.rsplit_once(':') {
                Some((h, p)) => (percent_decode(h)?, p),
                None => (percent_decode(spec)?, ""),
            }
        };
        hosts.push(host);
        ports.push(port.to_owned());
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        out.pairs.push(("host".into(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        out.pairs.push(("port".into(), ports.join(",")));
    }
    if let Some(db) = dbname.filter(|d| !d.is_empty()) {
        out.pairs.push(("dbname".into(), percent_decode(db)?));
    }
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param
            .split_once('=')
            .ok_or_else(|| format!("URI parameter \"{param}\" has no value"))?;
        out.set(&percent_decode(k)?, &percent_decode(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in \"{}\"", redact(s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes are not UTF-8".to_owned())
}

/// Replaces passwords in anything that may hold a connection string
/// (`password=...` in either quoting, `user:password@` in URIs) with `***`.
pub(crate) fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        if let Some(value) = trimmed.strip_prefix('=') {
            out.push_str("password=***");
            let value = value.trim_start();
            rest = skip_value(value);
        } else {
            out.push_str("password");
            rest = after_key;
        }
    }
    out.push_str(rest);
    redact_uri_passwords(&out)
}

/// Skips one conninfo value (quoted or not) and returns what follows it.
fn skip_value(value: &str) -> &str {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return &quoted[i + 1..],
                _ => {}
            }
        }
        ""
    } else {
        let end = value
            .find(|c: char| c.is_whitespace() || c == '&')
            .unwrap_or(value.len());
        &value[end..]
    }
}

fn redact_uri_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let (before, from) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = from.find(['/', '?', ' ']).unwrap_or(from.len());
        let authority = &from[..authority_end];
        match authority.rsplit_once('@') {
            Some((userinfo, hosts)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                out.push_str(&format!("{user}:***@{hosts}"));
            }
            _ => out.push_str(authority),
        }
        rest = &from[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Quotes `s` as an SQL string literal (`standard_conforming_strings` on,
/// the default since PostgreSQL 9.1 and what we set on our sessions).
pub(crate) fn sql_literal(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        return Err("contains a NUL character".into());
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// Quotes `s` as a `postgresql.conf` string value, the way `ALTER SYSTEM`
/// writes `postgresql.auto.conf` (backslash and quote doubled).
pub(crate) fn conf_literal(s: &str) -> Result<String, String> {
    if s.contains(['\0', '\n', '\r']) {
        return Err("contains a NUL or line break".into());
    }
    Ok(format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_values_with_quotes_and_escapes() {
        let c = ConnInfo::parse(
            "host=127.0.0.1 port = 5433 user=replicator password='a b\\'c' application_name=b",
        )
        .expect("valid conninfo");
        assert_eq!(c.get("host"), Some("127.0.0.1"));
        assert_eq!(c.get("port"), Some("5433"));
        assert_eq!(c.get("password"), Some("a b'c"));
        assert_eq!(c.get("application_name"), Some("b"));
        let again = ConnInfo::parse(&c.render()).expect("rendered conninfo parses");
        assert_eq!(again, c);
    }

    #[test]
    fn parses_uris() {
        let c =
            ConnInfo::parse("postgres://palisade:p%40ss@127.0.0.1:5432/postgres?sslmode=disable")
                .expect("valid URI");
        assert_eq!(c.get("user"), Some("palisade"));
        assert_eq!(c.get("password"), Some("p@ss"));
        assert_eq!(c.get("host"), Some("127.0.0.1"));
        assert_eq!(c.get("port"), Some("5432"));
        assert_eq!(c.get("dbname"), Some("postgres"));
        assert_eq!(c.get("sslmode"), Some("disable"));
        let v6 = ConnInfo::parse("postgresql://[::1]:6000,h2/db").expect("valid URI");
        assert_eq!(v6.get("host"), Some("::1,h2"));
        assert_eq!(v6.get("port"), Some("6000,"));
    }

    #[test]
    fn rejects_broken_strings() {
        assert!(ConnInfo::parse("host").is_err());
        assert!(ConnInfo::parse("password='open").is_err());
        assert!(ConnInfo::parse("postgres://u@h/db?x").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("--source-server=host=h password='s e\\'cret' user=u"),
            "--source-server=host=h password=*** user=u"
        );
        assert_eq!(redact("password=plain next"), "password=*** next");
        assert_eq!(
            redact("postgres://palisade:secret@127.0.0.1:5432/postgres"),
            "postgres://palisade:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact("no secrets here"), "no secrets here");
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(
            sql_literal("FIRST 1 (\"b\")").as_deref(),
            Ok("'FIRST 1 (\"b\")'")
        );
        assert_eq!(sql_literal("it's").as_deref(), Ok("'it''s'"));
        assert!(sql_literal("a\0b").is_err());
        assert_eq!(conf_literal("a\\b'c").as_deref(), Ok("'a\\\\b''c'"));
        assert!(conf_literal("a\nb").is_err());
    }
}
