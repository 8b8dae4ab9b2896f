//! Replica recommendations per service: what the forecast's upper quantile over the next lead
//! time needs, never less than what the observed load needs now, held against scale-down until
//! a stabilisation window and the observed load agree, and explained number by number.
//!
//! The rules follow AWS predictive scaling (provision ahead of the forecast by the time a
//! replica takes to start; never scale in on the forecast alone) and the Kubernetes HPA
//! (separate scale-up and scale-down stabilisation windows: the lowest, respectively highest,
//! recommendation of the window wins). With too little history for a model the
//! recommendation is the HPA's reactive one, flagged.

use std::collections::HashMap;

use serde::Serialize;

use super::Sizing;
use super::config::ServicePolicy;
use crate::forecast::live::ServiceForecast;

/// Where the capacity of one replica comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum CapacitySource {
    /// `capacity_per_replica` in the scaling file.
    Configured,
    /// A line through CPU utilisation against requests per second per instance, extended to
    /// 100 % CPU.
    Cpu {
        intercept: f64,
        slope: f64,
        r_squared: f64,
        minutes: usize,
    },
    /// The highest load per instance (99th percentile of the minutes) at which the latency
    /// objective held: a demonstrated capacity, a lower bound of the true one.
    Latency {
        threshold_ms: f64,
        objective: f64,
        minutes: usize,
    },
    /// Nothing better known: the replicas running now are taken to be at the target
    /// utilisation.
    CurrentLoad,
}

impl CapacitySource {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Cpu { .. } => "cpu",
            Self::Latency { .. } => "latency",
            Self::CurrentLoad => "current_load",
        }
    }

    fn describe(&self, capacity: f64) -> String {
        match self {
            Self::Configured => format!("{capacity:.1} requests/s per replica, as configured"),
            Self::Cpu {
                intercept,
                slope,
                r_squared,
                minutes,
            } => format!(
                "{capacity:.1} requests/s per replica, where CPU reaches 100 % on the line \
                 cpu = {intercept:.3} + {slope:.5} × requests/s per instance \
                 (R² {r_squared:.2} over {minutes} minutes)"
            ),
            Self::Latency {
                threshold_ms,
                objective,
                minutes,
            } => format!(
                "{capacity:.1} requests/s per replica, the highest load per instance at which \
                 {:.1} % of requests finished within {threshold_ms} ms ({minutes} minutes; a \
                 lower bound: the service was never seen busier while healthy)",
                objective * 100.0
            ),
            Self::CurrentLoad => format!(
                "{capacity:.1} requests/s per replica, assuming the replicas running now are at \
                 the target utilisation (no capacity configured or learnable)"
            ),
        }
    }
}

/// Capacity of one replica, in requests per second at full utilisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    pub per_replica: f64,
    #[serde(flatten)]
    pub source: CapacitySource,
}

/// One minute of a service, for learning its capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    pub requests_per_second: f64,
    /// Distinct instances serving in the minute (0: unknown).
    pub instances: u32,
    /// Whether the latency objective held in the minute.
    pub healthy: bool,
    /// Mean CPU utilisation over the instances, 0..1.
    pub cpu_utilization: Option<f64>,
}

/// Fewest minutes a capacity is learnt from.
pub const MIN_LEARNING_MINUTES: usize = 30;

/// Learns a replica's capacity: from CPU when the service reports it and CPU follows the load
/// (R² ≥ 0.5), else from the load at which latency held.
pub fn learn_capacity(minutes: &[Minute], threshold_ms: f64, objective: f64) -> Option<Capacity> {
    let per_instance = |m: &Minute| m.requests_per_second / f64::from(m.instances);
    let known: Vec<&Minute> = minutes
        .iter()
        .filter(|m| m.instances > 0 && m.requests_per_second > 0.0)
        .collect();
    let cpu: Vec<(f64, f64)> = known
        .iter()
        .filter_map(|m| m.cpu_utilization.map(|c| (per_instance(m), c)))
        .filter(|(_, c)| c.is_finite())
        .collect();
    if cpu.len() >= MIN_LEARNING_MINUTES
        && let Some((intercept, slope, r_squared)) = least_squares(&cpu)
        && slope > 0.0
        && r_squared >= 0.5
    {
        let at_full = (1.0 - intercept) / slope;
        if at_full.is_finite() && at_full > 0.0 {
            return Some(Capacity {
                per_replica: at_full,
                source: CapacitySource::Cpu {
                    intercept,
                    slope,
                    r_squared,
                    minutes: cpu.len(),
                },
            });
        }
    }
    let mut healthy: Vec<f64> = known
        .iter()
        .filter(|m| m.healthy)
        .map(|m| per_instance(m))
        .collect();
    if healthy.len() < MIN_LEARNING_MINUTES {
        return None;
    }
    healthy.sort_by(f64::total_cmp);
    let rank = ((healthy.len() as f64 * 0.99).ceil() as usize).clamp(1, healthy.len());
    Some(Capacity {
        per_replica: healthy[rank - 1],
        source: CapacitySource::Latency {
            threshold_ms,
            objective,
            minutes: healthy.len(),
        },
    })
}

/// Intercept, slope and R² of y on x; None when x does not vary.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= f64::EPSILON * n || syy <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((my - slope * mx, slope, sxy * sxy / (sxx * syy)))
}

/// What is observed of a service now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observed {
    /// Instances serving in the last complete minute; None when spans and metrics carry no
    /// instance identity.
    pub replicas: Option<u32>,
    /// Requests per second in the last complete minute.
    pub load: f64,
    /// The highest requests per second of a minute in the scale-down stabilisation window.
    pub window_peak_load: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// From the forecast, with the observed load as a floor.
    Predictive,
    /// From the observed load only (short history or no forecast), as the HPA would.
    Reactive,
    /// No capacity known and no replicas observed: no count can be given.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// Replicas needed in one hour of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slot {
    pub from_ns: i64,
    pub to_ns: i64,
    /// The forecast quantile's highest load over the hour and the lead time after it.
    pub load: f64,
    pub replicas: u32,
}

/// One service's recommendation, with everything that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub service_name: String,
    pub generated_at_ns: i64,
    pub mode: Mode,
    pub current_replicas: Option<u32>,
    pub recommended_replicas: Option<u32>,
    /// What the forecast quantile over the lead time needs.
    pub forecast_replicas: Option<u32>,
    /// What the load now needs (the reactive floor).
    pub floor_replicas: Option<u32>,
    pub load_now: f64,
    /// The forecast quantile's highest load over [now, now + lead time].
    pub load_forecast: Option<f64>,
    pub quantile: f64,
    pub lead_time_seconds: u64,
    pub target_utilization: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub capacity: Option<Capacity>,
    pub confidence: Confidence,
    pub model: Option<String>,
    pub validation_mase: Option<f64>,
    pub history_points: usize,
    /// Per hour ahead, the replicas the forecast needs (predictive mode only).
    pub schedule: Vec<Slot>,
    /// The numbers above, in words, in the order they were applied.
    pub reasons: Vec<String>,
}

/// Everything one recommendation is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub service: &'a str,
    pub policy: &'a ServicePolicy,
    /// The service's requests forecast, if there is one.
    pub forecast: Option<&'a ServiceForecast>,
    pub observed: Observed,
    /// The learned capacity, used when none is configured.
    pub learned: Option<&'a Capacity>,
    /// Seconds until the next recommendation: what is asked for now must serve until the
    /// replicas that one asks for are ready.
    pub interval_seconds: u64,
}

/// Hours of schedule published.
pub const SCHEDULE_HOURS: usize = 24;

/// Makes recommendations and remembers the raw ones for the stabilisation windows.
#[derive(Debug, Default)]
pub struct Recommender {
    /// Per service: (time, raw recommendation), oldest first.
    history: HashMap<String, Vec<(i64, u32)>>,
    /// Per service: the last recommendation.
    last: HashMap<String, u32>,
}

impl Recommender {
    pub fn recommend(&mut self, input: &Input<'_>, now_ns: i64) -> Recommendation {
        let policy = input.policy;
        let observed = input.observed;
        let mut reasons = Vec::new();
        let mut rec = Recommendation {
            service_name: input.service.to_owned(),
            generated_at_ns: now_ns,
            mode: Mode::Unavailable,
            current_replicas: observed.replicas,
            recommended_replicas: None,
            forecast_replicas: None,
            floor_replicas: None,
            load_now: observed.load,
            load_forecast: None,
            quantile: policy.quantile,
            lead_time_seconds: policy.lead_time_seconds,
            target_utilization: policy.target_utilization,
            min_replicas: policy.min_replicas,
            max_replicas: policy.max_replicas,
            capacity: None,
            confidence: Confidence::Low,
            model: input.forecast.map(|f| f.forecast.model.clone()),
            validation_mase: input.forecast.and_then(|f| f.forecast.validation_mase),
            history_points: input.forecast.map_or(0, |f| f.history_points),
            schedule: Vec::new(),
            reasons: Vec::new(),
        };
        let capacity = match (
            policy.capacity_per_replica,
            input.learned,
            observed.replicas,
        ) {
            (Some(c), _, _) => Some(Capacity {
                per_replica: c,
                source: CapacitySource::Configured,
            }),
            (None, Some(learned), _) => Some(learned.clone()),
            (None, None, Some(n)) if n > 0 && observed.load > 0.0 => Some(Capacity {
                per_replica: observed.load / (f64::from(n) * policy.target_utilization),
                source: CapacitySource::CurrentLoad,
            }),
            _ => None,
        };
        let Some(capacity) = capacity else {
            reasons.push(
                "no capacity per replica: set capacity_per_replica in the scaling file, or \
                 export service.instance.id (and CPU metrics) so that it can be learned"
                    .to_owned(),
            );
            rec.reasons = reasons;
            return rec;
        };
        reasons.push(format!(
            "capacity: {}",
            capacity.source.describe(capacity.per_replica)
        ));
        let sizing = Sizing {
            capacity: capacity.per_replica,
            utilization: policy.target_utilization,
            min_replicas: policy.min_replicas,
            max_replicas: policy.max_replicas,
        };
        let per_replica = capacity.per_replica * policy.target_utilization;
        let floor = sizing.replicas(observed.load);
        rec.floor_replicas = Some(floor);
        reasons.push(format!(
            "the load of the last minute, {:.2} requests/s, needs {floor} at {:.1} requests/s \
             per replica ({:.0} % of capacity)",
            observed.load,
            per_replica,
            policy.target_utilization * 100.0
        ));
        let lead_ns = policy.lead_time_seconds as i64 * 1_000_000_000;
        let ahead_seconds = policy.lead_time_seconds + input.interval_seconds;
        let ahead_ns = ahead_seconds as i64 * 1_000_000_000;
        let mut raw = floor;
        let usable = match input.forecast {
            None => Err("no forecast for the service yet".to_owned()),
            Some(f) if f.forecast.short_history => Err(format!(
                "{} points of history are too few for a forecast model",
                f.history_points
            )),
            Some(f) => match f.forecast.quantile(policy.quantile) {
                None => Err(format!(
                    "the forecast has no p{} level",
                    policy.quantile * 100.0
                )),
                Some(values) => peak_over(f, values, now_ns, now_ns + ahead_ns)
                    .map(|peak| (f, values, peak))
                    .ok_or_else(|| {
                        format!("the forecast does not reach into the next {ahead_seconds} s")
                    }),
            },
        };
        match usable {
            Ok((f, values, peak)) => {
                rec.mode = Mode::Predictive;
                let needed = sizing.replicas(peak);
                rec.load_forecast = Some(peak);
                rec.forecast_replicas = Some(needed);
                reasons.push(format!(
                    "the forecast's p{} over the next {ahead_seconds} s (lead time {} s and \
                     {} s to the next recommendation) peaks at {peak:.2} requests/s (model {}), \
                     which needs {needed}",
                    policy.quantile * 100.0,
                    policy.lead_time_seconds,
                    input.interval_seconds,
                    f.forecast.model
                ));
                if floor > needed {
                    reasons.push(format!(
                        "the load now needs more than the forecast: {floor} (reactive floor)"
                    ));
                }
                raw = needed.max(floor);
                let hour_ns = 3_600_000_000_000;
                let end = f.time_ns(values.len());
                rec.schedule = (0..SCHEDULE_HOURS as i64)
                    .map(|h| (now_ns + h * hour_ns, now_ns + (h + 1) * hour_ns))
                    .take_while(|(from, _)| *from < end)
                    .map(|(from, to)| {
                        let load = peak_over(f, values, from, to + lead_ns).unwrap_or(0.0);
                        Slot {
                            from_ns: from,
                            to_ns: to,
                            load,
                            replicas: sizing.bound(sizing.replicas(load)),
                        }
                    })
                    .collect();
            }
            Err(why) => {
                rec.mode = Mode::Reactive;
                reasons.push(format!("reactive: {why} (the HPA's rule on the load now)"));
            }
        }

        // Scale in only when the observed load agrees, not on the forecast alone.
        let baseline = observed
            .replicas
            .or_else(|| self.last.get(input.service).copied());
        if let Some(base) = baseline
            && raw < base
        {
            let agreed = sizing.replicas(observed.window_peak_load);
            if agreed > raw {
                reasons.push(format!(
                    "scale-in limited: the busiest minute of the last {} s, {:.2} requests/s, \
                     still needs {agreed}",
                    policy.scale_down_stabilization_seconds, observed.window_peak_load
                ));
                raw = agreed.min(base);
            }
        }
        let stabilised = self.stabilise(input.service, policy, now_ns, raw, baseline);
        if stabilised != raw {
            reasons.push(match baseline {
                Some(b) if raw < b => format!(
                    "scale-down stabilisation: the highest recommendation of the last {} s is \
                     {stabilised}",
                    policy.scale_down_stabilization_seconds
                ),
                _ => format!(
                    "scale-up stabilisation: the lowest recommendation of the last {} s is \
                     {stabilised}",
                    policy.scale_up_stabilization_seconds
                ),
            });
        }
        let bounded = sizing.bound(stabilised);
        if bounded != stabilised {
            reasons.push(format!(
                "bounded to [{}, {}]: {bounded}",
                policy.min_replicas, policy.max_replicas
            ));
        }
        reasons.push(match observed.replicas {
            Some(n) if n < bounded => format!("recommended {bounded}, up from {n} running"),
            Some(n) if n > bounded => format!("recommended {bounded}, down from {n} running"),
            Some(n) => format!("recommended {bounded}, as many as run now ({n})"),
            None => format!(
                "recommended {bounded} (replicas running now unknown: spans carry no \
                 service.instance.id)"
            ),
        });
        self.last.insert(input.service.to_owned(), bounded);
        rec.recommended_replicas = Some(bounded);
        rec.confidence = confidence(&rec, &capacity, &mut reasons);
        rec.capacity = Some(capacity);
        rec.reasons = reasons;
        rec
    }

    /// The HPA's stabilisation: a scale-down takes the highest raw recommendation of its
    /// window, a scale-up the lowest of its window (never beyond the baseline).
    fn stabilise(
        &mut self,
        service: &str,
        policy: &ServicePolicy,
        now_ns: i64,
        raw: u32,
        baseline: Option<u32>,
    ) -> u32 {
        let window = |seconds: u64| now_ns - seconds as i64 * 1_000_000_000;
        let history = self.history.entry(service.to_owned()).or_default();
        let keep = policy
            .scale_down_stabilization_seconds
            .max(policy.scale_up_stabilization_seconds);
        history.retain(|(t, _)| *t > window(keep));
        history.push((now_ns, raw));
        let Some(base) = baseline else {
            return raw;
        };
        let within = |seconds: u64| {
            let from = window(seconds);
            history
                .iter()
                .filter(move |(t, _)| *t > from || *t == now_ns)
                .map(|(_, r)| *r)
        };
        if raw < base {
            within(policy.scale_down_stabilization_seconds)
                .max()
                .unwrap_or(raw)
                .min(base)
        } else if raw > base {
            within(policy.scale_up_stabilization_seconds)
                .min()
                .unwrap_or(raw)
                .max(base)
        } else {
            raw
        }
    }
}

/// The highest value of the forecast steps that overlap [from, to); None when none does.
fn peak_over(f: &ServiceForecast, values: &[f64], from_ns: i64, to_ns: i64) -> Option<f64> {
    (0..values.len())
        .filter(|&h| f.time_ns(h) < to_ns && f.time_ns(h + 1) > from_ns)
        .map(|h| values[h].max(0.0))
        .reduce(f64::max)
}

/// High: a model that beat the daily seasonal naive clearly and a capacity that is configured
/// or measured on CPU; medium: a model no worse than it; low otherwise (reactive mode, a
/// capacity assumed from the current load, a poor validation score).
fn confidence(rec: &Recommendation, capacity: &Capacity, reasons: &mut Vec<String>) -> Confidence {
    let model = match (rec.mode, rec.validation_mase) {
        (Mode::Predictive, Some(m)) if m <= 0.8 => Confidence::High,
        (Mode::Predictive, Some(m)) if m <= 1.0 => Confidence::Medium,
        _ => Confidence::Low,
    };
    let capacity_confidence = match capacity.source {
        CapacitySource::Configured => Confidence::High,
        CapacitySource::Cpu { r_squared, .. } if r_squared >= 0.8 => Confidence::High,
        CapacitySource::Cpu { .. } | CapacitySource::Latency { .. } => Confidence::Medium,
        CapacitySource::CurrentLoad => Confidence::Low,
    };
    let overall = model.min(capacity_confidence);
    let mase = rec
        .validation_mase
        .map_or("none".to_owned(), |m| format!("{m:.2}"));
    reasons.push(format!(
        "confidence {}: forecast {} (validation MASE {mase}), capacity {} ({})",
        overall.name(),
        model.name(),
        capacity_confidence.name(),
        capacity.source.name()
    ));
    overall
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Predictive => "predictive",
            Self::Reactive => "reactive",
            Self::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Forecast;

    const S: i64 = 1_000_000_000;
    const START: i64 = 1_700_000_100 * S;

    /// A requests forecast of 5-minute steps from START whose p80 is `p80`.
    fn forecast(p80: &[f64], short_history: bool, mase: f64) -> ServiceForecast {
        ServiceForecast {
            service: "shop".into(),
            metric: crate::forecast::live::Metric::Requests,
            start_ns: START,
            step_ns: 300 * S,
            history_points: 4032,
            forecast: Forecast {
                model: "ridge".into(),
                yhat: p80.iter().map(|v| v * 0.9).collect(),
                quantiles: vec![(0.8, p80.to_vec())],
                short_history,
                scores: Vec::new(),
                validation_mase: Some(mase),
                fit_seconds: 0.0,
            },
            generated_at_ns: START,
        }
    }

    fn policy() -> ServicePolicy {
        ServicePolicy {
            capacity_per_replica: Some(100.0),
            lead_time_seconds: 600,
            quantile: 0.8,
            ..ServicePolicy::default()
        }
    }

    fn observed(replicas: u32, load: f64, peak: f64) -> Observed {
        Observed {
            replicas: Some(replicas),
            load,
            window_peak_load: peak,
        }
    }

    fn input<'a>(
        policy: &'a ServicePolicy,
        forecast: Option<&'a ServiceForecast>,
        observed: Observed,
    ) -> Input<'a> {
        Input {
            service: "shop",
            policy,
            forecast,
            observed,
            learned: None,
            interval_seconds: 0,
        }
    }

    #[test]
    fn provisions_the_forecast_peak_over_the_lead_time() {
        let p = policy();
        let f = forecast(&[400.0, 500.0, 900.0, 2000.0], false, 0.6);
        // [now, now + 600 s) overlaps steps 0, 1 and 2 (not 3): peak 900 at 80 per replica
        // (100 × 0.8) needs ceil(11.25) = 12; the load now, 300, needs 4.
        let now = START + 60 * S;
        let r =
            Recommender::default().recommend(&input(&p, Some(&f), observed(5, 300.0, 300.0)), now);
        assert_eq!(r.mode, Mode::Predictive);
        assert_eq!(r.load_forecast, Some(900.0));
        assert_eq!(r.forecast_replicas, Some(12));
        assert_eq!(r.floor_replicas, Some(4));
        assert_eq!(r.recommended_replicas, Some(12));
        assert_eq!(r.confidence, Confidence::High);
        assert!(r.reasons.last().unwrap().starts_with("confidence high"));
        assert!(
            r.reasons
                .iter()
                .any(|x| x == "recommended 12, up from 5 running"),
            "{:?}",
            r.reasons
        );
        // The schedule's first hour reaches to the end of the forecast (20 min): 2000 → 25.
        assert_eq!(r.schedule.len(), 1);
        assert_eq!(r.schedule[0].replicas, 25);
        // A poor validation score lowers the confidence.
        let f = forecast(&[400.0; 4], false, 0.95);
        let r =
            Recommender::default().recommend(&input(&p, Some(&f), observed(5, 300.0, 300.0)), now);
        assert_eq!(r.confidence, Confidence::Medium);
    }

    #[test]
    fn the_load_now_is_a_floor_and_bounds_win() {
        let p = ServicePolicy {
            max_replicas: 10,
            ..policy()
        };
        let f = forecast(&[100.0; 4], false, 0.6);
        // The forecast needs 2, the load now 1000 / 80 → 13, bounded to 10.
        let r = Recommender::default()
            .recommend(&input(&p, Some(&f), observed(5, 1000.0, 1000.0)), START);
        assert_eq!(r.forecast_replicas, Some(2));
        assert_eq!(r.floor_replicas, Some(13));
        assert_eq!(r.recommended_replicas, Some(10));
        assert!(r.reasons.iter().any(|x| x.contains("reactive floor")));
        assert!(
            r.reasons
                .iter()
                .any(|x| x.starts_with("bounded to [1, 10]"))
        );
    }

    #[test]
    fn scale_in_waits_for_the_observed_load_and_the_window() {
        let p = policy();
        let mut recommender = Recommender::default();
        let high = forecast(&[900.0; 4], false, 0.6);
        let low = forecast(&[100.0; 4], false, 0.6);
        assert_eq!(
            recommender
                .recommend(&input(&p, Some(&high), observed(5, 300.0, 300.0)), START)
                .recommended_replicas,
            Some(12)
        );
        // One minute later the forecast drops (2 replicas) and so does the load: the
        // highest recommendation of the last 300 s, 12, holds.
        let r = recommender.recommend(
            &input(&p, Some(&low), observed(12, 100.0, 100.0)),
            START + 60 * S,
        );
        assert_eq!(r.recommended_replicas, Some(12));
        assert!(
            r.reasons
                .iter()
                .any(|x| x.starts_with("scale-down stabilisation")),
            "{:?}",
            r.reasons
        );
        // Past the window the forecast is followed, but not below what the busiest minute
        // of the window needed: 500 → 7.
        let r = recommender.recommend(
            &input(&p, Some(&low), observed(12, 100.0, 500.0)),
            START + 400 * S,
        );
        assert_eq!(r.recommended_replicas, Some(7));
        assert!(r.reasons.iter().any(|x| x.starts_with("scale-in limited")));
        let r = recommender.recommend(
            &input(&p, Some(&low), observed(7, 100.0, 100.0)),
            START + 800 * S,
        );
        assert_eq!(r.recommended_replicas, Some(2));
        assert!(
            r.reasons
                .iter()
                .any(|x| x == "recommended 2, down from 7 running")
        );
    }

    #[test]
    fn scale_up_stabilisation_takes_the_lowest_of_its_window() {
        let p = ServicePolicy {
            scale_up_stabilization_seconds: 120,
            ..policy()
        };
        let mut recommender = Recommender::default();
        let low = forecast(&[300.0; 4], false, 0.6);
        let high = forecast(&[800.0; 4], false, 0.6);
        assert_eq!(
            recommender
                .recommend(&input(&p, Some(&low), observed(4, 300.0, 300.0)), START)
                .recommended_replicas,
            Some(4)
        );
        // A spike in the forecast alone: 10 wanted, the window's lowest (4) holds.
        assert_eq!(
            recommender
                .recommend(
                    &input(&p, Some(&high), observed(4, 300.0, 300.0)),
                    START + 60 * S
                )
                .recommended_replicas,
            Some(4)
        );
        // Still wanted 2 minutes later: followed.
        assert_eq!(
            recommender
                .recommend(
                    &input(&p, Some(&high), observed(4, 300.0, 300.0)),
                    START + 190 * S
                )
                .recommended_replicas,
            Some(10)
        );
    }

    #[test]
    fn short_history_is_reactive_and_flagged() {
        let p = policy();
        let f = forecast(&[5000.0; 4], true, 0.6);
        let r = Recommender::default()
            .recommend(&input(&p, Some(&f), observed(2, 170.0, 170.0)), START);
        assert_eq!(r.mode, Mode::Reactive);
        assert_eq!(r.recommended_replicas, Some(3));
        assert_eq!(r.forecast_replicas, None);
        assert!(r.schedule.is_empty());
        assert_eq!(r.confidence, Confidence::Low);
        assert!(
            r.reasons
                .iter()
                .any(|x| x.starts_with("reactive: 4032 points"))
        );
        let r =
            Recommender::default().recommend(&input(&p, None, observed(2, 170.0, 170.0)), START);
        assert_eq!(r.mode, Mode::Reactive);
        // A forecast that ended before now is no forecast.
        let old = forecast(&[5000.0; 4], false, 0.6);
        let r = Recommender::default().recommend(
            &input(&p, Some(&old), observed(2, 170.0, 170.0)),
            START + 3600 * S,
        );
        assert_eq!(r.mode, Mode::Reactive);
        assert_eq!(r.recommended_replicas, Some(3));
        assert!(
            r.reasons.iter().any(|x| x.contains("does not reach")),
            "{:?}",
            r.reasons
        );
    }

    #[test]
    fn capacity_falls_back_to_the_current_load_or_nothing() {
        let p = ServicePolicy {
            capacity_per_replica: None,
            ..policy()
        };
        let f = forecast(&[640.0; 4], false, 0.6);
        // 4 replicas at 320 requests/s taken to be at 80 %: 100 per replica; 640 needs 8.
        let r = Recommender::default()
            .recommend(&input(&p, Some(&f), observed(4, 320.0, 320.0)), START);
        let c = r.capacity.as_ref().unwrap();
        assert_eq!((c.per_replica, c.source.name()), (100.0, "current_load"));
        assert_eq!(r.recommended_replicas, Some(8));
        assert_eq!(r.confidence, Confidence::Low);
        let unknown = Observed {
            replicas: None,
            load: 320.0,
            window_peak_load: 320.0,
        };
        let r = Recommender::default().recommend(&input(&p, Some(&f), unknown), START);
        assert_eq!(r.mode, Mode::Unavailable);
        assert_eq!(r.recommended_replicas, None);
        assert!(r.reasons[0].contains("capacity_per_replica"));
        // A learned capacity is used when none is configured.
        let learned = Capacity {
            per_replica: 50.0,
            source: CapacitySource::Latency {
                threshold_ms: 500.0,
                objective: 0.95,
                minutes: 100,
            },
        };
        let r = Recommender::default().recommend(
            &Input {
                learned: Some(&learned),
                ..input(&p, Some(&f), unknown)
            },
            START,
        );
        // 640 / (50 × 0.8) = 16.
        assert_eq!(r.recommended_replicas, Some(16));
        assert!(
            r.reasons
                .iter()
                .any(|x| x.starts_with("recommended 16 (replicas running now unknown"))
        );
    }

    fn minute(rps: f64, instances: u32, healthy: bool, cpu: Option<f64>) -> Minute {
        Minute {
            requests_per_second: rps,
            instances,
            healthy,
            cpu_utilization: cpu,
        }
    }

    #[test]
    fn capacity_is_learned_from_cpu_then_latency() {
        // CPU = 0.1 + 0.009 × requests/s per instance: 100 % at 100 requests/s.
        let cpu: Vec<Minute> = (1..=40)
            .map(|i| {
                let per = f64::from(i);
                minute(per * 3.0, 3, true, Some(0.1 + 0.009 * per))
            })
            .collect();
        let c = learn_capacity(&cpu, 500.0, 0.95).unwrap();
        assert!((c.per_replica - 100.0).abs() < 1e-9, "{c:?}");
        assert!(
            matches!(c.source, CapacitySource::Cpu { minutes: 40, r_squared, .. } if r_squared > 0.999)
        );
        // No CPU: the 99th percentile of healthy minutes' load per instance (rank 99 of
        // 100); unhealthy and unknown-instance minutes do not count.
        let mut latency: Vec<Minute> = (1..=100)
            .map(|i| minute(2.0 * f64::from(i), 2, true, None))
            .collect();
        latency.push(minute(1000.0, 2, false, None));
        latency.push(minute(1000.0, 0, true, None));
        let c = learn_capacity(&latency, 300.0, 0.99).unwrap();
        assert_eq!(c.per_replica, 99.0);
        assert_eq!(c.source.name(), "latency");
        // Too few minutes: nothing learned.
        assert_eq!(learn_capacity(&latency[..29], 300.0, 0.99), None);
        // CPU that does not follow the load falls back to latency.
        let flat: Vec<Minute> = (1..=40)
            .map(|i| minute(f64::from(i), 1, true, Some(0.3 + 0.01 * f64::from(i % 2))))
            .collect();
        assert_eq!(
            learn_capacity(&flat, 300.0, 0.99).unwrap().source.name(),
            "latency"
        );
    }
}
