//! The `outrigger` binary.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outrigger_runtime::{Config, RunArgs, StartError, logging};

#[derive(Parser)]
#[command(
    name = "outrigger",
    version,
    about = "A Dapr-compatible sidecar with a service-mesh data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar next to an application.
    Run(RunArgs),
}

/// Exit status for bad flags, config or component files.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_flags(std::env::args()));
    let Command::Run(args) = cli.command;
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(&args, &env) {
        Ok(config) => config,
        Err(error) => {
            logging::report_to_stderr(&error.to_string());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(config.log_level, config.log_as_json);
    for name in &config.ignored_env {
        tracing::warn!("ignoring environment variable {name}: it names no outrigger setting");
    }
    // One thread by default: a sidecar's requests are short, and keeping every task on one
    // thread avoids the cross-thread wake-ups that cost more CPU than the work itself.
    let runtime = match config.runtime_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Runtime::new(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            logging::report_to_stderr(&format!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(config));
    // `run` has drained everything within the grace period; a blocking call still stuck (a
    // Kafka commit to a broker that is gone) must not hold the exit.
    runtime.shutdown_background();
    code
}

async fn run(config: Config) -> ExitCode {
    // Handlers are installed before anything starts, so a signal that arrives right after the
    // "listening" line is handled as a shutdown request rather than killing the process.
    let mut signals = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            logging::report_to_stderr(&format!("cannot install signal handlers: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let sidecar = match outrigger_runtime::start(config).await {
        Ok(sidecar) => sidecar,
        Err(error) => {
            tracing::error!("{error}");
            logging::report_to_stderr(&error.to_string());
            return match &error {
                StartError::Resiliency(_) | StartError::Xds(_) => ExitCode::from(EXIT_CONFIG),
                StartError::Components(load) if load.is_definition_error() => {
                    ExitCode::from(EXIT_CONFIG)
                }
                _ => ExitCode::FAILURE,
            };
        }
    };
    let stop = sidecar.shutdown_token();
    tokio::spawn(async move {
        signals.recv().await;
        // Stop first, then say so: the shutdown must not depend on the log being writable.
        stop.cancel();
        tracing::info!(
            "signal received: stopping; in-flight requests get the grace period to finish"
        );
        // An operator's second Ctrl-C (or SIGTERM) does not wait for the grace period.
        signals.recv().await;
        logging::report_to_stderr("second signal: exiting without waiting for in-flight requests");
        std::process::exit(1);
    });
    sidecar.wait().await;
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// daprd is a Go program whose flags are also written with one dash (`-app-id demo`);
/// accept that spelling by rewriting `-name` to `--name` for multi-letter names.
fn go_style_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    args.enumerate()
        .map(|(index, arg)| {
            let is_go_long = index > 0
                && arg.len() > 2
                && arg.starts_with('-')
                && !arg.starts_with("--")
                && arg[1..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && arg[1..]
                    .split('=')
                    .next()
                    .is_some_and(|name| name.len() > 1);
            if is_go_long { format!("-{arg}") } else { arg }
        })
        .collect()
}
