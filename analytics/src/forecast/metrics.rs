//! Forecast accuracy as the M4 competition and the forecasting literature define it: MASE
//! (Hyndman & Koehler), sMAPE (M4's form), interval coverage, pinball loss.

/// Mean absolute error of the seasonal naive forecast within `insample` (lag `m`): the scale
/// of MASE. NaN when the series is not longer than `m`.
pub fn seasonal_naive_scale(insample: &[f64], m: usize) -> f64 {
    if insample.len() <= m {
        return f64::NAN;
    }
    let diffs = insample.len() - m;
    (m..insample.len())
        .map(|t| (insample[t] - insample[t - m]).abs())
        .sum::<f64>()
        / diffs as f64
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Mean absolute error divided by `scale`.
pub fn mase(actual: &[f64], forecast: &[f64], scale: f64) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| (a - f).abs())) / scale
}

/// M4's sMAPE, in percent: mean of 200 |a - f| / (|a| + |f|) (0 when both are 0).
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    mean(actual.iter().zip(forecast).map(|(a, f)| {
        let denominator = a.abs() + f.abs();
        if denominator == 0.0 {
            0.0
        } else {
            200.0 * (a - f).abs() / denominator
        }
    }))
}

/// The share of actuals within [lower, upper].
pub fn coverage(actual: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    mean(
        actual
            .iter()
            .zip(lower.iter().zip(upper))
            .map(|(a, (l, u))| if l <= a && a <= u { 1.0 } else { 0.0 }),
    )
}

/// The share of actuals above `upper`.
pub fn share_above(actual: &[f64], upper: &[f64]) -> f64 {
    mean(
        actual
            .iter()
            .zip(upper)
            .map(|(a, u)| if a > u { 1.0 } else { 0.0 }),
    )
}

/// Mean pinball (quantile) loss of the level-`q` forecast.
pub fn pinball(actual: &[f64], quantile: &[f64], q: f64) -> f64 {
    mean(actual.iter().zip(quantile).map(|(a, f)| {
        let d = a - f;
        if d >= 0.0 { q * d } else { (q - 1.0) * d }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        let insample = [1.0, 2.0, 4.0, 3.0];
        // Lag 2 differences: |4 - 1|, |3 - 2|: scale 2.
        assert_eq!(seasonal_naive_scale(&insample, 2), 2.0);
        assert!(seasonal_naive_scale(&insample, 4).is_nan());
        assert_eq!(mase(&[5.0, 5.0], &[4.0, 7.0], 2.0), 0.75);
        // 200 * 1 / 9 and 200 * 2 / 12.
        assert!(
            (smape(&[5.0, 5.0], &[4.0, 7.0]) - (200.0 / 9.0 + 200.0 / 6.0) / 2.0).abs() < 1e-12
        );
        assert_eq!(smape(&[0.0], &[0.0]), 0.0);
        assert_eq!(coverage(&[1.0, 5.0], &[0.0, 0.0], &[2.0, 2.0]), 0.5);
        assert_eq!(share_above(&[1.0, 5.0], &[2.0, 2.0]), 0.5);
        // Under by 2 at q 0.9: 1.8; over by 1: 0.1.
        assert!((pinball(&[3.0, 1.0], &[1.0, 2.0], 0.9) - 0.95).abs() < 1e-12);
    }
}
