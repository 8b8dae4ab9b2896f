//! Replays a load series through a scaling policy, every HPA sync period (15 s), with new
//! replicas ready only a lead time after they are asked for, and scores the outcome:
//! replica-hours, minutes with more demand than ready capacity, replica-hours beyond what the
//! demand needed, and how often the count changed.
//!
//! Demand between two points of the series is interpolated linearly; capacity per replica is
//! in the series' units. The replay covers the last `test_days` days (at least 7 days of
//! history are left before it, as in the forecast backtest).
//!
//! Policies:
//! - `reactive`: the Kubernetes HPA ([`super::Hpa`]) on the observed load.
//! - `static-peak`: a fixed count for the series' peak.
//! - `predictive`: at every new point of the series, a forecast over the lead time; each sync
//!   asks for what the forecast's upper quantile needs when replicas asked for now would be
//!   ready (now + lead time, and one sync period later), never less than the observed load
//!   needs now, through the HPA's scale-down stabilisation and scale-up limits.
//! - `recommender`: what ships: the [`Recommender`] every 60 s (as `--scaling-interval-seconds`
//!   defaults to) on the latest forecast, the observed load and the ready replicas, with a
//!   300 s scale-down window; its count reaches the fleet through the HPA KEDA creates (an
//!   external metric of that count with target 1: the HPA's 10 % tolerance and scale-up limits
//!   apply, its scale-down window is 0 as in the example ScaledObjects).

use std::io::Write;

use serde::Serialize;

use super::config::ServicePolicy;
use super::recommend::{Input, Observed, Recommender};
use super::{Hpa, HpaSettings, Sizing};
use crate::forecast::features::Grid;
use crate::forecast::live::{Metric, ServiceForecast};
use crate::forecast::{Forecast, ForecastError, ForecastOptions, Seasonality, forecast};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Predictive,
    /// The recommender Headroom serves, refreshed every minute, acted on by the HPA KEDA
    /// creates for it.
    Recommender,
    Reactive,
    StaticPeak,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Predictive => "predictive",
            Self::Recommender => "recommender",
            Self::Reactive => "reactive",
            Self::StaticPeak => "static-peak",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Load one replica serves at full utilisation, in the series' units.
    pub capacity_per_replica: f64,
    /// Seconds from asking for a replica to its serving.
    pub lead_time_seconds: u64,
    /// Utilisation the policies aim for.
    pub target_utilization: f64,
    /// The forecast quantile the predictive policy provisions for.
    pub quantile: f64,
    pub test_days: usize,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// The score of one replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: &'static str,
    pub minutes: f64,
    pub replica_hours: f64,
    /// Minutes in which the demand exceeded the ready replicas' full capacity.
    pub underprovisioned_minutes: f64,
    /// Replica-hours beyond what the demand needed at full utilisation.
    pub overprovisioned_replica_hours: f64,
    /// Sync periods in which the replica count changed.
    pub scaling_actions: usize,
    pub peak_replicas: u32,
    /// Forecasts made (predictive only).
    pub forecasts: usize,
}

/// One sync period of the replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub time_ns: i64,
    pub demand: f64,
    pub replicas: u32,
    pub ready: u32,
}

/// Replicas asked for, each with the second it is ready at.
struct Fleet {
    ready_at: Vec<u64>,
}

impl Fleet {
    fn ready(&self, now: u64) -> u32 {
        self.ready_at.iter().filter(|t| **t <= now).count() as u32
    }

    fn len(&self) -> u32 {
        self.ready_at.len() as u32
    }

    /// Grows to `target` with replicas ready after the lead time, or shrinks to it, removing
    /// the replicas still starting first.
    fn resize(&mut self, target: u32, now: u64, lead: u64) {
        let target = target as usize;
        if target > self.ready_at.len() {
            self.ready_at.resize(target, now + lead);
        } else {
            self.ready_at.sort_unstable();
            self.ready_at.truncate(target);
        }
    }
}

/// Replays the last `settings.test_days` days of `grid` through `policy`.
pub fn run(
    grid: &Grid,
    policy: Policy,
    settings: &Settings,
) -> Result<(Outcome, Vec<Tick>), ForecastError> {
    if !(settings.capacity_per_replica > 0.0 && settings.capacity_per_replica.is_finite()) {
        return Err(ForecastError::Input(
            "the capacity per replica must be a positive number".into(),
        ));
    }
    if !(settings.target_utilization > 0.0 && settings.target_utilization <= 1.0) {
        return Err(ForecastError::Input(
            "the target utilisation lies in (0, 1]".into(),
        ));
    }
    if !(settings.quantile > 0.0 && settings.quantile < 1.0) {
        return Err(ForecastError::Input(
            "the forecast quantile lies in (0, 1)".into(),
        ));
    }
    if settings.min_replicas == 0 || settings.min_replicas > settings.max_replicas {
        return Err(ForecastError::Input(
            "replicas: 1 ≤ min ≤ max is needed".into(),
        ));
    }
    let step_s = (grid.step_ns / 1_000_000_000).max(1) as u64;
    let season = Seasonality::for_step_ns(grid.step_ns);
    let n = grid.values.len();
    let test_steps = (settings.test_days * season.day).min(n.saturating_sub(7 * season.day + 1));
    if test_steps == 0 {
        return Err(ForecastError::Input(format!(
            "{n} points leave no test window after 7 days of history"
        )));
    }
    let first = n - 1 - test_steps;
    let hpa_settings = HpaSettings::default();
    let sync = hpa_settings.sync_seconds;
    let mut hpa = Hpa::new(hpa_settings);
    let sizing = Sizing {
        capacity: settings.capacity_per_replica,
        utilization: settings.target_utilization,
        min_replicas: settings.min_replicas,
        max_replicas: settings.max_replicas,
    };
    let capacity = sizing.capacity;
    // Demand at `s` seconds after the first replayed point.
    let demand_at = |s: u64| {
        let position = first as f64 + s as f64 / step_s as f64;
        let i = (position.floor() as usize).min(n - 1);
        let next = grid.values[(i + 1).min(n - 1)];
        grid.values[i] + (next - grid.values[i]) * (position - i as f64)
    };
    let peak = grid.values.iter().copied().fold(0.0, f64::max);
    let static_count = sizing.bound(sizing.replicas(peak));
    let start_count = match policy {
        Policy::StaticPeak => static_count,
        _ => sizing.bound(sizing.replicas(demand_at(0))),
    };
    let mut fleet = Fleet {
        ready_at: vec![0; start_count as usize],
    };
    let lead = settings.lead_time_seconds;
    let ahead_steps = (lead + step_s).div_ceil(step_s) as usize + 2;
    // The latest forecast: its first point's index and the forecast.
    let mut latest: Option<(usize, Forecast)> = None;
    let mut recommender = Recommender::default();
    let service_policy = ServicePolicy {
        capacity_per_replica: Some(settings.capacity_per_replica),
        target_utilization: settings.target_utilization,
        quantile: settings.quantile,
        lead_time_seconds: lead,
        min_replicas: settings.min_replicas,
        max_replicas: settings.max_replicas,
        ..ServicePolicy::default()
    };
    let recommend_every = 60;
    let mut recommended = start_count;
    // KEDA's HPA on the recommended count: no scale-down window of its own.
    let mut keda_hpa = Hpa::new(HpaSettings {
        scale_down_stabilization_seconds: 0,
        ..hpa_settings
    });
    let per_replica = Sizing {
        capacity: 1.0,
        utilization: 1.0,
        ..sizing
    };
    let mut forecasts = 0usize;
    let end_s = test_steps as u64 * step_s;
    let mut ticks = Vec::with_capacity((end_s / sync) as usize);
    let mut outcome = Outcome {
        policy: policy.name(),
        minutes: 0.0,
        replica_hours: 0.0,
        underprovisioned_minutes: 0.0,
        overprovisioned_replica_hours: 0.0,
        scaling_actions: 0,
        peak_replicas: 0,
        forecasts: 0,
    };
    let mut now = 0u64;
    while now < end_s {
        let demand = demand_at(now);
        let current = fleet.len();
        let desired = match policy {
            Policy::StaticPeak => static_count,
            Policy::Reactive => hpa.step(now, current, fleet.ready(now), demand, &sizing),
            Policy::Predictive | Policy::Recommender => {
                // Points whose interval has ended are known.
                let known = first + (now / step_s) as usize;
                if latest.as_ref().is_none_or(|(k, _)| *k != known) {
                    let f = forecast(
                        &grid.values[..known],
                        season,
                        &ForecastOptions {
                            horizon: ahead_steps,
                            quantiles: vec![settings.quantile],
                        },
                    )?;
                    forecasts += 1;
                    latest = Some((known, f));
                }
                let Some((known, f)) = latest.as_ref() else {
                    return Err(ForecastError::Model("no forecast to act on".into()));
                };
                if policy == Policy::Recommender {
                    if now.is_multiple_of(recommend_every) {
                        let now_ns = grid.timestamp_ns(first) + now as i64 * 1_000_000_000;
                        // The recommender reads a step's value as its mean rate, as live
                        // steps count requests; here demand runs linearly between points, so
                        // a step's mean is the mean of its two ends.
                        let step_means = |v: &[f64]| -> Vec<f64> {
                            (0..v.len())
                                .map(|j| (v[j] + v.get(j + 1).unwrap_or(&v[j])) / 2.0)
                                .collect()
                        };
                        let served = ServiceForecast {
                            service: String::new(),
                            metric: Metric::Requests,
                            start_ns: grid.timestamp_ns(*known),
                            step_ns: grid.step_ns,
                            history_points: *known,
                            forecast: Forecast {
                                yhat: step_means(&f.yhat),
                                quantiles: f
                                    .quantiles
                                    .iter()
                                    .map(|(q, v)| (*q, step_means(v)))
                                    .collect(),
                                ..f.clone()
                            },
                            generated_at_ns: now_ns,
                        };
                        let window_peak_load =
                            (0..=service_policy.scale_down_stabilization_seconds / sync)
                                .map(|k| demand_at(now.saturating_sub(k * sync)))
                                .fold(demand, f64::max);
                        let input = Input {
                            service: "",
                            policy: &service_policy,
                            forecast: Some(&served),
                            observed: Observed {
                                replicas: Some(fleet.ready(now)),
                                load: demand,
                                window_peak_load,
                            },
                            learned: None,
                            interval_seconds: recommend_every,
                        };
                        recommended = recommender
                            .recommend(&input, now_ns)
                            .recommended_replicas
                            .unwrap_or(recommended);
                    }
                    // The external metric is the count, at a target of 1 per replica; the
                    // HPA judges an external metric against all current pods, ready or not.
                    keda_hpa.step(now, current, current, f64::from(recommended), &per_replica)
                } else {
                    let path = f.quantile(settings.quantile).unwrap_or(f.yhat.as_slice());
                    // Replicas asked for now serve from now + lead: provision for the
                    // forecast demand then and one sync period later, never for less than
                    // now's.
                    let forecast_at = |s: u64| {
                        let position = first as f64 + s as f64 / step_s as f64 - *known as f64;
                        let j = position.max(0.0).floor() as usize;
                        match (path.get(j), path.get(j + 1)) {
                            (Some(a), Some(b)) => Some(a + (b - a) * (position - j as f64)),
                            (Some(a), None) => Some(*a),
                            _ => None,
                        }
                    };
                    let upcoming = [now + lead, now + lead + sync]
                        .into_iter()
                        .filter_map(forecast_at)
                        .fold(demand, f64::max);
                    hpa.propose(now, current, sizing.replicas(upcoming), &sizing)
                }
            }
        };
        if desired != current {
            outcome.scaling_actions += 1;
            fleet.resize(desired, now, lead);
        }
        let replicas = fleet.len();
        let ready = fleet.ready(now);
        let minutes = sync as f64 / 60.0;
        outcome.minutes += minutes;
        outcome.replica_hours += f64::from(replicas) * minutes / 60.0;
        if demand > f64::from(ready) * capacity {
            outcome.underprovisioned_minutes += minutes;
        }
        let needed = (demand.max(0.0) / capacity).ceil();
        outcome.overprovisioned_replica_hours +=
            (f64::from(replicas) - needed).max(0.0) * minutes / 60.0;
        outcome.peak_replicas = outcome.peak_replicas.max(replicas);
        ticks.push(Tick {
            time_ns: grid.timestamp_ns(first) + (now as i64) * 1_000_000_000,
            demand,
            replicas,
            ready,
        });
        now += sync;
    }
    outcome.forecasts = forecasts;
    Ok((outcome, ticks))
}

/// Writes the replay as `timestamp,demand,replicas,ready` CSV.
pub fn write_csv(ticks: &[Tick], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "timestamp,demand,replicas,ready")?;
    for t in ticks {
        let time = chrono::DateTime::from_timestamp_nanos(t.time_ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        writeln!(out, "{time},{},{},{}", t.demand, t.replicas, t.ready)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_NS: i64 = 3_600_000_000_000;

    /// Hourly load with a daily cycle between 100 and 900, for `days` days.
    fn cycle(days: usize) -> Grid {
        let values: Vec<f64> = (0..days * 24)
            .map(|h| 500.0 - 400.0 * (2.0 * std::f64::consts::PI * (h % 24) as f64 / 24.0).cos())
            .collect();
        Grid {
            start_ns: 0,
            step_ns: HOUR_NS,
            filled: vec![false; values.len()],
            values,
        }
    }

    fn settings() -> Settings {
        Settings {
            capacity_per_replica: 50.0,
            lead_time_seconds: 900,
            target_utilization: 0.95,
            quantile: 0.9,
            test_days: 2,
            min_replicas: 1,
            max_replicas: 1000,
        }
    }

    #[test]
    fn policies_trade_cost_for_shortfall_as_expected() {
        let grid = cycle(21);
        let run = |policy| run(&grid, policy, &settings()).unwrap().0;
        let (reactive, peak, predictive, recommender) = (
            run(Policy::Reactive),
            run(Policy::StaticPeak),
            run(Policy::Predictive),
            run(Policy::Recommender),
        );
        for o in [&reactive, &peak, &predictive, &recommender] {
            assert_eq!(o.minutes, 2.0 * 24.0 * 60.0, "{o:?}");
        }
        // The peak of 900 at 95 % of 50: 19 replicas, all the time, never short.
        assert_eq!(peak.peak_replicas, 19);
        assert_eq!(peak.scaling_actions, 0);
        assert!((peak.replica_hours - 19.0 * 48.0).abs() < 1e-9, "{peak:?}");
        assert_eq!(peak.underprovisioned_minutes, 0.0);
        // Reacting 15 minutes late on a rising load leaves it short at times; forecasting
        // the cycle does not, for less than the static peak costs.
        assert!(reactive.underprovisioned_minutes > 0.0, "{reactive:?}");
        assert!(
            predictive.underprovisioned_minutes < reactive.underprovisioned_minutes,
            "{predictive:?} vs {reactive:?}"
        );
        assert!(
            predictive.replica_hours < peak.replica_hours,
            "{predictive:?}"
        );
        assert_eq!(predictive.forecasts, 48);
        // The recommender as served, through KEDA's HPA, likewise.
        assert!(
            recommender.underprovisioned_minutes < reactive.underprovisioned_minutes,
            "{recommender:?} vs {reactive:?}"
        );
        assert!(
            recommender.replica_hours < peak.replica_hours,
            "{recommender:?}"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let grid = cycle(21);
        let bad = |s: Settings| run(&grid, Policy::Reactive, &s).unwrap_err().to_string();
        assert!(
            bad(Settings {
                capacity_per_replica: 0.0,
                ..settings()
            })
            .contains("capacity")
        );
        assert!(
            bad(Settings {
                target_utilization: 1.5,
                ..settings()
            })
            .contains("utilisation")
        );
        assert!(
            bad(Settings {
                min_replicas: 5,
                max_replicas: 2,
                ..settings()
            })
            .contains("min")
        );
        assert!(
            run(&cycle(7), Policy::Reactive, &settings())
                .unwrap_err()
                .to_string()
                .contains("no test window")
        );
    }
}
