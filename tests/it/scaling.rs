//! `headroom scaling simulate` over the real nyc_taxi series: the predictive policy is short of
//! capacity less often than the HPA and costs less than provisioning for the peak, and so does
//! the recommender Headroom serves.

use headroom::scaling::{PolicyArg, ScalingCommand, SimulateArgs, run};
use serde_json::Value;

fn simulate(policy: PolicyArg, output: Option<std::path::PathBuf>) -> anyhow::Result<Value> {
    let args = SimulateArgs {
        input: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/forecast/nyc_taxi.csv"),
        capacity_per_replica: 1000.0,
        lead_time_seconds: 900,
        policy,
        target_utilization: 1.0,
        quantile: 0.8,
        test_days: 2,
        min_replicas: 1,
        max_replicas: 10_000,
        output,
    };
    Ok(serde_json::from_str(&run(&ScalingCommand::Simulate(
        args,
    ))?)?)
}

#[test]
fn predictive_scaling_beats_the_hpa_and_the_static_peak() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("replay.csv");
    let reactive = simulate(PolicyArg::Reactive, None).unwrap();
    let peak = simulate(PolicyArg::StaticPeak, None).unwrap();
    let predictive = simulate(PolicyArg::Predictive, Some(csv.clone())).unwrap();
    let get = |v: &Value, key: &str| v[key].as_f64().unwrap_or_else(|| panic!("{key}: {v}"));
    for v in [&reactive, &peak, &predictive] {
        assert_eq!(get(v, "minutes"), 2.0 * 24.0 * 60.0, "{v}");
    }
    assert_eq!(predictive["policy"], "predictive");
    assert_eq!(get(&predictive, "forecasts"), 96.0, "{predictive}");
    assert!(
        get(&predictive, "underprovisioned_minutes")
            < 0.5 * get(&reactive, "underprovisioned_minutes"),
        "{predictive} vs {reactive}"
    );
    assert!(
        get(&predictive, "replica_hours") < 0.7 * get(&peak, "replica_hours"),
        "{predictive} vs {peak}"
    );
    assert_eq!(get(&peak, "underprovisioned_minutes"), 0.0, "{peak}");
    // The recommender as served, through KEDA's HPA, meets the same bars.
    let served = simulate(PolicyArg::Recommender, None).unwrap();
    assert_eq!(served["policy"], "recommender");
    assert!(
        get(&served, "underprovisioned_minutes") < 0.5 * get(&reactive, "underprovisioned_minutes"),
        "{served} vs {reactive}"
    );
    assert!(
        get(&served, "replica_hours") < 0.7 * get(&peak, "replica_hours"),
        "{served} vs {peak}"
    );
    // One row per 15-second sync period.
    let replay = std::fs::read_to_string(&csv).unwrap();
    assert!(
        replay.starts_with("timestamp,demand,replicas,ready\n2015-01-29T23:30:00Z,"),
        "{}",
        &replay[..80]
    );
    assert_eq!(replay.lines().count(), 1 + 2 * 24 * 60 * 4);
}

#[test]
fn bad_scaling_settings_are_named() {
    let error = run(&ScalingCommand::Simulate(SimulateArgs {
        input: "no/such/file.csv".into(),
        capacity_per_replica: 1000.0,
        lead_time_seconds: 300,
        policy: PolicyArg::Reactive,
        target_utilization: 0.8,
        quantile: 0.8,
        test_days: 2,
        min_replicas: 1,
        max_replicas: 10,
        output: None,
    }))
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("no/such/file.csv"),
        "{error:#}"
    );
}
