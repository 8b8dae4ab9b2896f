//! Statistics the KPI views need that SQL lacks: `normal_cdf(z)`, the standard normal
//! distribution function, for the p-values of `deploy_impact`'s tests. Computed as
//! `erfc(-z / √2) / 2` with libm's `erfc`, which keeps its relative precision in the tails
//! (`2 * normal_cdf(-abs(z))` is a two-sided p-value down to about 1e-300).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array};
use arrow::datatypes::DataType;
use datafusion::common::cast::as_float64_array;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Φ(z).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn invoke(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let z = as_float64_array(&arrays[0])?;
    let out: Float64Array = z.iter().map(|v| v.map(normal_cdf)).collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

pub fn register(ctx: &SessionContext) {
    let udf: ScalarUDF = create_udf(
        "normal_cdf",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(invoke),
    );
    ctx.register_udf(udf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_normal_values() {
        // Tables: Φ(0) = 0.5, Φ(1.959964) = 0.975, Φ(-1) = 0.158655, Φ(-10) = 7.6199e-24.
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
        assert!((normal_cdf(-1.0) - 0.158_655_253_931_457).abs() < 1e-12);
        let tail = normal_cdf(-10.0);
        assert!(
            (tail / 7.619_853_024_160_526e-24 - 1.0).abs() < 1e-9,
            "{tail}"
        );
    }
}
