//! Who the operator is: the `who` every state-changing request carries, so
//! the replicated history says who paused, switched over or ran a drill.

/// The server's limit on `who`, in bytes.
pub const MAX_WHO_BYTES: usize = 128;

/// `$USER@<hostname>`: the default `--who`. The user falls back to
/// `LOGNAME` and then the passwd entry of the real uid (cron and systemd
/// units often set neither variable); the host to `unknown-host` if the
/// kernel will not say.
pub fn default_who() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.trim().is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{}@{host}", user.trim())
}

/// Checks a `--who` value the way the server will: 1..=128 bytes once
/// surrounding whitespace is gone. The reason is for a usage error.
pub fn check_who(raw: &str) -> Result<String, String> {
    let who = raw.trim();
    if who.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if who.len() > MAX_WHO_BYTES {
        return Err(format!(
            "is {} bytes; at most {MAX_WHO_BYTES} are allowed",
            who.len()
        ));
    }
    if who.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(who.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_who_is_user_at_host() {
        let who = default_who();
        let (user, host) = who.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{who}");
        assert_eq!(check_who(&who), Ok(who.clone()));
    }

    #[test]
    fn who_must_be_1_to_128_bytes_without_control_characters() {
        assert_eq!(check_who("  alice@ops-1 "), Ok("alice@ops-1".to_owned()));
        assert_eq!(check_who(" "), Err("must not be empty".to_owned()));
        assert!(check_who(&"é".repeat(65))
            .expect_err("130 bytes")
            .contains("130 bytes"));
        assert!(check_who(&"x".repeat(128)).is_ok());
        assert!(check_who("a\nb").is_err());
    }
}
