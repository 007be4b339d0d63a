//! `chaos`: the randomized mode, the broken-fence self-test, single named
//! scenarios, and cleanup, from the command line (as root).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "palisade's chaos suite (needs root)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A seeded random schedule of faults, the checker after each heal.
    Random {
        /// The seed (printed; replays the schedule).
        #[arg(long)]
        seed: Option<u64>,
        /// How long, e.g. `30m`, `90s`, `1h`.
        #[arg(long, default_value = "5m")]
        duration: String,
    },
    /// "isolate site a" against witnesses whose fence is disabled
    /// (`unsafe-skip-fence=on`): exits 0 only if the checker catches it.
    BrokenFence,
    /// Runs one named scenario.
    Scenario {
        /// Its name (`chaos list`).
        name: String,
    },
    /// Lists the named scenarios.
    List,
    /// Removes everything any run left behind.
    Cleanup,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        format!("--duration {s:?}: expected a number and a unit (s, m, h), e.g. 30m")
    })?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!(
            "--duration {s:?}: unknown unit {other:?}; use s, m or h"
        )),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::List) && !chaos_tests::gate("chaos") {
        return ExitCode::from(2);
    }
    let res = match cli.cmd {
        Cmd::List => {
            for s in chaos_tests::scenario::all() {
                println!("{}", s.name);
            }
            Ok(())
        }
        Cmd::Cleanup => {
            let left = chaos_tests::netns::leftovers();
            for l in &left {
                println!("removing {l}");
            }
            for p in chaos_tests::netns::cleanup_all() {
                eprintln!("could not remove: {p}");
            }
            Ok(())
        }
        Cmd::Random { seed, duration } => match parse_duration(&duration) {
            Err(e) => Err(anyhow::anyhow!(e)),
            Ok(d) => {
                let seed = seed.unwrap_or_else(|| chaos_tests::now_ms() as u64);
                println!("seed {seed}");
                chaos_tests::random::run(seed, d).await.map(|n| {
                    println!("seed {seed}: {n} faults checked over {duration}, no violation");
                })
            }
        },
        Cmd::BrokenFence => match chaos_tests::scenario::broken_fence().await {
            Ok(r) if r.caught_broken_fence() => {
                println!(
                    "broken-fence: CAUGHT: the checker reported the broken fence (rule(s) {} failed)",
                    r.failed_rules().join(",")
                );
                Ok(())
            }
            Ok(_) => Err(anyhow::anyhow!(
                "broken-fence: NOT CAUGHT: the fence was disabled and the checker saw no split brain"
            )),
            Err(e) => Err(e),
        },
        Cmd::Scenario { name } => {
            let sc = chaos_tests::scenario::named(&name);
            chaos_tests::scenario::run(&sc).await.map(|_| ())
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}
