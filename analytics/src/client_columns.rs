//! Result columns every client can decode. PostgreSQL clients and CSV have no use for Arrow's
//! binary ids, lists of structs or maps; [`readable`] puts a projection on top of a query that
//! renders ids as lowercase hex and nested values as JSON text, and leaves every other column
//! (lists of numbers included: PostgreSQL arrays) as it is.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, Result};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, cast, lit,
};

/// How a column of this type reaches a client that cannot read it as it is.
fn rendering(data_type: &DataType) -> Option<Rendering> {
    match data_type {
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Some(Rendering::Hex),
        DataType::Struct(_) | DataType::Map(..) => Some(Rendering::Json),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
            if f.data_type().is_nested() || rendering(f.data_type()).is_some() =>
        {
            Some(Rendering::Json)
        }
        _ => None,
    }
}

enum Rendering {
    Hex,
    Json,
}

/// The type a client sees for a column of `data_type` after [`readable`].
pub fn readable_type(data_type: &DataType) -> DataType {
    match rendering(data_type) {
        Some(_) => DataType::Utf8,
        None => data_type.clone(),
    }
}

/// `plan` with binary columns as hex text and nested columns as JSON text. Plans without such
/// columns are returned unchanged.
pub fn readable(plan: LogicalPlan) -> Result<LogicalPlan> {
    let schema = plan.schema().clone();
    if schema
        .fields()
        .iter()
        .all(|f| rendering(f.data_type()).is_none())
    {
        return Ok(plan);
    }
    let to_json = Arc::new(ScalarUDF::from(ToJson::new()));
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let col = Expr::Column(Column::from((qualifier, field)));
            match rendering(field.data_type()) {
                None => col,
                Some(Rendering::Hex) => datafusion::functions::encoding::expr_fn::encode(
                    cast(col, DataType::Binary),
                    lit("hex"),
                )
                .alias_qualified(qualifier.cloned(), field.name()),
                Some(Rendering::Json) => to_json
                    .call(vec![col])
                    .alias_qualified(qualifier.cloned(), field.name()),
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// `to_json(value)`: any Arrow value as JSON text (arrow-json's encoding: structs as objects,
/// lists as arrays, binary as hex), NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
}

impl ToJson {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for ToJson {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("to_json takes one argument".into()));
        };
        let array = arg.to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(json_strings(&array)?))
    }
}

/// Each value of `array` as JSON text, through arrow-json's writer (one JSON object per row,
/// then the one member taken out).
fn json_strings(array: &ArrayRef) -> Result<ArrayRef> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![array.clone()])?;
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        writer.write(&batch)?;
        writer.finish()?;
    }
    let mut out = StringBuilder::with_capacity(array.len(), buf.len());
    for (i, line) in buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        let mut row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| DataFusionError::Internal(format!("to_json: {e}")))?;
        match row.remove("v") {
            Some(v) if !v.is_null() => out.append_value(v.to_string()),
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn binary_becomes_hex_and_nested_becomes_json() {
        let ctx = SessionContext::new();
        ctx.register_udf(ScalarUDF::from(ToJson::new()));
        let df = ctx
            .sql(
                "SELECT arrow_cast(X'0aff', 'FixedSizeBinary(2)') AS id, \
                 [named_struct('k', 'a', 'n', 1)] AS events, [1.5, 2.0] AS bounds, 7 AS n",
            )
            .await
            .unwrap();
        let plan = readable(df.logical_plan().clone()).unwrap();
        let fields: Vec<(String, DataType)> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(fields[0], ("id".into(), DataType::Utf8));
        assert_eq!(fields[1], ("events".into(), DataType::Utf8));
        assert!(matches!(fields[2].1, DataType::List(_)), "{fields:?}");
        assert_eq!(fields[3].1, DataType::Int64);
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 0aff "), "{text}");
        assert!(text.contains(r#"[{"k":"a","n":1}]"#), "{text}");
    }
}
