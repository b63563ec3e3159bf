//! The `switchyard` binary: command line, config, logging, signals; then [`switchyard::run`].
//!
//! Exit codes: 0 after a clean shutdown, 1 when the service fails, 2 for a bad configuration
//! (clap uses 2 for bad arguments too). A bad configuration is reported whole, by `serve` and
//! `check-config` alike: one line per problem (key, what is wrong, file or environment
//! variable), then the count.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchyard::{App, Config};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    /// Config file. Default: $SWITCHYARD_CONFIG, else ./switchyard.toml if it exists.
    /// SWITCHYARD_SECTION__KEY environment variables override its values.
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Check the configuration. Valid: print it as TOML (defaults filled in, secrets
    /// redacted) and exit 0. Invalid: print every problem (unknown keys, wrong types,
    /// failed checks), one per line with its key and source, then the count; exit 2.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchyard: {}", switchyard::error_chain(&e));
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&config),
        Command::Serve => {
            let result = tokio::runtime::Runtime::new()
                .context("cannot start the tokio runtime")
                .and_then(|runtime| runtime.block_on(serve(config)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    if tracing::dispatcher::has_been_set() {
                        tracing::error!(error = format!("{e:#}"), "switchyard failed");
                    } else {
                        eprintln!("switchyard: {e:#}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check_config(config: &Config) -> ExitCode {
    match config.to_redacted_toml() {
        Ok(toml) => {
            eprintln!("configuration is valid");
            match std::io::stdout().lock().write_all(toml.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard: cannot write to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("switchyard: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    switchyard::telemetry::init(&config.log)?;
    let shutdown = switchyard::shutdown_signal().context("cannot install signal handlers")?;
    let listen = config.http.listen.clone();
    let app = App::build(config).await.map_err(|e| match e {
        switchyard::app::BuildError::Store(e) => {
            anyhow::Error::new(e).context("cannot open the database (database.url)")
        }
        switchyard::app::BuildError::Redis(e) => {
            anyhow::Error::new(e).context("cannot connect to Redis (redis.url)")
        }
    })?;
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    // The contract with scripts and tests: exactly this line on stdout once serving. A closed
    // stdout is no reason to stop serving, so write errors are ignored (println! would panic).
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{addr}").and_then(|()| stdout.flush());
    drop(stdout);
    switchyard::run(listener, app, shutdown).await
}
