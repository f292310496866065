//! The `portcullis` command line (SPEC §5). A thin layer over the library: parse arguments, load
//! config, start the app, handle signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::{App, config, log};

#[derive(Parser)]
#[command(name = "portcullis", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PORTCULLIS_GIT_COMMIT"), ")"), about = "Authenticating sidecar: verifies Cognito JWTs and forwards with trusted identity headers")]
struct Cli {
    /// Config file (same as `run --config`).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "json")]
    log_format: log::Format,
    /// Log level or filter (RUST_LOG wins when set).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve.
    Run,
    /// Validate the config and print lint warnings; exit 1 on errors.
    Check,
    /// Start a local issuer, an echo app and the proxy, and print example curl commands.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
    },
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(path: Option<&PathBuf>) -> Result<config::Config, ExitCode> {
    let Some(path) = path else {
        eprintln!("portcullis: --config FILE (or PORTCULLIS_CONFIG) is required");
        return Err(ExitCode::from(2));
    };
    config::load(path, &env_lookup).map_err(|e| {
        eprintln!("{e}");
        eprintln!("portcullis: invalid config, not starting");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if matches!(cli.command, Some(Command::Demo { .. })) { log::Format::Text } else { cli.log_format };
    let level = if matches!(cli.command, Some(Command::Demo { .. })) && cli.log_level == "info" {
        "warn"
    } else {
        &cli.log_level
    };
    log::init(format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = match load(cli.config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime.block_on(run(config))
        }
        Command::Check => match load(cli.config.as_ref()) {
            Ok(c) => {
                for w in &c.warnings {
                    println!("warning: {w}");
                }
                println!("ok: {} issuer(s), {} route(s)", c.issuers.len(), c.routes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Demo { listen, admin_listen } => runtime.block_on(demo(listen, admin_listen)),
    }
}

async fn run(config: config::Config) -> ExitCode {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let app = match App::start(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tokio sizes its worker pool with `available_parallelism`, which honours the cgroup CPU
    // quota (cpu.max) on Linux; `TOKIO_WORKER_THREADS` overrides it. Logged so it can be checked.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(listen = %app.proxy_addr, admin = %app.admin_addr, workers, "portcullis started");
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return ExitCode::FAILURE;
    };
    let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) else {
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: draining");
            let shutdown = app.shutdown();
            tokio::pin!(shutdown);
            // A second SIGTERM or SIGINT exits immediately.
            tokio::select! {
                _ = &mut shutdown => {}
                _ = term.recv() => tracing::warn!("second signal: exiting now"),
                _ = int.recv() => tracing::warn!("second signal: exiting now"),
            }
        }
        _ = int.recv() => {
            // Interactive Ctrl-C: no load balancer to wait for, but let requests finish.
            app.begin_drain();
            let stop = app.stop();
            tokio::pin!(stop);
            tokio::select! {
                _ = &mut stop => {}
                _ = int.recv() => {}
            }
        }
    }
    ExitCode::SUCCESS
}

async fn demo(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    let demo = match portcullis::demo::start(listen, admin).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("portcullis demo: {e}");
            eprintln!(
                "(is something already listening there? try --listen 127.0.0.1:8081 --admin-listen 127.0.0.1:9902)"
            );
            return ExitCode::FAILURE;
        }
    };
    print!("{}", portcullis::demo::instructions(&demo));
    let _ = tokio::signal::ctrl_c().await;
    demo.app.stop().await;
    ExitCode::SUCCESS
}
