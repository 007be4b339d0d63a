//! Secrets in the config: each one given inline (discouraged: the config
//! file is then a secret too), from a file (`*_file`) or from an
//! environment variable (`*_env`), exactly one of the three. Files are read
//! while the config is parsed and must be readable by their owner only.

use std::fmt;
use std::path::{Path, PathBuf};

use palisade_core::secret::ClientTls;
use palisade_core::{Secret, SecretSource};
use serde::Deserialize;

/// An inline secret as written. Its `Debug` hides the value, and a value
/// of the wrong type is refused without echoing it.
#[derive(Clone)]
pub(super) struct RawSecret(String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawSecret(***)")
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn refuse<E: serde::de::Error>() -> E {
            E::custom("a secret must be a string (value not shown)")
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawSecret, E> {
                Err(refuse())
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<RawSecret, E> {
                Err(refuse())
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<RawSecret, E> {
                Err(refuse())
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawSecret, E> {
                Err(refuse())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
                Err(refuse())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<RawSecret, A::Error> {
                Err(refuse())
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a secret could not be read. Names the file or variable, never the
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The file's group or others may access it.
    #[error("{} has mode {mode:04o}; make it readable by its owner only (chmod 600)", path.display())]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file cannot be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: String,
    },
    /// The file holds nothing but line breaks.
    #[error("{} is empty", .0.display())]
    EmptyFile(PathBuf),
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    /// The environment variable is set but empty.
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    /// The environment variable is not valid UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
}

/// Reads a secret from `path`: the whole file, trailing line breaks
/// trimmed. Refused when the file's mode grants its group or others any
/// access (as ssh refuses such a private key), or when it is empty.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let read_err = |e: std::io::Error| SecretError::Read {
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    // The mode of the file we opened, not of whatever the path names a
    // moment later.
    let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Mode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut value = String::new();
    file.read_to_string(&mut value).map_err(read_err)?;
    let trimmed = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(trimmed);
    if value.is_empty() {
        return Err(SecretError::EmptyFile(path.to_path_buf()));
    }
    Ok(Secret::new(value, SecretSource::File(path.to_path_buf())))
}

/// Reads a secret from the environment variable `var`; refused when it is
/// unset, empty or not UTF-8.
pub fn read_secret_env(var: &str) -> Result<Secret, SecretError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v, SecretSource::Env(var.to_owned()))),
        Ok(_) => Err(SecretError::EnvEmpty(var.to_owned())),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvUnset(var.to_owned())),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode(var.to_owned())),
    }
}

/// One secret as written: `KEY`, `KEY_file`, `KEY_env`.
pub(super) struct SecretKeys<'a> {
    /// `KEY = "..."`.
    pub inline: Option<&'a RawSecret>,
    /// `KEY_file = "/path"`.
    pub file: Option<&'a PathBuf>,
    /// `KEY_env = "VAR"`.
    pub env: Option<&'a String>,
}

/// Resolves one secret given at most one way; `key` is its full key as
/// written (`database[0].password`). Errors are `(key, reason)`, naming
/// the `_file` or `_env` key at fault.
pub(super) fn resolve(
    key: &str,
    given: SecretKeys<'_>,
) -> Result<Option<Secret>, (String, String)> {
    match (given.inline, given.file, given.env) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => {
            if v.0.is_empty() {
                return Err((key.to_owned(), "must not be empty".to_owned()));
            }
            Ok(Some(Secret::inline(v.0.clone())))
        }
        (None, Some(path), None) => {
            let k = format!("{key}_file");
            if !path.is_absolute() {
                return Err((k, format!("{} must be an absolute path", path.display())));
            }
            read_secret_file(path)
                .map(Some)
                .map_err(|e| (k, e.to_string()))
        }
        (None, None, Some(var)) => {
            let k = format!("{key}_env");
            if var.trim().is_empty() {
                return Err((k, "must name an environment variable".to_owned()));
            }
            read_secret_env(var)
                .map(Some)
                .map_err(|e| (k, e.to_string()))
        }
        _ => Err((
            key.to_owned(),
            format!("give {key}, {key}_file or {key}_env, only one of them"),
        )),
    }
}

/// Reads the PEM certificates at `path` (a CA bundle or a client
/// certificate chain) for the config key `key`: an absolute path to a
/// readable file holding at least one certificate. Certificates are public:
/// any file mode will do. Errors are `(key, reason)`.
pub(super) fn read_certificates(key: &str, path: &Path) -> Result<String, (String, String)> {
    let fail = |reason: String| (key.to_owned(), reason);
    if !path.is_absolute() {
        return Err(fail(format!("{} must be an absolute path", path.display())));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(text.as_bytes()).map_err(|e| {
        fail(format!(
            "{}: not a PEM certificate bundle: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(fail(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(text)
}

/// Checks the client key at `path` for the config key `key` as a secret
/// file (absolute, owner-only, not empty) and returns it.
pub(super) fn read_private_key(key: &str, path: &Path) -> Result<Secret, (String, String)> {
    if !path.is_absolute() {
        return Err((
            key.to_owned(),
            format!("{} must be an absolute path", path.display()),
        ));
    }
    read_secret_file(path).map_err(|e| (key.to_owned(), e.to_string()))
}

/// The TLS keys of an HTTPS client palisade drives, as written:
/// `ca_file`, `client_cert_file`, `client_key_file`.
pub(super) struct TlsFiles<'a> {
    /// PEM CA bundle: the only roots trusted when set.
    pub ca_file: Option<&'a PathBuf>,
    /// PEM client certificate (chain) for mutual TLS.
    pub client_cert_file: Option<&'a PathBuf>,
    /// Its private key (PEM), owner-only like every secret file.
    pub client_key_file: Option<&'a PathBuf>,
}

/// Reads and checks the TLS keys of the client whose URL is `url`; `key`
/// makes a key's full name (`elasticsearch[0].ca_file`). The files are read
/// now, so a broken one stops the start, and the identity is parsed as the
/// HTTP client will parse it.
pub(super) fn client_tls(
    key: &dyn Fn(&str) -> String,
    url: Option<&str>,
    raw: TlsFiles<'_>,
) -> Result<ClientTls, (String, String)> {
    let mut tls = ClientTls::default();
    let given = [
        ("ca_file", raw.ca_file.is_some()),
        ("client_cert_file", raw.client_cert_file.is_some()),
        ("client_key_file", raw.client_key_file.is_some()),
    ];
    if let (Some(u), Some((k, _))) = (url, given.iter().find(|(_, set)| *set)) {
        if !u.starts_with("https://") {
            return Err((
                key(k),
                format!("TLS settings need an https:// url; {u:?} is not"),
            ));
        }
    }
    if let Some(path) = raw.ca_file {
        tls.ca_pem = Some(read_certificates(&key("ca_file"), path)?);
    }
    match (raw.client_cert_file, raw.client_key_file) {
        (None, None) => {}
        (Some(cert), Some(private)) => {
            let cert = read_certificates(&key("client_cert_file"), cert)?;
            let private = read_private_key(&key("client_key_file"), private)?;
            let identity = Secret::new(
                format!("{}\n{}\n", cert.trim_end(), private.expose()),
                private.source().clone(),
            );
            reqwest::Identity::from_pem(identity.expose().as_bytes()).map_err(|e| {
                (
                    key("client_key_file"),
                    format!("not a PEM private key: {e}"),
                )
            })?;
            tls.identity_pem = Some(identity);
        }
        (Some(_), None) => {
            return Err((
                key("client_key_file"),
                "required with client_cert_file".to_owned(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                key("client_cert_file"),
                "required with client_key_file".to_owned(),
            ))
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_file_is_read_trimmed_and_must_be_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pg.pass");
        std::fs::write(&path, "hunter2\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let s = read_secret_file(&path).expect("owner-only file");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s.source(), &SecretSource::File(path.clone()));
        for mode in [0o640, 0o644, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = read_secret_file(&path).expect_err("readable by others");
            let text = e.to_string();
            assert!(
                text.contains(&path.display().to_string())
                    && text.contains(&format!("mode {mode:04o}"))
                    && text.contains("chmod 600")
                    && !text.contains("hunter2"),
                "{text}"
            );
        }
        std::fs::write(&path, "\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretError::EmptyFile(_))
        ));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn unset_env_is_named() {
        let var = "PALISADE_TEST_SURELY_UNSET_VAR";
        let e = read_secret_env(var).expect_err("unset");
        assert_eq!(
            e.to_string(),
            format!("environment variable {var} is not set")
        );
    }

    #[test]
    fn a_mistyped_inline_secret_is_not_echoed() {
        #[derive(Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            password: RawSecret,
        }
        // The message (what the config's errors carry; toml's `Display`
        // adds the source line, which the config never shows).
        let e = toml::from_str::<T>("password = 918273645").expect_err("not a string");
        assert!(!e.message().contains("918273645"), "{e}");
        let t: T = toml::from_str("password = \"918273645\"").expect("a string");
        assert!(!format!("{t:?}").contains("918273645"));
    }

    // --- the config as a whole: every secret key, resolved or refused ---

    use crate::config::{Config, ConfigError, FrontDoor};

    const WITNESSES: &str = r#"
node_id = 1

[tls]
insecure = true

[storage]
data_dir = "/var/lib/palisade/{site}"

[[witness]]
id = 1
site = "a"
raft_addr = "127.0.0.1:7301"
control_addr = "127.0.0.1:7401"

[[witness]]
id = 2
site = "b"
raft_addr = "127.0.0.1:7302"
control_addr = "127.0.0.1:7402"

[[witness]]
id = 3
site = "c"
raft_addr = "127.0.0.1:7303"
control_addr = "127.0.0.1:7403"
"#;

    /// `[[database]]` a with `extra_a` lines, b with an inline password.
    fn databases(extra_a: &str) -> String {
        format!(
            r#"
[[database]]
site = "a"
role = "primary"
dsn = "postgres://palisade@127.0.0.1:5432/postgres"
{extra_a}

[[database]]
site = "b"
role = "standby"
dsn = "postgres://palisade:inline-b@127.0.0.1:5433/postgres"
"#
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/palisade/site.toml"), text)
    }

    fn secret_file(dir: &Path, name: &str, value: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn database_passwords_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret_file(dir.path(), "pg.pass", "from-the-file", 0o600);
        let admin = secret_file(dir.path(), "admin.pass", "admin-from-file", 0o400);
        // Unique per test: tests run in parallel threads of one process.
        std::env::set_var("PALISADE_CFG_TEST_REPL_PW", "repl-from-env");
        let c = parse(&format!(
            "{WITNESSES}{}",
            databases(&format!(
                "password_file = {pw:?}\nadmin_dsn = \"postgres://postgres@127.0.0.1:5432/postgres\"\nadmin_password_file = {admin:?}\nreplication_conninfo = \"host=127.0.0.1 port=5432 user=replicator\"\nreplication_password_env = \"PALISADE_CFG_TEST_REPL_PW\""
            ))
        ))
        .expect("valid");
        let db = c.database.expect("database settings");
        let a = &db.primary;
        assert_eq!(a.dsn.text(), "postgres://palisade@127.0.0.1:5432/postgres");
        assert_eq!(a.dsn.password().map(Secret::expose), Some("from-the-file"));
        assert_eq!(
            a.dsn.password().map(Secret::source),
            Some(&SecretSource::File(pw.clone()))
        );
        assert_eq!(
            a.admin_dsn.password().map(Secret::expose),
            Some("admin-from-file")
        );
        let repl = a
            .replication_conninfo
            .as_deref()
            .expect("replication conninfo");
        assert_eq!(repl.text(), "host=127.0.0.1 port=5432 user=replicator");
        assert_eq!(repl.password().map(Secret::expose), Some("repl-from-env"));
        assert_eq!(
            repl.libpq().expose(),
            "host=127.0.0.1 port=5432 user=replicator password='repl-from-env'"
        );
        // Inline (b): split out of the DSN, and the admin DSN defaults to
        // the DSN with its password.
        let b = &db.standby;
        assert_eq!(b.dsn.text(), "postgres://palisade@127.0.0.1:5433/postgres");
        assert_eq!(b.dsn.password().map(Secret::expose), Some("inline-b"));
        assert_eq!(b.admin_dsn, b.dsn);
        // admin_password* without admin_dsn: the DSN's text, that password.
        let c = parse(&format!(
            "{WITNESSES}{}",
            databases(&format!(
                "password_file = {pw:?}\nadmin_password_file = {admin:?}"
            ))
        ))
        .expect("valid");
        let a = c.database.expect("db").primary;
        assert_eq!(a.admin_dsn.text(), a.dsn.text());
        assert_eq!(
            a.admin_dsn.password().map(Secret::expose),
            Some("admin-from-file")
        );
    }

    #[test]
    fn group_readable_secret_file_is_refused_naming_it_and_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret_file(dir.path(), "pg.pass", "leaky-secret", 0o644);
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases(&format!("password_file = {pw:?}"))
        ))
        .expect_err("refused");
        assert_eq!(e.key, "database[0].password_file");
        assert_eq!(
            e.to_string(),
            format!(
                "/etc/palisade/site.toml: database[0].password_file: {} has mode 0644; make it readable by its owner only (chmod 600)",
                pw.display()
            )
        );
        let rel = parse(&format!(
            "{WITNESSES}{}",
            databases("password_file = \"pg.pass\"")
        ))
        .expect_err("relative");
        assert_eq!(rel.key, "database[0].password_file");
    }

    #[test]
    fn unset_or_empty_env_is_refused_naming_the_variable() {
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases("password_env = \"PALISADE_CFG_TEST_SURELY_UNSET\"")
        ))
        .expect_err("unset");
        assert_eq!(e.key, "database[0].password_env");
        assert!(
            e.reason
                .contains("PALISADE_CFG_TEST_SURELY_UNSET is not set"),
            "{e}"
        );
        std::env::set_var("PALISADE_CFG_TEST_EMPTY", "");
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases("password_env = \"PALISADE_CFG_TEST_EMPTY\"")
        ))
        .expect_err("empty");
        assert!(e.reason.contains("PALISADE_CFG_TEST_EMPTY is empty"), "{e}");
    }

    #[test]
    fn a_secret_given_two_ways_is_ambiguous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret_file(dir.path(), "pg.pass", "file-pw", 0o600);
        // password and password_file.
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases(&format!("password = \"x\"\npassword_file = {pw:?}"))
        ))
        .expect_err("two ways");
        assert_eq!(e.key, "database[0].password");
        assert!(e.reason.contains("only one of them"), "{e}");
        // A DSN carrying a password and a password_* key.
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases(&format!("password_file = {pw:?}"))
                .replace("palisade@127.0.0.1:5432", "palisade:in-dsn@127.0.0.1:5432")
        ))
        .expect_err("ambiguous");
        assert_eq!(e.key, "database[0].dsn");
        assert!(e.reason.contains("ambiguous"), "{e}");
        assert!(
            !e.to_string().contains("in-dsn") && !e.to_string().contains("file-pw"),
            "{e}"
        );
        // replication_password without replication_conninfo.
        let e = parse(&format!(
            "{WITNESSES}{}",
            databases("replication_password = \"x\"")
        ))
        .expect_err("no conninfo");
        assert_eq!(e.key, "database[0].replication_password");
    }

    #[test]
    fn webhook_elasticsearch_and_stonith_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = secret_file(dir.path(), "hook.key", "hmac-key-from-a-file-123", 0o600);
        std::env::set_var("PALISADE_CFG_TEST_ES_PW", "es-pw-from-env");
        std::env::set_var("PALISADE_CFG_TEST_STONITH_PW", "stonith-pw-from-env");
        let text = format!(
            "{WITNESSES}{}\n[[front_door]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/hook\"\nsecret_file = {key:?}\n\n[[elasticsearch]]\nsite = \"a\"\nurl = \"http://127.0.0.1:9200\"\nhosts = \"http://es-a:9200\"\nusername = \"elastic\"\npassword_env = \"PALISADE_CFG_TEST_ES_PW\"\n\n[[stonith]]\nsite = \"a\"\nurl = \"http://127.0.0.1:1/off\"\nusername = \"power\"\npassword_env = \"PALISADE_CFG_TEST_STONITH_PW\"\n",
            databases("")
        );
        let c = parse(&text).expect("valid");
        let FrontDoor::Webhook { secret, .. } = &c.actions.front_doors[0] else {
            panic!("a webhook: {:?}", c.actions.front_doors);
        };
        assert_eq!(secret.expose(), "hmac-key-from-a-file-123");
        let es = c.actions.search[0].auth.basic.as_ref().expect("es auth");
        assert_eq!(
            (es.user.as_str(), es.password.expose()),
            ("elastic", "es-pw-from-env")
        );
        let db = c.database.as_ref().expect("db");
        let (user, pw) = db.stonith[0].auth.as_ref().expect("stonith auth");
        assert_eq!(
            (user.as_str(), pw.expose()),
            ("power", "stonith-pw-from-env")
        );
        let shown = format!("{c:?}");
        for s in [
            "hmac-key-from-a-file-123",
            "es-pw-from-env",
            "stonith-pw-from-env",
            "inline-b",
        ] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        // A short key is refused without being shown.
        let short = secret_file(dir.path(), "short.key", "short-key", 0o600);
        let e =
            parse(&text.replace(&format!("{key:?}"), &format!("{short:?}"))).expect_err("short");
        assert_eq!(e.key, "front_door[0].secret");
        assert!(!e.to_string().contains("short-key"), "{e}");
        // No secret at all.
        let e = parse(&text.replace(&format!("secret_file = {key:?}"), "")).expect_err("none");
        assert_eq!(e.key, "front_door[0].secret");
        // A username without a password.
        let e = parse(&text.replace("password_env = \"PALISADE_CFG_TEST_ES_PW\"", ""))
            .expect_err("no es password");
        assert_eq!(e.key, "elasticsearch[0].password");
    }

    #[test]
    fn data_dir_is_made_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fresh = tmp.path().join("fresh");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for dir in [fresh, open] {
            let c = parse(&WITNESSES.replace(
                "/var/lib/palisade/{site}",
                dir.to_str().expect("utf-8 temp path"),
            ))
            .expect("valid");
            c.check_data_dir().expect("usable");
            let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the secret, and however the config around it is broken,
        /// neither the parsed config's `Debug` nor any error shows it.
        #[test]
        fn no_secret_in_debug_of_the_config_or_of_any_error(
            secret in "[A-Za-z0-9]{20,40}",
            breakage in 0usize..8,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = secret_file(dir.path(), "s.pass", &secret, 0o600);
            let inline_dsn = format!("postgres://palisade:{secret}@127.0.0.1:5433/postgres");
            let good = format!(
                "{WITNESSES}{}\n[[front_door]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/hook\"\nsecret = \"{secret}\"\n\n[[elasticsearch]]\nsite = \"a\"\nurl = \"http://127.0.0.1:9200\"\nhosts = \"h\"\nusername = \"u\"\npassword = \"{secret}\"\n",
                databases(&format!("password_file = {file:?}\nreplication_conninfo = \"host=h password={secret}\""))
                    .replace("postgres://palisade:inline-b@127.0.0.1:5433/postgres", &inline_dsn)
            );
            let text = match breakage {
                0 => good.clone(),
                1 => good.replace("role = \"standby\"", "role = \"replica\""),
                2 => good.replace("postgres://palisade:", "mysql://palisade:"),
                3 => good.replace("127.0.0.1:5433", ""),
                4 => good.replace(&format!("secret = \"{secret}\""), &format!("secret = \"{secret}\"\nsecret_env = \"X\"")),
                5 => good.replace(&format!("password = \"{secret}\""), &format!("password = {}", secret.len())),
                6 => good.replace("replication_conninfo", "replication_conninfo_typo"),
                _ => good.replace(&format!("password_file = {file:?}"), &format!("password_file = {file:?}\npassword = \"{secret}\"")),
            };
            match parse(&text) {
                Ok(c) => {
                    proptest::prop_assert_eq!(breakage, 0);
                    let shown = format!("{c:?}");
                    proptest::prop_assert!(!shown.contains(&secret), "{}", shown);
                }
                Err(e) => {
                    proptest::prop_assert_ne!(breakage, 0, "{}", e);
                    let shown = format!("{e}\n{e:?}");
                    proptest::prop_assert!(!shown.contains(&secret), "{}", shown);
                }
            }
        }
    }
}
