//! Per-query limits: every physical plan runs under a [`GuardExec`] root that gives the query
//! its own memory pool and a deadline, whichever surface (HTTP, PostgreSQL wire) started it.
//!
//! DataFusion's memory pool belongs to the `RuntimeEnv`, which a session shares between all
//! its queries; a per-query budget therefore needs a per-query pool. The guard swaps it into
//! the query's `TaskContext` when the plan starts executing, so every operator below it
//! (sorts and aggregations spill, hash joins fail) accounts against this query alone. The
//! deadline is checked on every poll of the result stream; dropping the stream cancels the
//! operators underneath.

use std::fmt;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// What one query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory the query's operators may reserve; spilling operators spill beyond it, others
    /// fail the query.
    pub memory_bytes: usize,
    /// Wall-clock time from the start of execution to the last row.
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The error of a query stopped at its deadline.
#[derive(Debug, thiserror::Error)]
#[error("query cancelled: it ran longer than the {0:?} a query may take")]
pub struct QueryTimeout(pub Duration);

/// Wraps the root of every physical plan in a [`GuardExec`]. Runs last among the physical
/// optimizer rules.
#[derive(Debug)]
pub struct GuardRule {
    limits: QueryLimits,
}

impl GuardRule {
    pub fn new(limits: QueryLimits) -> Self {
        Self { limits }
    }
}

impl PhysicalOptimizerRule for GuardRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if plan.is::<GuardExec>() {
            return Ok(plan);
        }
        Ok(Arc::new(GuardExec::new(plan, self.limits)))
    }

    fn name(&self) -> &str {
        "headroom_query_guard"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The root of a guarded plan. One instance per query: its output partitions share one
/// memory pool and one deadline, created when the first partition starts.
#[derive(Debug)]
pub struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    limits: QueryLimits,
    started: OnceLock<(Arc<RuntimeEnv>, tokio::time::Instant)>,
}

impl GuardExec {
    fn new(input: Arc<dyn ExecutionPlan>, limits: QueryLimits) -> Self {
        Self {
            input,
            limits,
            started: OnceLock::new(),
        }
    }

    fn start(&self, shared: &RuntimeEnv) -> &(Arc<RuntimeEnv>, tokio::time::Instant) {
        self.started.get_or_init(|| {
            let pool = TrackConsumersPool::new(
                FairSpillPool::new(self.limits.memory_bytes),
                NonZeroUsize::new(3).expect("3 is not zero"),
            );
            let runtime = RuntimeEnv {
                memory_pool: Arc::new(pool),
                disk_manager: shared.disk_manager.clone(),
                cache_manager: shared.cache_manager.clone(),
                object_store_registry: shared.object_store_registry.clone(),
            };
            (
                Arc::new(runtime),
                tokio::time::Instant::now() + self.limits.timeout,
            )
        })
    }
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "QueryGuard: memory_bytes={}, timeout={:?}",
            self.limits.memory_bytes, self.limits.timeout
        )
    }
}

impl ExecutionPlan for GuardExec {
    fn name(&self) -> &str {
        "QueryGuard"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self::new(input, self.limits))),
            _ => Err(DataFusionError::Internal(
                "QueryGuard takes exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (runtime, deadline) = self.start(&context.runtime_env());
        let context = Arc::new(TaskContext::new(
            context.task_id(),
            context.session_id(),
            context.session_config().clone(),
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            runtime.clone(),
        ));
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(GuardStream {
            schema: inner.schema(),
            inner,
            deadline: Box::pin(tokio::time::sleep_until(*deadline)),
            limits: self.limits,
            done: false,
        }))
    }
}

struct GuardStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limits: QueryLimits,
    done: bool,
}

impl Stream for GuardStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                QueryTimeout(self.limits.timeout),
            )))));
        }
        let memory_bytes = self.limits.memory_bytes;
        self.inner.poll_next_unpin(cx).map(|item| {
            item.map(|r| {
                r.map_err(|e| match e.find_root() {
                    DataFusionError::ResourcesExhausted(_) => e.context(format!(
                        "query cancelled: it needs more than the {} of memory a query may use",
                        bytes(memory_bytes)
                    )),
                    _ => e,
                })
            })
        })
    }
}

impl RecordBatchStream for GuardStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A byte count as people write it: `4 MiB`, `512 KiB`, `100 bytes`.
pub fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
