//! Scaling settings per service, from a TOML file (`--scaling-config-path`); services without
//! an entry of their own take the defaults:
//!
//! ```toml
//! [defaults]
//! target_utilization = 0.8                # of a replica's capacity
//! quantile = 0.7                          # forecast quantile provisioned for
//! lead_time_seconds = 300                 # from asking for a replica to its serving
//! min_replicas = 1
//! max_replicas = 100
//! scale_up_stabilization_seconds = 0      # scale-up: the lowest recommendation of the window
//! scale_down_stabilization_seconds = 300  # scale-down: the highest recommendation of the window
//!
//! [[service]]
//! name = "checkout"
//! capacity_per_replica = 250              # requests/s one replica serves at 100 %; without
//!                                         # it the capacity is learned from the data
//! max_replicas = 20
//! ```
//!
//! Every field of a `[[service]]` entry is optional and falls back to `[defaults]`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The settings one service's recommendations are made with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePolicy {
    /// Requests per second one replica serves at full utilisation; None: learned.
    pub capacity_per_replica: Option<f64>,
    pub target_utilization: f64,
    pub quantile: f64,
    pub lead_time_seconds: u64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub scale_up_stabilization_seconds: u64,
    pub scale_down_stabilization_seconds: u64,
}

impl Default for ServicePolicy {
    fn default() -> Self {
        Self {
            capacity_per_replica: None,
            target_utilization: 0.8,
            quantile: 0.7,
            lead_time_seconds: 300,
            min_replicas: 1,
            max_replicas: 100,
            scale_up_stabilization_seconds: 0,
            scale_down_stabilization_seconds: 300,
        }
    }
}

/// One entry of the file: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    capacity_per_replica: Option<f64>,
    target_utilization: Option<f64>,
    quantile: Option<f64>,
    lead_time_seconds: Option<u64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    scale_up_stabilization_seconds: Option<u64>,
    scale_down_stabilization_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Entry,
    #[serde(default)]
    service: Vec<Entry>,
}

impl Entry {
    fn over(&self, base: &ServicePolicy) -> ServicePolicy {
        ServicePolicy {
            capacity_per_replica: self.capacity_per_replica.or(base.capacity_per_replica),
            target_utilization: self.target_utilization.unwrap_or(base.target_utilization),
            quantile: self.quantile.unwrap_or(base.quantile),
            lead_time_seconds: self.lead_time_seconds.unwrap_or(base.lead_time_seconds),
            min_replicas: self.min_replicas.unwrap_or(base.min_replicas),
            max_replicas: self.max_replicas.unwrap_or(base.max_replicas),
            scale_up_stabilization_seconds: self
                .scale_up_stabilization_seconds
                .unwrap_or(base.scale_up_stabilization_seconds),
            scale_down_stabilization_seconds: self
                .scale_down_stabilization_seconds
                .unwrap_or(base.scale_down_stabilization_seconds),
        }
    }
}

impl ServicePolicy {
    /// Checks the values; `what` names the entry in the message.
    fn check(&self, what: &str) -> Result<(), String> {
        if let Some(c) = self.capacity_per_replica
            && !(c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "{what}: capacity_per_replica must be a positive number of requests/s, got {c}"
            ));
        }
        let u = self.target_utilization;
        if !(u > 0.0 && u <= 1.0) {
            return Err(format!(
                "{what}: target_utilization must be in (0, 1], got {u}"
            ));
        }
        let q = self.quantile;
        if !(q > 0.0 && q < 1.0) {
            return Err(format!("{what}: quantile must be in (0, 1), got {q}"));
        }
        if self.lead_time_seconds == 0 {
            return Err(format!("{what}: lead_time_seconds must be above 0"));
        }
        if self.max_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(format!(
                "{what}: need 1 ≤ max_replicas and min_replicas ≤ max_replicas, got {} and {}",
                self.min_replicas, self.max_replicas
            ));
        }
        Ok(())
    }
}

/// The defaults and the services' own settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScalingConfig {
    pub defaults: ServicePolicy,
    pub services: Vec<(String, ServicePolicy)>,
}

impl ScalingConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the scaling file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("scaling file {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.defaults.name.is_some() {
            return Err("[defaults] cannot have a name".into());
        }
        let defaults = file.defaults.over(&ServicePolicy::default());
        defaults.check("[defaults]")?;
        let mut services: Vec<(String, ServicePolicy)> = Vec::new();
        for (i, entry) in file.service.iter().enumerate() {
            let name = entry
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("[[service]] number {} has no name", i + 1))?;
            if services.iter().any(|(n, _)| *n == name) {
                return Err(format!("service {name:?} appears twice"));
            }
            let policy = entry.over(&defaults);
            policy.check(&format!("service {name:?}"))?;
            services.push((name, policy));
        }
        Ok(Self { defaults, services })
    }

    /// The settings of `service`.
    pub fn policy(&self, service: &str) -> &ServicePolicy {
        self.services
            .iter()
            .find(|(n, _)| n == service)
            .map_or(&self.defaults, |(_, p)| p)
    }

    /// Every quantile level some service provisions for.
    pub fn quantiles(&self) -> Vec<f64> {
        let mut levels = vec![self.defaults.quantile];
        for (_, p) in &self.services {
            if !levels.contains(&p.quantile) {
                levels.push(p.quantile);
            }
        }
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_fall_back_to_the_defaults() {
        let c = ScalingConfig::from_toml(
            r#"
            [defaults]
            quantile = 0.9
            max_replicas = 50
            [[service]]
            name = "checkout"
            capacity_per_replica = 250
            max_replicas = 20
            scale_up_stabilization_seconds = 60
            "#,
        )
        .unwrap();
        let checkout = c.policy("checkout");
        assert_eq!(checkout.capacity_per_replica, Some(250.0));
        assert_eq!(checkout.max_replicas, 20);
        assert_eq!(checkout.quantile, 0.9);
        assert_eq!(checkout.scale_up_stabilization_seconds, 60);
        assert_eq!(checkout.lead_time_seconds, 300);
        let other = c.policy("cart");
        assert_eq!(other.capacity_per_replica, None);
        assert_eq!(other.max_replicas, 50);
        assert_eq!(c.quantiles(), vec![0.9]);
        assert_eq!(
            ScalingConfig::from_toml("").unwrap(),
            ScalingConfig::default()
        );
    }

    #[test]
    fn bad_files_are_named() {
        for (text, wanted) in [
            ("[defaults]\nquantile = 1.0", "quantile must be in (0, 1)"),
            (
                "[defaults]\ntarget_utilization = 0",
                "target_utilization must be in (0, 1]",
            ),
            (
                "[[service]]\nname = \"a\"\nmin_replicas = 5\nmax_replicas = 2",
                "service \"a\": need 1 ≤ max_replicas",
            ),
            (
                "[[service]]\nname = \"a\"\ncapacity_per_replica = -1",
                "capacity_per_replica must be a positive",
            ),
            ("[[service]]\nquantile = 0.5", "has no name"),
            (
                "[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"",
                "appears twice",
            ),
            ("[defaults]\nlead_seconds = 3", "unknown field"),
            ("[defaults]\nlead_time_seconds = 0", "lead_time_seconds"),
        ] {
            let e = ScalingConfig::from_toml(text).unwrap_err();
            assert!(e.contains(wanted), "{text:?}: {e}");
        }
    }
}
