//! `headroom ballista scheduler` and `headroom ballista executor`: the nodes of the Apache
//! Ballista cluster that `headroom serve --query-engine ballista` runs its queries on (see
//! `headroom_analytics::cluster`). They are Ballista's own scheduler and executor, with
//! Headroom's functions registered so that they can decode its plans.

use std::future::Future;

use anyhow::Context;
use headroom_analytics::cluster::{ExecutorSettings, run_executor, run_scheduler};

use crate::config::{BallistaCommand, ExecutorArgs, StorageArgs};

/// Runs a cluster node until `stop` resolves (the executor also stops on Ctrl-C and SIGTERM
/// by itself).
pub async fn run(command: BallistaCommand, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    match command {
        BallistaCommand::Scheduler { addr, storage } => {
            let store = object_store(&storage)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let bound = listener.local_addr()?;
            println!("headroom ballista scheduler ready scheduler={bound}");
            tokio::select! {
                served = run_scheduler(listener, Some(store)) => served?,
                () = stop => {}
            }
        }
        BallistaCommand::Executor(args) => executor(args, stop).await?,
    }
    Ok(())
}

/// The object store the plans read, and its URL without the prefix (`s3://bucket`).
fn object_store(
    args: &StorageArgs,
) -> anyhow::Result<(String, std::sync::Arc<dyn object_store::ObjectStore>)> {
    let url = crate::serve::storage_url(&args.storage)?;
    let (store, base, _) = headroom_storage::remote::connect(&url, &args.storage_options)?;
    Ok((base, store))
}

async fn executor(args: ExecutorArgs, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (scheduler_host, scheduler_port) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--scheduler {}: use host:port", args.scheduler))?;
    let store = object_store(&args.storage)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let settings = ExecutorSettings {
        bind_host: args.bind_host,
        external_host: args.external_host,
        port: args.flight_port,
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: args.task_slots,
        work_dir: args.work_dir,
        memory_bytes: args.memory_limit_bytes,
    };
    println!(
        "headroom ballista executor ready flight_port={} scheduler={}",
        settings.port, args.scheduler
    );
    tokio::select! {
        served = run_executor(settings, Some(store)) => served?,
        () = stop => {}
    }
    Ok(())
}
