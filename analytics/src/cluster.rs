//! Queries on an Apache Ballista cluster (`--query-engine ballista`).
//!
//! The server plans each query exactly as it would run it itself (the same tables, views,
//! functions and optimizer rules, over one snapshot of the files) and submits the *physical*
//! plan to the Ballista scheduler, which cuts it into stages at its shuffles and runs them on
//! its executors. Planning on the scheduler instead would need this server's catalog there:
//! its views, its settings tables and the file lists of every writer's manifest, none of which
//! Ballista's logical plan carries; the physical plan names every file it reads. So that the
//! executors can read them, a cluster query reads what is published to the object store
//! (`--storage`), by key, from every writer: the same rows whichever server is asked, and none
//! of the rows still buffered in memory here (they show after the next flush).
//!
//! Executors and the scheduler decode plans that call Headroom's functions (latency sketches,
//! histograms, JSON, PostgreSQL compatibility), so they run as `headroom ballista executor` and
//! `headroom ballista scheduler`, which register them; stock Ballista binaries would refuse
//! those plans.

use std::fmt;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::config::{
    BALLISTA_ADAPTIVE_PLANNER_ENABLED, BallistaConfig, TaskSchedulingPolicy,
};
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::TryStreamExt;
use headroom_storage::store::{Snapshot, Store};
use object_store::ObjectStore;

use crate::catalog::SnapshotSource;

/// Where the cluster's scheduler is.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `http://host:port` of the scheduler's gRPC service.
    scheduler_url: String,
}

impl Cluster {
    /// `url` is `df://host:port` (as Ballista's clients write it) or `http://host:port`.
    pub fn new(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("df://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                DataFusionError::Configuration(format!(
                    "--ballista-scheduler {url}: use df://host:port"
                ))
            })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(DataFusionError::Configuration(format!(
                "--ballista-scheduler {url}: use df://host:port"
            )));
        }
        let rest = if rest.contains(':') {
            rest.to_owned()
        } else {
            format!("{rest}:50050")
        };
        Ok(Self {
            scheduler_url: format!("http://{rest}"),
        })
    }

    pub fn scheduler_url(&self) -> &str {
        &self.scheduler_url
    }

    /// Replaces `plan`'s input below its per-query guard (or `plan` itself) by a node that
    /// runs it on the cluster: the guard's deadline and memory limit stay here, around the
    /// stream of results.
    ///
    /// A plan that cannot be sent runs here: one reading PostgreSQL's catalog tables, which
    /// exist only in this server's session.
    pub fn distribute(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let guarded = plan.is::<crate::query_limits::GuardExec>();
        let input = if guarded {
            plan.children()
                .first()
                .map(|c| Arc::clone(*c))
                .ok_or_else(|| DataFusionError::Internal("guard without input".into()))?
        } else {
            plan.clone()
        };
        let codec = ballista_core::serde::BallistaPhysicalExtensionCodec::default();
        if let Err(e) = PhysicalPlanNode::try_from_physical_plan(input.clone(), &codec) {
            tracing::debug!(error = %e, "a plan that cannot be sent to the cluster runs here");
            return Ok(plan);
        }
        let on_cluster = Arc::new(OnCluster::new(input, self.clone()));
        if guarded {
            datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                plan,
                vec![on_cluster],
            )
        } else {
            Ok(on_cluster)
        }
    }
}

/// Session settings sent with every job: Ballista's defaults, with its adaptive planner off
/// (a submitted physical plan is final).
fn job_config() -> SessionConfig {
    SessionConfig::new_with_ballista().set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
}

/// Runs its input on the cluster and streams the result back.
#[derive(Debug)]
pub struct OnCluster {
    input: Arc<dyn ExecutionPlan>,
    cluster: Cluster,
    properties: Arc<PlanProperties>,
}

impl OnCluster {
    fn new(input: Arc<dyn ExecutionPlan>, cluster: Cluster) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            input,
            cluster,
            properties,
        }
    }
}

impl DisplayAs for OnCluster {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OnCluster: scheduler={}", self.cluster.scheduler_url)
    }
}

impl ExecutionPlan for OnCluster {
    fn name(&self) -> &str {
        "OnCluster"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("OnCluster has one input".into()))?;
        Ok(Arc::new(Self::new(input, self.cluster.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "OnCluster has one partition, not {partition}"
            )));
        }
        let (plan, url) = (self.input.clone(), self.cluster.scheduler_url.clone());
        let session_id = context.session_id();
        let schema = self.input.schema();
        let submitted = async move {
            let codec = ballista_core::serde::BallistaPhysicalExtensionCodec::default();
            ballista_core::execution_plans::execute_physical_plan::<PhysicalPlanNode>(
                url,
                &BallistaConfig::default(),
                plan,
                &codec,
                session_id,
                job_config(),
            )
            .await
        };
        let stream = futures::stream::once(submitted).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// The tables as the cluster reads them: every writer's published files, by key in the object
/// store, and no buffered rows (see the module docs).
pub struct Published(pub Arc<Store>);

impl SnapshotSource for Published {
    fn snapshot(&self, table: &str) -> std::result::Result<Snapshot, String> {
        let mut snap = self.0.snapshot(table).map_err(|e| e.to_string())?;
        let remote = self
            .0
            .config()
            .remote
            .as_deref()
            .ok_or("queries on a cluster read the object store: set --storage")?;
        let root = self.0.root();
        for mut f in std::mem::take(&mut snap.files) {
            f.path = remote
                .key_of(root, &f.path)
                .map_err(|e| e.to_string())?
                .to_string()
                .into();
            snap.remote_files.push(f);
        }
        snap.batches.clear();
        Ok(snap)
    }

    fn object_store(&self) -> Option<(String, Arc<dyn ObjectStore>)> {
        self.0.object_store()
    }
}

/// A session with every function Headroom's plans may call, for the scheduler and executors
/// to decode them with.
fn functions_session(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    crate::functions::register(&mut ctx)?;
    Ok(ctx)
}

/// Runtimes that read the object store at `url` (as `s3://bucket`).
fn runtime_producer(store: Option<(String, Arc<dyn ObjectStore>)>) -> Result<RuntimeProducer> {
    let store = match store {
        Some((url, store)) => Some((
            url::Url::parse(&url)
                .map_err(|e| DataFusionError::Configuration(format!("{url}: {e}")))?,
            store,
        )),
        None => None,
    };
    Ok(Arc::new(move |_: &SessionConfig| {
        let runtime: RuntimeEnv = RuntimeEnvBuilder::new().build()?;
        if let Some((url, store)) = &store {
            runtime.register_object_store(url, store.clone());
        }
        Ok(Arc::new(runtime))
    }))
}

/// A Ballista scheduler on `listener`, which knows Headroom's functions and the object store
/// the plans name (it decodes them); runs until the process ends.
pub async fn run_scheduler(
    listener: tokio::net::TcpListener,
    store: Option<(String, Arc<dyn ObjectStore>)>,
) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    use ballista_scheduler::scheduler_process::{
        create_scheduler, start_grpc_service_with_listener,
    };
    let addr = listener.local_addr()?;
    let config = SchedulerConfig::default()
        .with_hostname(addr.ip().to_string())
        .with_port(addr.port())
        .with_scheduler_policy(TaskSchedulingPolicy::PullStaged)
        .with_override_config_producer(Arc::new(job_config))
        .with_override_session_builder({
            let runtime = runtime_producer(store)?;
            Arc::new(move |config: SessionConfig| {
                let runtime = runtime(&config)?;
                Ok(functions_session(config, runtime)?.state())
            })
        });
    let ballista = |e: ballista_core::error::BallistaError| DataFusionError::External(Box::new(e));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista)?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(ballista)?;
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(ballista)
}

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub bind_host: String,
    /// The host name or address the scheduler and other executors reach it at.
    pub external_host: String,
    /// Arrow Flight port (shuffle reads and results).
    pub port: u16,
    pub grpc_port: u16,
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Tasks run at once (0: one per core).
    pub vcores: usize,
    /// Where shuffle files are written.
    pub work_dir: std::path::PathBuf,
    /// Memory all tasks together may use.
    pub memory_bytes: u64,
}

/// A Ballista executor that knows Headroom's functions and reads `store` (at `url`, as
/// `s3://bucket`); runs until the process is stopped (Ctrl-C, SIGTERM).
pub async fn run_executor(
    settings: ExecutorSettings,
    store: Option<(String, Arc<dyn ObjectStore>)>,
) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let runtime = runtime_producer(store)?;
    let functions = BallistaFunctionRegistry::from(
        &functions_session(job_config(), runtime(&job_config())?)?.state(),
    );
    let config = ExecutorProcessConfig {
        bind_host: settings.bind_host,
        external_host: Some(settings.external_host),
        port: settings.port,
        grpc_port: settings.grpc_port,
        scheduler_host: settings.scheduler_host,
        scheduler_port: settings.scheduler_port,
        vcores: settings.vcores,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(settings.work_dir.to_string_lossy().into_owned()),
        memory_pool_size: Some(settings.memory_bytes),
        override_function_registry: Some(Arc::new(functions)),
        override_runtime_producer: Some(runtime),
        override_config_producer: Some(Arc::new(job_config)),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_urls() {
        for (given, want) in [
            ("df://127.0.0.1:50050", "http://127.0.0.1:50050"),
            ("df://scheduler", "http://scheduler:50050"),
            ("http://10.0.0.1:7000", "http://10.0.0.1:7000"),
        ] {
            assert_eq!(Cluster::new(given).unwrap().scheduler_url(), want);
        }
        for bad in [
            "",
            "df://",
            "scheduler:50050",
            "grpc://x:1",
            "df://x:1/path",
        ] {
            assert!(Cluster::new(bad).is_err(), "{bad}");
        }
    }
}
