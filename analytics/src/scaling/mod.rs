//! Replica recommendations from load forecasts, and the policies they are measured against.
//!
//! The arithmetic every policy shares: replicas for a load at a target utilisation, and the
//! Kubernetes HPA's control step (`pkg/controller/podautoscaler`), which is both the reactive
//! baseline and the predictive policy's floor: a recommendation never drops below what the
//! observed load needs now.

pub mod config;
pub mod live;
pub mod recommend;
pub mod simulate;

/// Replicas a load needs at `utilization` of `capacity` per replica, at least one. A ratio
/// within 1e-9 of a whole number is that number (capacities derived from a load divide it
/// back with rounding noise).
pub fn replicas_for(load: f64, capacity: f64, utilization: f64) -> u32 {
    let needed = (load.max(0.0) / (capacity * utilization) - 1e-9).ceil();
    if needed.is_finite() {
        (needed as u32).max(1)
    } else {
        u32::MAX
    }
}

/// What a replica serves and the bounds on the count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Load one replica serves at full utilisation.
    pub capacity: f64,
    /// Utilisation to aim for, in (0, 1].
    pub utilization: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

impl Sizing {
    /// Replicas `load` needs at the target utilisation (not yet bounded).
    pub fn replicas(&self, load: f64) -> u32 {
        replicas_for(load, self.capacity, self.utilization)
    }

    pub fn bound(&self, replicas: u32) -> u32 {
        replicas.clamp(self.min_replicas, self.max_replicas.max(self.min_replicas))
    }
}

/// The HPA's defaults, as `pkg/apis/autoscaling/v2/defaults.go` and the controller's flags set
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HpaSettings {
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_seconds: u64,
    /// `--horizontal-pod-autoscaler-tolerance`: no change while |ratio − 1| is at most this.
    pub tolerance: f64,
    /// Scale-down picks the highest recommendation of this window.
    pub scale_down_stabilization_seconds: u64,
    /// Scale-up per sync period: at most this many pods more…
    pub scale_up_pods: u32,
    /// …or this share of the current count more, whichever allows more.
    pub scale_up_percent: f64,
}

impl Default for HpaSettings {
    fn default() -> Self {
        Self {
            sync_seconds: 15,
            tolerance: 0.1,
            scale_down_stabilization_seconds: 300,
            scale_up_pods: 4,
            scale_up_percent: 100.0,
        }
    }
}

/// The HPA's state between control steps: its recent recommendations, for the scale-down
/// stabilisation window.
#[derive(Debug, Clone, Default)]
pub struct Hpa {
    pub settings: HpaSettings,
    recommendations: Vec<(u64, u32)>,
}

impl Hpa {
    pub fn new(settings: HpaSettings) -> Self {
        Self {
            settings,
            recommendations: Vec::new(),
        }
    }

    /// One control step at `now_seconds`: the new replica count for `current` replicas of
    /// which `ready` serve `load`. Unready pods count as idle when scaling up, which makes
    /// the raw recommendation `ceil(load / (capacity × target))`; the tolerance is judged on
    /// the ready pods' utilisation.
    pub fn step(
        &mut self,
        now_seconds: u64,
        current: u32,
        ready: u32,
        load: f64,
        sizing: &Sizing,
    ) -> u32 {
        let raw = if ready == 0 {
            current
        } else {
            let ratio = load / (f64::from(ready) * sizing.capacity * sizing.utilization);
            if (ratio - 1.0).abs() <= self.settings.tolerance {
                current
            } else {
                sizing.replicas(load)
            }
        };
        self.propose(now_seconds, current, raw, sizing)
    }

    /// Applies the behaviour to a raw recommendation: the scale-down stabilisation window
    /// (the highest recommendation in it wins), the scale-up limit, and the bounds.
    pub fn propose(&mut self, now_seconds: u64, current: u32, raw: u32, sizing: &Sizing) -> u32 {
        let window = self.settings.scale_down_stabilization_seconds;
        self.recommendations
            .retain(|(t, _)| now_seconds.saturating_sub(*t) < window);
        self.recommendations.push((now_seconds, raw));
        let stabilised = if raw < current {
            self.recommendations
                .iter()
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(raw)
                .min(current)
        } else {
            raw
        };
        let up_limit = current
            .saturating_add(self.settings.scale_up_pods)
            .max((f64::from(current) * (1.0 + self.settings.scale_up_percent / 100.0)) as u32);
        sizing.bound(stabilised.min(up_limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_round_up() {
        assert_eq!(replicas_for(100.0, 10.0, 1.0), 10);
        assert_eq!(replicas_for(101.0, 10.0, 1.0), 11);
        assert_eq!(replicas_for(80.0, 10.0, 0.8), 10);
        assert_eq!(replicas_for(0.0, 10.0, 0.8), 1);
        assert_eq!(replicas_for(1.0, 0.0, 0.8), u32::MAX);
    }

    #[test]
    fn hpa_follows_the_kubernetes_rules() {
        let mut hpa = Hpa::new(HpaSettings::default());
        let sizing = Sizing {
            capacity: 10.0,
            utilization: 1.0,
            min_replicas: 1,
            max_replicas: 100,
        };
        // 10 ready pods of capacity 10 at target 1.0 serving 105: within 10 %, no change.
        assert_eq!(hpa.step(0, 10, 10, 105.0, &sizing), 10);
        // Load triples: 30 wanted, but one step may add at most max(4, 100 %) = 10.
        assert_eq!(hpa.step(15, 10, 10, 300.0, &sizing), 20);
        // Half the pods not ready yet: they count as idle, the recommendation stays 30.
        assert_eq!(hpa.step(30, 20, 10, 300.0, &sizing), 30);
        // Load drops: the highest recommendation of the last 300 s (30) holds…
        assert_eq!(hpa.step(45, 30, 30, 100.0, &sizing), 30);
        assert_eq!(hpa.step(300, 30, 30, 100.0, &sizing), 30);
        // …until it has left the window.
        assert_eq!(hpa.step(345, 30, 30, 100.0, &sizing), 10);
        // Bounds win.
        let small = Sizing {
            max_replicas: 12,
            ..sizing
        };
        assert_eq!(hpa.step(360, 10, 10, 1000.0, &small), 12);
    }
}
