//! Feature tables for the load forecasters, built with polars: the regular time grid (gaps
//! filled from the same time a week or a day earlier, else interpolated, and flagged), and per
//! horizon block the regressors of the seasonal regression: lags at the seasonal offsets, the
//! level of the last day known, Fourier terms of the daily and weekly cycles, and a trend.

use std::f64::consts::PI;

use polars::prelude::*;

use super::{ForecastError, Seasonality};

/// A series on a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub start_ns: i64,
    pub step_ns: i64,
    /// One value per step, gaps filled.
    pub values: Vec<f64>,
    /// Which steps had no observation and were filled.
    pub filled: Vec<bool>,
}

impl Grid {
    pub fn timestamp_ns(&self, index: usize) -> i64 {
        self.start_ns + index as i64 * self.step_ns
    }

    pub fn seasonality(&self) -> Seasonality {
        Seasonality::for_step_ns(self.step_ns)
    }
}

/// The most frequent positive difference between consecutive timestamps.
fn infer_step(sorted: &[i64]) -> Option<i64> {
    let mut diffs: Vec<i64> = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .collect();
    diffs.sort_unstable();
    let mut best = (0usize, None);
    let mut i = 0;
    while i < diffs.len() {
        let run = diffs[i..].iter().take_while(|d| **d == diffs[i]).count();
        if run > best.0 {
            best = (run, Some(diffs[i]));
        }
        i += run;
    }
    best.1
}

/// Puts observations on their regular grid: the step is the most frequent spacing, several
/// observations of one step are averaged, and missing steps are filled with the value a week
/// earlier, else a day earlier, else by linear interpolation.
pub fn regular_grid(timestamps_ns: &[i64], values: &[f64]) -> Result<Grid, ForecastError> {
    if timestamps_ns.len() != values.len() {
        return Err(ForecastError::Input(
            "timestamps and values differ in length".into(),
        ));
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(ForecastError::Input(format!(
            "values must be finite numbers, got {bad}"
        )));
    }
    let mut sorted = timestamps_ns.to_vec();
    sorted.sort_unstable();
    let step_ns = infer_step(&sorted).ok_or_else(|| {
        ForecastError::Input("a series needs at least two distinct timestamps".into())
    })?;
    let start_ns = sorted[0];
    let steps = ((sorted[sorted.len() - 1] - start_ns) / step_ns) as usize + 1;
    if steps > 10_000_000 {
        return Err(ForecastError::Input(format!(
            "{steps} steps of {step_ns} ns: the timestamps are too far apart for their spacing"
        )));
    }
    // Off-grid timestamps go to the nearest step.
    let positions: Vec<i64> = timestamps_ns
        .iter()
        .map(|t| (t - start_ns + step_ns / 2).div_euclid(step_ns))
        .collect();
    fill_grid(start_ns, step_ns, steps, &positions, values)
}

/// The grid of `steps` steps from `start_ns` with the observations at `positions` (several at
/// one step are averaged); missing steps are filled with the value a week earlier, else a day
/// earlier, else by linear interpolation. Steps after the last observation stay NaN.
pub fn fill_grid(
    start_ns: i64,
    step_ns: i64,
    steps: usize,
    positions: &[i64],
    values: &[f64],
) -> Result<Grid, ForecastError> {
    let season = Seasonality::for_step_ns(step_ns);
    let observed = df!("pos" => positions, "value" => values)?
        .lazy()
        .group_by([col("pos")])
        .agg([col("value").mean()]);
    let grid = df!("pos" => (0..steps as i64).collect::<Vec<_>>())?
        .lazy()
        .left_join(observed, col("pos"), col("pos"))
        .sort(["pos"], SortMultipleOptions::default())
        .with_columns([
            col("value").is_null().alias("filled"),
            coalesce(&[
                col("value"),
                col("value").shift(lit(season.week as i64)),
                col("value").shift(lit(season.day as i64)),
                col("value").interpolate(InterpolationMethod::Linear),
            ])
            .alias("value"),
        ])
        .collect()?;
    let values = f64_column(&grid, "value")?;
    let filled = grid
        .column("filled")?
        .bool()?
        .iter()
        .map(|f| f.unwrap_or(false))
        .collect();
    Ok(Grid {
        start_ns,
        step_ns,
        values,
        filled,
    })
}

fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>, ForecastError> {
    Ok(df
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// Which regressors a seasonal regression uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSet {
    /// Lags at one and two weeks, and weekly Fourier terms.
    pub weekly: bool,
    pub two_weeks: bool,
    /// Fourier pairs for the daily and weekly cycles.
    pub daily_terms: usize,
    pub weekly_terms: usize,
}

impl FeatureSet {
    /// What `n` points of history support.
    pub fn for_history(n: usize, season: Seasonality) -> Self {
        Self {
            weekly: n >= 2 * season.week,
            two_weeks: n >= 4 * season.week,
            daily_terms: (season.day / 2).min(6),
            weekly_terms: if n >= 2 * season.week { 3 } else { 0 },
        }
    }
}

/// The regressors of horizon block `block` (steps `(block - 1) × day + 1 ..= block × day`
/// ahead) for `z` followed by `future` unknown steps: one row per step, NaN where a lag
/// reaches before the data. Every regressor of a row in block `block` lies at least
/// `block × day` steps back, so the rows of the next `block × day` steps after any point are
/// known at that point.
pub fn regressors(
    z: &[f64],
    future: usize,
    season: Seasonality,
    block: usize,
    set: FeatureSet,
) -> Result<(Vec<String>, Vec<Vec<f64>>), ForecastError> {
    let n = z.len();
    let values: Vec<Option<f64>> = z
        .iter()
        .map(|v| Some(*v))
        .chain(std::iter::repeat_n(None, future))
        .collect();
    let day = season.day as i64;
    let week = season.week as i64;
    let lag = block as i64 * day;
    let position = col("pos").cast(DataType::Float64);
    let mut exprs = vec![
        col("z").shift(lit(lag)).alias("lag_day"),
        col("z")
            .shift(lit(lag))
            .rolling_mean(RollingOptionsFixedWindow {
                window_size: season.day,
                min_periods: season.day,
                ..Default::default()
            })
            .alias("level_day"),
        (position.clone() / lit(n.max(1) as f64)).alias("trend"),
    ];
    if set.weekly && lag < week {
        exprs.push(col("z").shift(lit(week)).alias("lag_week"));
    }
    // A lag shorter than the block's would reach past the origin.
    if set.two_weeks && lag < 2 * week {
        exprs.push(col("z").shift(lit(2 * week)).alias("lag_2weeks"));
    }
    for (period, terms, name) in [
        (season.day, set.daily_terms, "day"),
        (season.week, set.weekly_terms, "week"),
    ] {
        for k in 1..=terms {
            let angle = position.clone() * lit(2.0 * PI * k as f64 / period as f64);
            exprs.push(angle.clone().sin().alias(format!("sin_{name}_{k}")));
            exprs.push(angle.cos().alias(format!("cos_{name}_{k}")));
        }
    }
    let frame = df!("z" => values)?
        .lazy()
        .with_row_index("pos", None)
        .select(exprs)
        .collect()?;
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let columns = names
        .iter()
        .map(|name| f64_column(&frame, name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((names, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn gaps_are_filled_from_a_day_earlier_and_flagged() {
        // Hourly, two days; hour 30 missing: filled with hour 6.
        let times: Vec<i64> = (0..48).filter(|h| *h != 30).map(|h| h * HOUR).collect();
        let values: Vec<f64> = (0..48).filter(|h| *h != 30).map(f64::from).collect();
        let grid = regular_grid(&times, &values).unwrap();
        assert_eq!(grid.step_ns, HOUR);
        assert_eq!(grid.values.len(), 48);
        assert_eq!(grid.values[30], 6.0);
        assert!(grid.filled[30] && !grid.filled[29]);
        assert_eq!(grid.seasonality().day, 24);
    }

    #[test]
    fn short_gaps_without_a_season_are_interpolated() {
        let times = [0, HOUR, 3 * HOUR, 4 * HOUR];
        let grid = regular_grid(&times, &[1.0, 2.0, 4.0, 5.0]).unwrap();
        assert_eq!(grid.values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(grid.filled, vec![false, false, true, false, false]);
        assert!(regular_grid(&[0], &[1.0]).is_err());
        assert!(regular_grid(&[0, HOUR], &[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn lags_never_reach_past_the_block() {
        let season = Seasonality { day: 4, week: 28 };
        let z: Vec<f64> = (0..120).map(f64::from).collect();
        let set = FeatureSet::for_history(z.len(), season);
        let (names, columns) = regressors(&z, 8, season, 2, set).unwrap();
        let column = |name: &str| &columns[names.iter().position(|n| n == name).unwrap()];
        // Block 2 of a 4-step day: the lag is 8 steps.
        assert_eq!(column("lag_day")[100], 92.0);
        assert_eq!(column("lag_day")[127], 119.0);
        assert_eq!(column("lag_week")[127], 99.0);
        assert_eq!(column("lag_2weeks")[127], 71.0);
        // The mean of the 4 values ending 8 steps back.
        assert_eq!(column("level_day")[127], 117.5);
        assert!(column("lag_day")[7].is_nan());
        assert!((column("sin_day_1")[1] - 1.0).abs() < 1e-12);
        // Block 15 reaches more than two weeks ahead: no weekly lags at all.
        let (names, _) = regressors(&z, 60, season, 15, set).unwrap();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("lag_week") || n == "lag_2weeks"),
            "{names:?}"
        );
    }
}
