use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use headroom::cli::{Cli, Command};
use headroom::{anomaly, cluster, demo, forecast, query, scaling, serve};
use headroom_loadgen as loadgen;

// The ingest path allocates and frees many small buffers across threads; glibc's allocator spent
// a quarter of the CPU there and fragmented memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEADROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives in between (after the ready line or the demo's URLs are
/// printed, before the process waits) still stops it cleanly instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match streams {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(cfg) => {
            let stop = shutdown_signal();
            let running = serve::start(&cfg).await?;
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{}", running.ready_line())?;
            stdout.flush()?;
            stop.await;
            tracing::info!("shutting down");
            running.shutdown().await?;
            tracing::info!("stopped");
        }
        Command::Demo(args) => demo::run(args, shutdown_signal()).await?,
        Command::Query(args) => {
            let table = query::run(&args.data_dir, &args.sql).await?;
            println!("{table}");
        }
        Command::Loadgen(args) if args.history_days > 0.0 => {
            let r = loadgen::history(&args)
                .await
                .with_context(|| format!("writing history to {}", args.endpoint))?;
            println!(
                "history: {} minutes, {} spans ({} rejected), {} metric points in {:.1} s ({:.0} spans/s)",
                r.minutes,
                r.spans,
                r.spans_rejected,
                r.metric_points,
                r.seconds,
                r.spans as f64 / r.seconds.max(1e-9)
            );
        }
        Command::Loadgen(args) => {
            let report = loadgen::run(&args)
                .await
                .with_context(|| format!("load generation against {}", args.endpoint))?;
            println!("{report}");
        }
        Command::Forecast { command } => {
            let report = tokio::task::spawn_blocking(move || forecast::run(&command)).await??;
            print!("{report}");
        }
        Command::Scaling { command } => {
            let report = tokio::task::spawn_blocking(move || scaling::run(&command)).await??;
            print!("{report}");
        }
        Command::Anomaly { command } => {
            let report = tokio::task::spawn_blocking(move || anomaly::run(&command)).await??;
            print!("{report}");
        }
        Command::Schema => print!("{}", headroom_storage::schema::markdown()),
        Command::Ballista { command } => cluster::run(command, shutdown_signal()).await?,
    }
    Ok(())
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", headroom_status::report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
