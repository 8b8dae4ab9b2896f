//! The M4 competition's hourly protocol: horizon 48, MASE with m = 24, sMAPE, and OWA against
//! Naive2 (naive on the series deseasonalised by classical multiplicative decomposition when
//! the seasonality test passes), as in the competition's R benchmark code.

use std::path::Path;

use polars::prelude::*;

use super::ForecastError;
use super::metrics::{mase, seasonal_naive_scale, smape};

/// One M4 series: its id and values.
pub type M4Series = (String, Vec<f64>);

/// Reads an M4 file: one row per series, the id first, then the values (ragged rows end in
/// empty cells).
pub fn read(path: &Path) -> Result<Vec<M4Series>, ForecastError> {
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        // Columns hold integers in some rows and decimals in others: read them all first.
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))?
        .finish()
        .map_err(|e| ForecastError::Input(format!("{}: {e}", path.display())))?;
    let columns = frame.columns();
    let Some((ids, values)) = columns.split_first() else {
        return Err(ForecastError::Input(format!(
            "{}: no columns",
            path.display()
        )));
    };
    let ids = ids.cast(&DataType::String)?;
    let ids = ids.str()?;
    let values: Vec<Vec<Option<f64>>> = values
        .iter()
        .map(|c| Ok(c.cast(&DataType::Float64)?.f64()?.iter().collect()))
        .collect::<Result<_, PolarsError>>()?;
    (0..frame.height())
        .map(|row| {
            let id = ids
                .get(row)
                .ok_or_else(|| ForecastError::Input(format!("row {row} has no id")))?
                .to_owned();
            let series: Vec<f64> = values.iter().map_while(|c| c[row]).collect();
            Ok((id, series))
        })
        .collect()
}

/// R's `acf` at lags 1..=max_lag.
fn acf(x: &[f64], max_lag: usize) -> Vec<f64> {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let denominator: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    (1..=max_lag)
        .map(|k| {
            (0..n.saturating_sub(k))
                .map(|t| (x[t] - mean) * (x[t + k] - mean))
                .sum::<f64>()
                / denominator
        })
        .collect()
}

/// M4's seasonality test: the autocorrelation at lag `m` is significant at 90 %.
pub fn is_seasonal(x: &[f64], m: usize) -> bool {
    let n = x.len();
    let max_lag = (10.0 * (n as f64).log10()).floor() as usize;
    if n < 3 * m || max_lag < m {
        return false;
    }
    let r = acf(x, max_lag);
    let limit = 1.645 / (n as f64).sqrt()
        * (1.0 + 2.0 * r[..m - 1].iter().map(|v| v * v).sum::<f64>()).sqrt();
    r[m - 1].abs() > limit
}

/// Seasonal indices of classical multiplicative decomposition (R's `decompose`), one per
/// position in the cycle, the first for the series' first value.
fn seasonal_indices(x: &[f64], m: usize) -> Vec<f64> {
    let n = x.len();
    // Centred moving average of order m (weights 1/2m at the ends for even m).
    let half = m / 2;
    let weights: Vec<f64> = if m.is_multiple_of(2) {
        (0..=m)
            .map(|j| if j == 0 || j == m { 0.5 } else { 1.0 } / m as f64)
            .collect()
    } else {
        vec![1.0 / m as f64; m]
    };
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in half..n.saturating_sub(weights.len() - 1 - half) {
        let trend: f64 = weights
            .iter()
            .enumerate()
            .map(|(j, w)| w * x[t + j - half])
            .sum();
        sums[t % m] += x[t] / trend;
        counts[t % m] += 1;
    }
    let figure: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| s / *c as f64)
        .collect();
    let mean = figure.iter().sum::<f64>() / m as f64;
    figure.iter().map(|f| f / mean).collect()
}

/// M4's Naive2 forecast of `h` steps.
pub fn naive2(x: &[f64], h: usize, m: usize) -> Vec<f64> {
    let n = x.len();
    let indices = if is_seasonal(x, m) {
        seasonal_indices(x, m)
    } else {
        vec![1.0; m]
    };
    let last = x[n - 1] / indices[(n - 1) % m];
    (0..h).map(|i| last * indices[(n + i) % m]).collect()
}

/// The seasonal naive forecast of `h` steps with period `m`.
pub fn seasonal_naive(x: &[f64], h: usize, m: usize) -> Vec<f64> {
    let n = x.len();
    (0..h).map(|i| x[n - m + i % m]).collect()
}

/// sMAPE and MASE averaged over series, M4's way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub smape: f64,
    pub mase: f64,
}

impl Scores {
    /// Overall weighted average relative to Naive2.
    pub fn owa(&self, naive2: &Scores) -> f64 {
        0.5 * (self.smape / naive2.smape + self.mase / naive2.mase)
    }
}

/// Scores forecasts of the test values, with MASE scaled by each training series' seasonal
/// naive error at lag `m`.
pub fn score(train: &[M4Series], test: &[M4Series], forecasts: &[Vec<f64>], m: usize) -> Scores {
    let (mut s, mut q) = (0.0, 0.0);
    for ((tr, te), f) in train.iter().zip(test).zip(forecasts) {
        s += smape(&te.1, f);
        q += mase(&te.1, f, seasonal_naive_scale(&tr.1, m));
    }
    let n = forecasts.len() as f64;
    Scores {
        smape: s / n,
        mase: q / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive2_follows_the_seasonal_pattern() {
        // Period 4, multiplicative pattern 1, 2, 1, 0.5 on a flat level of 10, for 6 cycles.
        let pattern = [1.0, 2.0, 1.0, 0.5];
        let x: Vec<f64> = (0..24).map(|t| 10.0 * pattern[t % 4]).collect();
        assert!(is_seasonal(&x, 4));
        let f = naive2(&x, 4, 4);
        let mean = pattern.iter().sum::<f64>() / 4.0;
        for (i, v) in f.iter().enumerate() {
            // The indices are the pattern over its mean; the deseasonalised level is 10 * mean.
            assert!((v - 10.0 * pattern[i % 4]).abs() < 1e-9, "{f:?} vs {mean}");
        }
        assert_eq!(seasonal_naive(&x, 5, 4), vec![10.0, 20.0, 10.0, 5.0, 10.0]);
        // Noise without a cycle is not seasonal: Naive2 is naive.
        let flat: Vec<f64> = (0..40)
            .map(|t| if t % 2 == 0 { 5.0 } else { 6.0 })
            .collect();
        assert!(!is_seasonal(&flat, 7));
        assert_eq!(naive2(&flat, 2, 7), vec![6.0, 6.0]);
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    fn data(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/forecast")
            .join(name)
    }

    /// The official M4 hourly scores of the two benchmarks, to the published three decimals.
    #[test]
    fn seasonal_naive_and_naive2_reproduce_the_official_scores() {
        let train = read(&data("Hourly-train.csv")).unwrap();
        let test = read(&data("Hourly-test.csv")).unwrap();
        assert_eq!(train.len(), 414);
        assert!(test.iter().all(|(_, v)| v.len() == 48));
        let naive: Vec<Vec<f64>> = train
            .iter()
            .map(|(_, x)| seasonal_naive(x, 48, 24))
            .collect();
        let naive2: Vec<Vec<f64>> = train.iter().map(|(_, x)| naive2(x, 48, 24)).collect();
        let s = score(&train, &test, &naive, 24);
        let s2 = score(&train, &test, &naive2, 24);
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        assert_eq!((round(s.smape), round(s.mase)), (13.912, 1.193), "{s:?}");
        assert_eq!((round(s2.smape), round(s2.mase)), (18.383, 2.395), "{s2:?}");
        assert_eq!(round(s2.owa(&s2)), 1.0);
    }

    /// The target on M4 hourly: MASE at most 0.90 (seasonal naive scores 1.193).
    #[test]
    fn forecasts_meet_the_m4_hourly_target() {
        use crate::forecast::{ForecastOptions, Seasonality, forecast};
        let train = read(&data("Hourly-train.csv")).unwrap();
        let test = read(&data("Hourly-test.csv")).unwrap();
        let season = Seasonality { day: 24, week: 168 };
        let options = ForecastOptions {
            horizon: 48,
            quantiles: vec![],
        };
        let ours: Vec<Vec<f64>> = train
            .iter()
            .map(|(_, x)| forecast(x, season, &options).unwrap().yhat)
            .collect();
        let s = score(&train, &test, &ours, 24);
        assert!(s.mase <= 0.90 && s.smape <= 11.0, "{s:?}");
    }
}
