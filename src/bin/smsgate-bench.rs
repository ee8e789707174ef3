//! `smsgate-bench`: load generator for smsgate. Thin CLI over [`smsgate::loadgen`].

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use smsgate::loadgen::{self, E2eOptions, FloorOptions, HttpOptions, MoOptions, Stop, Traffic};

#[derive(Parser)]
#[command(
    name = "smsgate-bench",
    version,
    about = "Load generator for smsgate: HTTP accept rate, end-to-end and inbound throughput"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive POST /v1/messages of a running smsgate.
    Http(HttpArgs),
    /// Start a simulator, a daemon and a webhook sink in-process on loopback, load the
    /// daemon, wait for every receipt and every signed `delivered` webhook, and report
    /// accept, carrier and end-to-end throughput.
    E2e(E2eArgs),
    /// Start the same stack and inject MO texts through the simulator as fast as the daemon
    /// acknowledges them; report MO acked/s and signed `message.received` webhooks/s.
    Mo(MoArgs),
    /// Measure what the HTTP transport alone costs on this machine: API requests and signed
    /// webhook requests against in-process handlers that only answer. The CPU per message
    /// it reports is a floor under any end-to-end result here.
    Floor(FloorArgs),
}

#[derive(Args)]
struct FloorArgs {
    /// How long each phase (raw TCP, API requests, then webhook requests) runs, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Connections (TCP and API phases) and requests in flight (webhook phase).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Load {
    /// Workers, each with one keep-alive connection.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Target request rate across all workers, e.g. 5000 or 5000/s (default: back-to-back).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Body length in characters.
    #[arg(long, default_value_t = 160)]
    length: usize,
    /// Fraction of bodies that need UCS-2.
    #[arg(long, default_value_t = 0.1)]
    ucs2_fraction: f64,
    /// Distinct destination numbers.
    #[arg(long, default_value_t = 10_000)]
    destinations: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Progress line on stderr every second (default: when stderr is a terminal).
    #[arg(long)]
    progress: bool,
}

impl Load {
    fn traffic(&self) -> Traffic {
        Traffic {
            length: self.length,
            ucs2_fraction: self.ucs2_fraction,
            destinations: self.destinations,
        }
    }

    fn progress(&self) -> bool {
        self.progress || std::io::stderr().is_terminal()
    }
}

#[derive(Args)]
struct HttpArgs {
    /// Base URL of smsgate's HTTP listener.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (Authorization: Bearer).
    #[arg(long)]
    key: String,
    /// Line to send from; repeat for several (used round-robin).
    #[arg(long, required = true)]
    from: Vec<String>,
    /// Run for this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Send this many requests.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    load: Load,
}

#[derive(Args)]
struct E2eArgs {
    /// Send this many messages (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Send for this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Carrier window (submit_sm in flight per bind), 1..=1000.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Carrier binds, 1..=64.
    #[arg(long, default_value_t = 1)]
    binds: usize,
    /// Simulator delay before each receipt, e.g. 0ms or 200ms.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    receipt_delay: Duration,
    /// The line's rate in segments per second (default: high enough never to limit).
    #[arg(long, default_value_t = 1_000_000.0)]
    line_rate: f64,
    /// store.commit_batch_max of the daemon (default: the daemon's default).
    #[arg(long)]
    commit_batch_max: Option<usize>,
    /// Make the run directory (config + store) under this directory (default: system temp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run directory instead of deleting it.
    #[arg(long)]
    keep_dir: bool,
    /// Longest wait after the load for the carrier submits, and again for the receipts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
    settle_timeout: Duration,
    /// Worker threads of the shared runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Run without the webhook sink (no app webhook_url: the earlier e2e setup).
    #[arg(long)]
    no_webhooks: bool,
    /// webhooks.concurrency of the daemon (requests in flight to the sink).
    #[arg(long)]
    webhook_concurrency: Option<usize>,
    /// The bench app's `status_events` (comma-separated states, e.g.
    /// `delivered,undelivered,failed,expired`); default: every state change.
    #[arg(long, value_delimiter = ',')]
    status_events: Option<Vec<String>>,
    #[command(flatten)]
    load: Load,
}

#[derive(Args)]
struct MoArgs {
    /// MO texts to inject.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Concurrent injectors, each with one text awaiting its deliver_sm_resp.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct handset numbers the texts come from.
    #[arg(long, default_value_t = 10_000)]
    handsets: usize,
    /// Carrier binds (transceivers), 1..=64.
    #[arg(long, default_value_t = 1)]
    binds: usize,
    /// store.commit_batch_max of the daemon (default: the daemon's default).
    #[arg(long)]
    commit_batch_max: Option<usize>,
    /// webhooks.concurrency of the daemon (requests in flight to the sink).
    #[arg(long)]
    webhook_concurrency: Option<usize>,
    /// Make the run directory (config + store) under this directory (default: system temp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run directory instead of deleting it.
    #[arg(long)]
    keep_dir: bool,
    /// Longest wait after the last acknowledgement for the webhooks.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
    settle_timeout: Duration,
    /// Worker threads of the shared runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Progress line on stderr every second (default: when stderr is a terminal).
    #[arg(long)]
    progress: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s").trim();
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("{s:?} is not a rate like 5000 or 5000/s")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (the in-process daemon's included) go to stderr so stdout stays the report.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();

    let threads = match &cli.command {
        Command::E2e(a) => a.threads,
        Command::Mo(a) => a.threads,
        Command::Floor(a) => a.threads,
        Command::Http(_) => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsgate-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let result = match cli.command {
        Command::Http(a) => {
            let opts = HttpOptions {
                url: a.url,
                key: a.key,
                from: a.from,
                concurrency: a.load.concurrency,
                rate: a.load.rate,
                stop: match (a.count, a.duration) {
                    (Some(n), _) => Stop::Count(n),
                    (None, Some(d)) => Stop::Duration(d),
                    (None, None) => Stop::Duration(Duration::from_secs(30)),
                },
                traffic: a.load.traffic(),
                progress: a.load.progress(),
                ..Default::default()
            };
            rt.block_on(loadgen::run_http(opts)).map(|s| {
                let report = if a.load.json {
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                } else {
                    loadgen::http_table(&s)
                };
                (report, Vec::new())
            })
        }
        Command::E2e(a) => {
            let opts = E2eOptions {
                stop: match (a.messages, a.duration) {
                    (_, Some(d)) => Stop::Duration(d),
                    (Some(n), None) => Stop::Count(n),
                    (None, None) => Stop::Count(10_000),
                },
                concurrency: a.load.concurrency,
                rate: a.load.rate,
                window: a.window,
                binds: a.binds,
                receipt_delay: a.receipt_delay,
                commit_batch_max: a.commit_batch_max,
                line_rate: a.line_rate,
                traffic: a.load.traffic(),
                progress: a.load.progress(),
                dir: a.dir,
                keep_dir: a.keep_dir,
                settle_timeout: a.settle_timeout,
                webhooks: !a.no_webhooks,
                webhook_concurrency: a.webhook_concurrency,
                status_events: a.status_events,
            };
            rt.block_on(loadgen::run_e2e(opts)).map(|s| {
                let report = if a.load.json {
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                } else {
                    loadgen::e2e_table(&s)
                };
                (report, s.problems)
            })
        }
        Command::Mo(a) => {
            let opts = MoOptions {
                messages: a.messages,
                concurrency: a.concurrency,
                handsets: a.handsets,
                binds: a.binds,
                commit_batch_max: a.commit_batch_max,
                webhook_concurrency: a.webhook_concurrency,
                progress: a.progress || std::io::stderr().is_terminal(),
                dir: a.dir,
                keep_dir: a.keep_dir,
                settle_timeout: a.settle_timeout,
                ..Default::default()
            };
            rt.block_on(loadgen::run_mo(opts)).map(|s| {
                let report = if a.json {
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                } else {
                    loadgen::mo_table(&s)
                };
                (report, s.problems)
            })
        }
        Command::Floor(a) => {
            let opts = FloorOptions {
                duration: a.duration,
                concurrency: a.concurrency,
            };
            rt.block_on(loadgen::run_floor(opts)).map(|s| {
                let report = if a.json {
                    serde_json::to_string_pretty(&s).unwrap_or_default()
                } else {
                    loadgen::floor_table(&s)
                };
                (report, Vec::new())
            })
        }
    };
    match result {
        Ok((report, problems)) if problems.is_empty() => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok((report, problems)) => {
            println!("{report}");
            eprintln!(
                "smsgate-bench: run failed its checks: {}",
                problems.join("; ")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("smsgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// mimalloc instead of glibc's malloc: +11-19 % end to end with webhooks on this machine
// (BENCHMARKS.md), where malloc/free were ~15 % of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
