//! What PostgreSQL clients look for in a server besides the user's tables: an
//! `information_schema` in PostgreSQL's terms (type names, `udt_name`), `pg_catalog` (from
//! `datafusion-pg-catalog`), `version()` and `current_setting()`. Registered in the one query
//! session, so the HTTP API answers these queries the same way.
//!
//! DataFusion's own `information_schema` names Arrow types (`Timestamp(ns, "UTC")`, `Utf8`)
//! and has no `udt_name`; Grafana's query builder and JDBC metadata need PostgreSQL's names, so
//! this one replaces it.

use std::sync::{Arc, Weak};

use arrow::array::{ArrayBuilder, ArrayRef, Int32Builder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::client_columns::readable_type;

/// The PostgreSQL version Headroom answers as (`server_version`, `version()`).
pub const SERVER_VERSION: &str = "16.6";
const SERVER_VERSION_NUM: &str = "160006";
pub const INFORMATION_SCHEMA: &str = "information_schema";
const PG_CATALOG: &str = "pg_catalog";

/// Registers `pg_catalog`, `information_schema`, `version()` and `current_setting()` in the
/// session's catalog `catalog`.
pub fn register(ctx: &SessionContext, catalog: &str) -> Result<()> {
    datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        ctx,
        catalog,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| *e)?;
    let info = Arc::new(InformationSchema {
        catalogs: Arc::downgrade(ctx.state().catalog_list()),
    });
    ctx.catalog(catalog)
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog {catalog}")))?
        .register_schema(INFORMATION_SCHEMA, info)?;
    register_functions(ctx);
    Ok(())
}

/// PostgreSQL's functions that Headroom provides itself (`version()`, `current_setting()`).
pub fn register_functions(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(Version::new()));
    ctx.register_udf(ScalarUDF::from(CurrentSetting::new()));
}

/// Removes `pg_catalog` from the session: its tables hold the session's catalog list, a
/// reference cycle that would otherwise keep the session and the store alive after shutdown.
pub fn unregister(ctx: &SessionContext, catalog: &str) {
    if let Some(c) = ctx.catalog(catalog) {
        let _ = c.deregister_schema(PG_CATALOG, true);
    }
}

/// PostgreSQL's names for an Arrow type as a client receives it: (`data_type`, `udt_name`).
pub fn pg_type_names(data_type: &DataType) -> (String, String) {
    let (data_type, udt) = match readable_type(data_type) {
        DataType::Boolean => ("boolean", "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("smallint", "int2"),
        DataType::Int32 | DataType::UInt16 => ("integer", "int4"),
        DataType::Int64 | DataType::UInt32 => ("bigint", "int8"),
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            ("numeric", "numeric")
        }
        DataType::Float16 | DataType::Float32 => ("real", "float4"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Date32 | DataType::Date64 => ("date", "date"),
        DataType::Time32(_) | DataType::Time64(_) => ("time without time zone", "time"),
        DataType::Interval(_) | DataType::Duration(_) => ("interval", "interval"),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let (_, inner) = pg_type_names(f.data_type());
            return ("ARRAY".into(), format!("_{inner}"));
        }
        _ => ("text", "text"),
    };
    (data_type.into(), udt.into())
}

/// Precision of numeric types as PostgreSQL reports it (binary digits for integers and floats).
fn numeric_precision(udt: &str) -> Option<i32> {
    match udt {
        "int2" => Some(16),
        "int4" => Some(32),
        "int8" => Some(64),
        "float4" => Some(24),
        "float8" => Some(53),
        _ => None,
    }
}

/// `information_schema.{schemata, tables, columns, views}`, computed from the catalog each
/// time a query names them, so tables and views registered later appear.
#[derive(Debug)]
struct InformationSchema {
    /// Weak: the catalog list holds this schema.
    catalogs: Weak<dyn CatalogProviderList>,
}

/// One user table or view: (catalog, schema, name, provider).
type TableEntry = (String, String, String, Arc<dyn TableProvider>);

impl InformationSchema {
    fn catalogs(&self) -> Result<Arc<dyn CatalogProviderList>> {
        self.catalogs
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the query session is closed".into()))
    }

    async fn user_tables(&self) -> Result<Vec<TableEntry>> {
        let mut out = Vec::new();
        let catalogs = self.catalogs()?;
        for catalog_name in catalogs.catalog_names() {
            let Some(catalog) = catalogs.catalog(&catalog_name) else {
                continue;
            };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema_name in schemas {
                if schema_name == PG_CATALOG || schema_name == INFORMATION_SCHEMA {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let mut names = schema.table_names();
                names.sort();
                for name in names {
                    if let Some(table) = schema.table(&name).await? {
                        out.push((catalog_name.clone(), schema_name.clone(), name, table));
                    }
                }
            }
        }
        Ok(out)
    }

    fn schemata(&self) -> Result<RecordBatch> {
        let (mut catalog_col, mut schema_col) = (StringBuilder::new(), StringBuilder::new());
        let catalogs = self.catalogs()?;
        for catalog_name in catalogs.catalog_names() {
            let Some(catalog) = catalogs.catalog(&catalog_name) else {
                continue;
            };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema_name in schemas {
                catalog_col.append_value(&catalog_name);
                schema_col.append_value(&schema_name);
            }
        }
        let n = catalog_col.len();
        batch(vec![
            ("catalog_name", Arc::new(catalog_col.finish())),
            ("schema_name", Arc::new(schema_col.finish())),
            (
                "schema_owner",
                Arc::new(StringArray::from(vec!["headroom"; n])),
            ),
        ])
    }

    async fn tables(&self, views_only: bool) -> Result<RecordBatch> {
        let mut cols: [StringBuilder; 4] = Default::default();
        for (catalog, schema, name, table) in self.user_tables().await? {
            let kind = match table.table_type() {
                TableType::View => "VIEW",
                TableType::Base => "BASE TABLE",
                TableType::Temporary => "LOCAL TEMPORARY",
            };
            if views_only && kind != "VIEW" {
                continue;
            }
            for (b, v) in cols.iter_mut().zip([&catalog, &schema, &name, kind]) {
                b.append_value(v);
            }
        }
        let [catalog, schema, name, kind] = cols.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        if views_only {
            let n = catalog.len();
            return batch(vec![
                ("table_catalog", catalog),
                ("table_schema", schema),
                ("table_name", name),
                (
                    "view_definition",
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                ),
            ]);
        }
        batch(vec![
            ("table_catalog", catalog),
            ("table_schema", schema),
            ("table_name", name),
            ("table_type", kind),
        ])
    }

    async fn columns(&self) -> Result<RecordBatch> {
        let mut text: [StringBuilder; 7] = Default::default();
        let (mut ordinal, mut precision, mut radix, mut datetime_precision) = (
            Int32Builder::new(),
            Int32Builder::new(),
            Int32Builder::new(),
            Int32Builder::new(),
        );
        for (catalog, schema, name, table) in self.user_tables().await? {
            for (i, field) in table.schema().fields().iter().enumerate() {
                let (data_type, udt) = pg_type_names(field.data_type());
                let nullable = if field.is_nullable() { "YES" } else { "NO" };
                let values = [
                    catalog.as_str(),
                    &schema,
                    &name,
                    field.name(),
                    nullable,
                    &data_type,
                    &udt,
                ];
                for (b, v) in text.iter_mut().zip(values) {
                    b.append_value(v);
                }
                ordinal.append_value(i as i32 + 1);
                let p = numeric_precision(&udt);
                precision.append_option(p);
                radix.append_option(p.map(|_| 2));
                datetime_precision.append_option(udt.starts_with("timestamp").then_some(6));
            }
        }
        let [catalog, schema, name, column, nullable, data_type, udt] =
            text.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let n = catalog.len();
        let nulls_text: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>; n]));
        let nulls_int: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![None; n]));
        batch(vec![
            ("table_catalog", catalog.clone()),
            ("table_schema", schema),
            ("table_name", name),
            ("column_name", column),
            ("ordinal_position", Arc::new(ordinal.finish())),
            ("column_default", nulls_text),
            ("is_nullable", nullable),
            ("data_type", data_type),
            ("character_maximum_length", nulls_int.clone()),
            ("numeric_precision", Arc::new(precision.finish())),
            ("numeric_precision_radix", Arc::new(radix.finish())),
            ("numeric_scale", nulls_int),
            ("datetime_precision", Arc::new(datetime_precision.finish())),
            ("udt_catalog", catalog),
            (
                "udt_schema",
                Arc::new(StringArray::from(vec![PG_CATALOG; n])),
            ),
            ("udt_name", udt),
        ])
    }
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(
        schema,
        columns.into_iter().map(|(_, a)| a).collect(),
    )?)
}

const INFORMATION_SCHEMA_TABLES: [&str; 4] = ["columns", "schemata", "tables", "views"];

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        INFORMATION_SCHEMA_TABLES.map(String::from).to_vec()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name.to_ascii_lowercase().as_str() {
            "columns" => self.columns().await?,
            "schemata" => self.schemata()?,
            "tables" => self.tables(false).await?,
            "views" => self.tables(true).await?,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        INFORMATION_SCHEMA_TABLES.contains(&name.to_ascii_lowercase().as_str())
    }
}

/// `version()`, in the shape clients parse (`PostgreSQL <major>.<minor> …`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Version {
    signature: Signature,
}

impl Version {
    fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(format!(
            "PostgreSQL {SERVER_VERSION} (Headroom {}, Apache DataFusion {})",
            env!("CARGO_PKG_VERSION"),
            datafusion::DATAFUSION_VERSION
        )))))
    }
}

/// `current_setting(name [, missing_ok])` for the settings clients ask about.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "search_path" => "public",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "client_encoding" | "server_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C",
        _ => return None,
    })
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = matches!(
            args.args.get(1),
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
        );
        let names = args.args[0].to_array(args.number_rows)?;
        let names = arrow::array::as_string_array(&names);
        let mut out = StringBuilder::new();
        for name in names {
            match name.map(|n| (n, setting(n))) {
                None | Some((_, None)) if missing_ok => out.append_null(),
                None => out.append_null(),
                Some((_, Some(v))) => out.append_value(v),
                Some((n, None)) => {
                    return Err(DataFusionError::Plan(format!(
                        "unrecognized configuration parameter \"{n}\""
                    )));
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(match args.number_rows {
            1 if matches!(args.args[0], ColumnarValue::Scalar(_)) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            }
            _ => ColumnarValue::Array(array),
        })
    }
}
