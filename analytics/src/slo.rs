//! Service level objectives: declared in a TOML file (`--slo-config-path`), or one default
//! per service, and evaluated by the `slo_status` view (`queries/slo_status.sql`) over
//! `server_requests`.
//!
//! The file covers the fields of OpenSLO's `SLO` and Sloth's `slos` entries:
//!
//! ```toml
//! [defaults]                   # for services without an SLO of their own
//! objective_percent = 99.9     # OpenSLO objectives[].target, Sloth objective
//! window_days = 28             # OpenSLO timeWindow (rolling), Sloth: the SLO period
//! min_requests = 10            # no alert below this many requests in the alert's long window
//! incident_merge_gap_minutes = 5  # breaching minutes this close belong to one incident
//!
//! [[slo]]
//! name = "checkout-latency"    # OpenSLO metadata.name, Sloth slos[].name
//! service = "checkout"         # OpenSLO service, Sloth service
//! indicator = "latency"        # "availability" (good = not bad) or "latency" (good = not bad
//!                              # and no slower than latency_threshold_ms): OpenSLO indicator
//! latency_threshold_ms = 300
//! objective_percent = 99.0
//! window_days = 7
//! budgeting = "timeslices"     # "occurrences" (default) or "timeslices": OpenSLO
//! timeslice_minutes = 1        # budgetingMethod, timeSliceWindow, timeSliceTarget
//! timeslice_target_percent = 95
//!
//! [slo.alerting]               # also [defaults.alerting]; Sloth's alerting section
//! page = true                  # false: never page (Sloth page_alert.disable)
//! ticket = true                # false: never open a ticket (Sloth ticket_alert.disable)
//! page_burn_rate_1h = 14.4     # fast page: burn rate above this over 1 h and 5 min
//! page_burn_rate_6h = 6        # slow page: above this over 6 h and 30 min
//! ticket_burn_rate_3d = 1      # ticket: above this over 3 d and 6 h
//! ```
//!
//! Alerting follows the multi-window, multi-burn-rate alerts of the SRE workbook (Sloth's and
//! Pyrra's defaults): page when the burn rate is above 14.4 over 1 h and 5 min, or above 6 over
//! 6 h and 30 min; ticket when above 1 over 3 d and 6 h. The windows are those four pairs; the
//! burn rates and which alerts fire are configurable.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use headroom_storage::time::{NANOS_PER_DAY, NANOS_PER_MINUTE};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Indicator {
    Availability,
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Budgeting {
    #[default]
    Occurrences,
    Timeslices,
}

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    slo: Vec<SloEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default = "default_objective")]
    objective_percent: f64,
    #[serde(default = "default_window_days")]
    window_days: f64,
    #[serde(default = "default_min_requests")]
    min_requests: i64,
    #[serde(default = "default_merge_gap")]
    incident_merge_gap_minutes: i64,
    #[serde(default)]
    alerting: AlertingEntry,
}

/// An `alerting` section as written; what it leaves out comes from the defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlertingEntry {
    page: Option<bool>,
    ticket: Option<bool>,
    page_burn_rate_1h: Option<f64>,
    page_burn_rate_6h: Option<f64>,
    ticket_burn_rate_3d: Option<f64>,
}

/// Which multi-window burn-rate alerts an SLO raises, and at what burn rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    pub page: bool,
    pub ticket: bool,
    pub page_burn_rate_1h: f64,
    pub page_burn_rate_6h: f64,
    pub ticket_burn_rate_3d: f64,
}

impl Default for Alerting {
    /// The SRE workbook's: 2 % of a 30-day budget in 1 h, 5 % in 6 h, 10 % in 3 days.
    fn default() -> Self {
        Self {
            page: true,
            ticket: true,
            page_burn_rate_1h: 14.4,
            page_burn_rate_6h: 6.0,
            ticket_burn_rate_3d: 1.0,
        }
    }
}

impl AlertingEntry {
    fn resolve(&self, base: &Alerting, at: &str) -> Result<Alerting, String> {
        let rate = |name: &str, value: Option<f64>, default: f64| match value {
            None => Ok(default),
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(v) => Err(format!(
                "{at}alerting.{name} must be a positive number, got {v}"
            )),
        };
        Ok(Alerting {
            page: self.page.unwrap_or(base.page),
            ticket: self.ticket.unwrap_or(base.ticket),
            page_burn_rate_1h: rate(
                "page_burn_rate_1h",
                self.page_burn_rate_1h,
                base.page_burn_rate_1h,
            )?,
            page_burn_rate_6h: rate(
                "page_burn_rate_6h",
                self.page_burn_rate_6h,
                base.page_burn_rate_6h,
            )?,
            ticket_burn_rate_3d: rate(
                "ticket_burn_rate_3d",
                self.ticket_burn_rate_3d,
                base.ticket_burn_rate_3d,
            )?,
        })
    }
}

fn default_merge_gap() -> i64 {
    5
}

fn default_objective() -> f64 {
    99.9
}
fn default_window_days() -> f64 {
    28.0
}
fn default_min_requests() -> i64 {
    10
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            objective_percent: default_objective(),
            window_days: default_window_days(),
            min_requests: default_min_requests(),
            incident_merge_gap_minutes: default_merge_gap(),
            alerting: AlertingEntry::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloEntry {
    name: String,
    service: String,
    indicator: Indicator,
    latency_threshold_ms: Option<f64>,
    objective_percent: Option<f64>,
    window_days: Option<f64>,
    #[serde(default)]
    budgeting: Budgeting,
    timeslice_minutes: Option<f64>,
    timeslice_target_percent: Option<f64>,
    #[serde(default)]
    alerting: AlertingEntry,
}

/// One objective, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub service: String,
    pub indicator: Indicator,
    pub latency_threshold_ns: Option<i64>,
    /// Fraction of good events, e.g. 0.999.
    pub objective: f64,
    pub window_ns: i64,
    pub budgeting: Budgeting,
    pub timeslice_ns: i64,
    /// Fraction of good events that makes a time slice good.
    pub timeslice_target: f64,
    pub alerting: Alerting,
}

/// Every SLO, and the default for services without one.
#[derive(Debug, Clone, PartialEq)]
pub struct SloConfig {
    pub slos: Vec<Slo>,
    pub default_objective: f64,
    pub default_window_ns: i64,
    pub min_requests: i64,
    /// Breaching minutes at most this many minutes apart belong to one incident.
    pub incident_merge_gap_minutes: i64,
    /// The alerting of the default SLO, and what SLOs without their own inherit.
    pub default_alerting: Alerting,
}

impl SloConfig {
    /// How far back any SLO looks, in whole seconds: its window, or the 3 days the longest
    /// burn rate needs, whichever is longer.
    pub fn history_seconds(&self) -> i64 {
        self.slos
            .iter()
            .map(|s| s.window_ns)
            .chain([self.default_window_ns, 3 * NANOS_PER_DAY])
            .max()
            .unwrap_or(0)
            .saturating_add(999_999_999)
            / 1_000_000_000
    }
}

impl Default for SloConfig {
    fn default() -> Self {
        Self::from_toml("").expect("the empty configuration is valid")
    }
}

fn percent(what: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 && value < 100.0 {
        // Rounded to 1e-10 so 99.9 % is the double nearest 0.999, not 0.9990000000000001.
        Ok((value * 1e8).round() / 1e10)
    } else {
        Err(format!(
            "{what} must be a percentage above 0 and below 100, got {value}"
        ))
    }
}

fn positive(what: &str, value: f64, unit_ns: i64) -> Result<i64, String> {
    if value.is_finite() && value > 0.0 {
        Ok((value * unit_ns as f64).round() as i64)
    } else {
        Err(format!("{what} must be a positive number, got {value}"))
    }
}

impl SloConfig {
    /// Reads and checks an SLO file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read SLO file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("SLO file {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let d = &file.defaults;
        let default_objective = percent("defaults.objective_percent", d.objective_percent)?;
        let default_window_ns = positive("defaults.window_days", d.window_days, NANOS_PER_DAY)?;
        if d.min_requests < 0 {
            return Err(format!(
                "defaults.min_requests must be 0 or more, got {}",
                d.min_requests
            ));
        }
        if d.incident_merge_gap_minutes < 0 {
            return Err(format!(
                "defaults.incident_merge_gap_minutes must be 0 or more, got {}",
                d.incident_merge_gap_minutes
            ));
        }
        let default_alerting = d.alerting.resolve(&Alerting::default(), "defaults.")?;
        let mut slos: Vec<Slo> = Vec::new();
        for e in file.slo {
            let at = format!("slo {:?}", e.name);
            if e.name.trim().is_empty() || e.service.trim().is_empty() {
                return Err("every [[slo]] needs a name and a service".into());
            }
            if slos.iter().any(|s| s.name == e.name) {
                return Err(format!("{at} is declared twice"));
            }
            let latency_threshold_ns = match (e.indicator, e.latency_threshold_ms) {
                (Indicator::Latency, Some(ms)) => Some(positive(
                    &format!("{at}: latency_threshold_ms"),
                    ms,
                    1_000_000,
                )?),
                (Indicator::Latency, None) => {
                    return Err(format!("{at}: a latency SLO needs latency_threshold_ms"));
                }
                (Indicator::Availability, Some(_)) => {
                    return Err(format!(
                        "{at}: latency_threshold_ms is for indicator = \"latency\""
                    ));
                }
                (Indicator::Availability, None) => None,
            };
            let objective = match e.objective_percent {
                Some(p) => percent(&format!("{at}: objective_percent"), p)?,
                None => default_objective,
            };
            let window_ns = match e.window_days {
                Some(days) => positive(&format!("{at}: window_days"), days, NANOS_PER_DAY)?,
                None => default_window_ns,
            };
            let (timeslice_ns, timeslice_target) = match e.budgeting {
                Budgeting::Occurrences => {
                    if e.timeslice_minutes.is_some() || e.timeslice_target_percent.is_some() {
                        return Err(format!(
                            "{at}: timeslice_* settings need budgeting = \"timeslices\""
                        ));
                    }
                    (NANOS_PER_MINUTE, objective)
                }
                Budgeting::Timeslices => (
                    positive(
                        &format!("{at}: timeslice_minutes"),
                        e.timeslice_minutes.unwrap_or(1.0),
                        NANOS_PER_MINUTE,
                    )?,
                    match e.timeslice_target_percent {
                        Some(p) => percent(&format!("{at}: timeslice_target_percent"), p)?,
                        None => objective,
                    },
                ),
            };
            slos.push(Slo {
                name: e.name,
                service: e.service,
                indicator: e.indicator,
                latency_threshold_ns,
                objective,
                window_ns,
                budgeting: e.budgeting,
                timeslice_ns,
                timeslice_target,
                alerting: e.alerting.resolve(&default_alerting, &format!("{at}: "))?,
            });
        }
        Ok(Self {
            slos,
            default_objective,
            default_window_ns,
            min_requests: d.min_requests,
            incident_merge_gap_minutes: d.incident_merge_gap_minutes,
            default_alerting,
        })
    }
}

/// Registers `slo_definitions`: one row per declared SLO, and a row with service `*` for the
/// default that `slo_status` applies to every other service.
pub fn register(ctx: &SessionContext, config: &SloConfig) -> Result<()> {
    let default = Slo {
        name: "availability".into(),
        service: "*".into(),
        indicator: Indicator::Availability,
        latency_threshold_ns: None,
        objective: config.default_objective,
        window_ns: config.default_window_ns,
        budgeting: Budgeting::Occurrences,
        timeslice_ns: NANOS_PER_MINUTE,
        timeslice_target: config.default_objective,
        alerting: config.default_alerting.clone(),
    };
    let rows: Vec<&Slo> = config.slos.iter().chain([&default]).collect();
    let text = |f: fn(&Slo) -> String| -> Arc<StringArray> {
        Arc::new(rows.iter().map(|s| Some(f(s))).collect::<StringArray>())
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("slo_name", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("indicator", DataType::Utf8, false),
        Field::new("latency_threshold_ns", DataType::Int64, true),
        Field::new("objective", DataType::Float64, false),
        Field::new("window_ns", DataType::Int64, false),
        Field::new("budgeting", DataType::Utf8, false),
        Field::new("timeslice_ns", DataType::Int64, false),
        Field::new("timeslice_target", DataType::Float64, false),
        Field::new("min_requests", DataType::Int64, false),
        Field::new("page_alert", DataType::Boolean, false),
        Field::new("ticket_alert", DataType::Boolean, false),
        Field::new("page_burn_rate_1h", DataType::Float64, false),
        Field::new("page_burn_rate_6h", DataType::Float64, false),
        Field::new("ticket_burn_rate_3d", DataType::Float64, false),
    ]));
    let flag = |f: fn(&Alerting) -> bool| -> Arc<BooleanArray> {
        Arc::new(rows.iter().map(|s| Some(f(&s.alerting))).collect())
    };
    let rate = |f: fn(&Alerting) -> f64| -> Arc<Float64Array> {
        Arc::new(rows.iter().map(|s| Some(f(&s.alerting))).collect())
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            text(|s| s.name.clone()),
            text(|s| s.service.clone()),
            text(|s| format!("{:?}", s.indicator).to_lowercase()),
            Arc::new(
                rows.iter()
                    .map(|s| s.latency_threshold_ns)
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|s| Some(s.objective))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|s| Some(s.window_ns))
                    .collect::<Int64Array>(),
            ),
            text(|s| format!("{:?}", s.budgeting).to_lowercase()),
            Arc::new(
                rows.iter()
                    .map(|s| Some(s.timeslice_ns))
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|s| Some(s.timeslice_target))
                    .collect::<Float64Array>(),
            ),
            Arc::new(Int64Array::from(vec![config.min_requests; rows.len()])),
            flag(|a| a.page),
            flag(|a| a.ticket),
            rate(|a| a.page_burn_rate_1h),
            rate(|a| a.page_burn_rate_6h),
            rate(|a| a.ticket_burn_rate_3d),
        ],
    )?;
    ctx.register_table(
        "slo_definitions",
        Arc::new(crate::catalog::SettingsTable::new(batch)?),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let c = SloConfig::default();
        assert!(c.slos.is_empty());
        assert_eq!(c.default_objective, 0.999);
        assert_eq!(c.default_window_ns, 28 * NANOS_PER_DAY);
    }

    #[test]
    fn a_file_with_both_indicators() {
        let c = SloConfig::from_toml(
            r#"
            [defaults]
            objective_percent = 99.5
            [[slo]]
            name = "checkout-latency"
            service = "checkout"
            indicator = "latency"
            latency_threshold_ms = 300
            objective_percent = 99
            window_days = 7
            budgeting = "timeslices"
            timeslice_minutes = 5
            timeslice_target_percent = 95
            [[slo]]
            name = "cart"
            service = "cart"
            indicator = "availability"
            "#,
        )
        .unwrap();
        assert_eq!(c.slos[0].latency_threshold_ns, Some(300_000_000));
        assert_eq!(c.slos[0].objective, 0.99);
        assert_eq!(c.slos[0].window_ns, 7 * NANOS_PER_DAY);
        assert_eq!(c.slos[0].timeslice_ns, 5 * NANOS_PER_MINUTE);
        assert_eq!(c.slos[0].timeslice_target, 0.95);
        assert_eq!(c.slos[1].objective, 0.995);
        assert_eq!(c.slos[1].budgeting, Budgeting::Occurrences);
        assert_eq!(c.slos[1].alerting, Alerting::default());
    }

    #[test]
    fn alerting_inherits_from_the_defaults() {
        let c = SloConfig::from_toml(
            r#"
            [defaults.alerting]
            ticket = false
            page_burn_rate_6h = 5
            [[slo]]
            name = "cart"
            service = "cart"
            indicator = "availability"
            [slo.alerting]
            page_burn_rate_1h = 10
            "#,
        )
        .unwrap();
        let want = Alerting {
            ticket: false,
            page_burn_rate_6h: 5.0,
            ..Alerting::default()
        };
        assert_eq!(c.default_alerting, want);
        assert_eq!(
            c.slos[0].alerting,
            Alerting {
                page_burn_rate_1h: 10.0,
                ..want
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expect) in [
            (
                "[[slo]]\nname='a'\nservice='s'\nindicator='latency'",
                "latency_threshold_ms",
            ),
            ("[[slo]]\nname='a'\nservice='s'\nindicator='speed'", "speed"),
            (
                "[[slo]]\nname='a'\nservice='s'\nindicator='availability'\nobjective_percent=100",
                "objective_percent",
            ),
            ("[defaults]\nwindow_days=0", "window_days"),
            (
                "[defaults.alerting]\npage_burn_rate_1h=0",
                "defaults.alerting.page_burn_rate_1h",
            ),
            (
                "[[slo]]\nname='a'\nservice='s'\nindicator='availability'\n[slo.alerting]\npage='no'",
                "page",
            ),
            (
                "[[slo]]\nname='a'\nservice='s'\nindicator='availability'\ntypo=1",
                "typo",
            ),
            (
                "[[slo]]\nname='a'\nservice='s'\nindicator='availability'\n[[slo]]\nname='a'\nservice='t'\nindicator='availability'",
                "twice",
            ),
        ] {
            let e = SloConfig::from_toml(text).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
