//! Trouble injected into the generated traffic: the demo's deploys and incidents, and the
//! error mix of the load generator.

use crate::model::*;

/// Trouble injected into the generated traffic: the demo's deploys and incidents, and the
/// faults root-cause analysis must find. Set with [`Topology::set_faults`]; they hold until
/// the next call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every baseline failure probability (endpoints and databases) times `factor`: 0.1 makes
    /// the shop ten times healthier.
    ErrorScale(f64),
    /// `service` (running `version`, when given: a release) does its own work
    /// `latency_factor` times as slowly, and its `endpoint` (HTTP route,
    /// `rpc.service/rpc.method` or span name; all of them when `None`) also fails with
    /// probability `error_prob`.
    Service {
        service: String,
        version: Option<String>,
        latency_factor: f64,
        error_prob: f64,
        endpoint: Option<String>,
    },
    /// The `instance`-th instance (pod) of `service` takes `latency_factor` times as long.
    SlowInstance {
        service: String,
        instance: usize,
        latency_factor: f64,
    },
    /// Calls to a database (`db.system`: `postgresql` or `redis`) fail with `error_prob`; the
    /// failure propagates to every caller that needs the answer.
    Database { system: String, error_prob: f64 },
}

/// [`Fault`]s resolved against the model's indices, read on every generated span.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFaults {
    pub(crate) error_scale: f64,
    pub(crate) service_latency: Vec<f64>,
    pub(crate) instance_latency: Vec<f64>,
    pub(crate) endpoint_error: Vec<f64>,
    pub(crate) db_error: Vec<Option<f64>>,
}

impl ActiveFaults {
    pub(crate) fn none(model: &Model) -> Self {
        ActiveFaults {
            error_scale: 1.0,
            service_latency: vec![1.0; model.services.len()],
            instance_latency: vec![1.0; model.instances.len()],
            endpoint_error: vec![0.0; model.endpoints.len()],
            db_error: vec![None; model.db_ops.len()],
        }
    }

    pub(crate) fn endpoint_error_prob(&self, ep_idx: usize, base: f64) -> f64 {
        (base * self.error_scale + self.endpoint_error[ep_idx]).clamp(0.0, 1.0)
    }

    pub(crate) fn db_error_prob(&self, op_idx: usize, base: f64) -> f64 {
        self.db_error[op_idx]
            .unwrap_or(base * self.error_scale)
            .clamp(0.0, 1.0)
    }
}

pub(crate) fn check_probability(what: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} must be a probability in [0, 1], got {p}"))
    }
}

pub(crate) fn check_factor(what: &str, f: f64) -> Result<(), String> {
    if f.is_finite() && f > 0.0 {
        Ok(())
    } else {
        Err(format!("{what} must be a positive number, got {f}"))
    }
}
