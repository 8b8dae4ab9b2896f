//! Every SQL function Headroom adds to DataFusion, registered in one place: the query
//! engine's session and every Ballista executor register the same set, so a plan that names
//! one runs wherever it is sent.

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

use crate::client_columns::ToJson;

/// Registers Headroom's own functions (and the JSON ones) in `ctx`.
pub(crate) fn register(ctx: &mut SessionContext) -> datafusion::error::Result<()> {
    datafusion_functions_json::register_all(ctx)?;
    ctx.register_udf(ScalarUDF::from(ToJson::new()));
    crate::histogram::register(ctx);
    crate::exp_histogram::register(ctx);
    crate::sketch::register(ctx);
    crate::stats::register(ctx);
    crate::pg_compat::register_functions(ctx);
    Ok(())
}
