//! The `smsgate` binary: CLI, config, logging, signals; the daemon itself is `app::run`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use smsgate::{app, config, telemetry};
use tokio::sync::watch;

const DEFAULT_CONFIG: &str = "config/smsgate.toml";

#[derive(Parser)]
#[command(name = "smsgate", version, about = "Carrier-facing SMS gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log line format: text, or json (one object per line, for log shippers).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default when no command is given).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or print every error with its line and exit 2.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show a running daemon's binds, windows, queues and webhook backlog.
    Status {
        /// The admin listener (default: `admin.listen` from the config).
        #[arg(long)]
        admin: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = if cli.log_format == "json" {
        telemetry::LogFormat::Json
    } else {
        telemetry::LogFormat::Text
    };
    match cli.command.unwrap_or(Command::Run {
        config: PathBuf::from(DEFAULT_CONFIG),
    }) {
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Status { admin, config } => {
            let admin = match admin {
                Some(a) => a,
                None => match config::load(&config) {
                    Ok(c) => c.admin.listen.to_string(),
                    Err(errors) => {
                        eprintln!("{errors}");
                        return ExitCode::from(2);
                    }
                },
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(smsgate::status::fetch(&admin)) {
                Ok(view) => {
                    print!("{view}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("smsgate status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            telemetry::init_logging_as("info", log_format);
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("smsgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(cfg: config::Config, path: PathBuf) -> anyhow::Result<()> {
    let listeners = app::Listeners::bind(&cfg).await?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
        // A second signal stops at once.
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without drain");
        std::process::exit(130);
    });
    app::run_with_reload(cfg, Some(path), listeners, rx).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

// mimalloc instead of glibc's malloc: +11-19 % end to end with webhooks on this machine
// (BENCHMARKS.md), where malloc/free were ~15 % of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
