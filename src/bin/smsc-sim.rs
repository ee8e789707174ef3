//! smsc-sim: an SMPP 3.4 carrier simulator. See `smsgate::sim` and `smsc-sim --help`.

use std::process::ExitCode;

use clap::Parser;
use smsgate::sim::cli::{self, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    smsgate::telemetry::init_logging("info");
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("smsc-sim: {error}");
            return ExitCode::from(2);
        }
    };
    let listen = settings
        .listen
        .unwrap_or_else(|| cli::DEFAULT_LISTEN.parse().expect("valid default address"));
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("smsc-sim: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ctrl_c = async {
        // If the handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match cli::run(settings, listener, ctrl_c).await {
        Ok(stats) => {
            println!("{stats}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("smsc-sim: {error}");
            ExitCode::from(2)
        }
    }
}
