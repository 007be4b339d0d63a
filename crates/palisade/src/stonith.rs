//! STONITH hooks ("shoot the other node in the head"): for sites whose power
//! or hypervisor API the leader can reach, a configured command and/or HTTP
//! call that takes the whole site's database down when its agent cannot
//! confirm a fence. A hook that reports success is a confirmed fence.

use palisade_actions::command::{run_checked, CommandSpec};

use crate::config::StonithConfig;

/// Runs the hook for a failover of `epoch`: the command (exit 0 = done),
/// then the HTTP call (2xx = done). Both must succeed when both are set.
pub async fn fire(hook: &StonithConfig, epoch: u64) -> Result<String, String> {
    let mut done = Vec::new();
    if let Some(argv) = &hook.command {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| {
                a.replace("{epoch}", &epoch.to_string())
                    .replace("{site}", &hook.site.0)
            })
            .collect();
        let spec = CommandSpec::new(argv, hook.timeout);
        let out = run_checked(&spec)
            .await
            .map_err(|e| format!("STONITH command failed: {e}"))?;
        done.push(format!(
            "command {} exited 0 in {} ms",
            spec.display(),
            out.duration.as_millis()
        ));
    }
    if let Some(url) = &hook.url {
        let client = palisade_actions::with_client_tls(reqwest::Client::builder(), &hook.tls)
            .map_err(|e| format!("STONITH HTTP client: TLS settings: {}", error_chain(&e)))?
            .timeout(hook.timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("STONITH HTTP client: {}", error_chain(&e)))?;
        let body = serde_json::json!({ "epoch": epoch, "site": hook.site.0 });
        let mut request = client.post(url).json(&body);
        if let Some((user, password)) = &hook.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let resp = request
            .send()
            .await
            .map_err(|e| format!("STONITH POST {url}: {}", error_chain(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(format!("STONITH POST {url}: HTTP {}", resp.status()));
        }
        done.push(format!("POST {url} answered {}", resp.status()));
    }
    Ok(done.join("; "))
}

/// An error and its causes, `: `-separated: a TLS refusal ("invalid peer
/// certificate: UnknownIssuer") is in a cause, not in reqwest's own text.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
