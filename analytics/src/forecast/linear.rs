//! Weighted, standardised linear regressions on linfa: ridge (least squares by QR in
//! `linfa-linear`, with the penalty as extra rows) and elastic net (coordinate descent in
//! `linfa-elasticnet`). linfa takes no sample weights, so rows are centred on the weighted
//! means and scaled by the square root of their weight, which is weighted least squares.

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use linfa_linalg::cholesky::Cholesky;
use linfa_linalg::triangular::{SolveTriangular, UPLO};
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2, Axis};

use super::ForecastError;

/// Which penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Penalty {
    /// Ridge with this strength (on standardised regressors, per row of data).
    Ridge(f64),
    /// Elastic net with this strength and share of L1.
    ElasticNet { alpha: f64, l1_ratio: f64 },
}

/// A fitted linear model over the original (unscaled) regressors.
#[derive(Debug, Clone)]
pub struct Linear {
    pub coefficients: Vec<f64>,
    pub intercept: f64,
}

impl Linear {
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.intercept
            + row
                .iter()
                .zip(&self.coefficients)
                .map(|(x, b)| x * b)
                .sum::<f64>()
    }
}

/// Fits `y ≈ intercept + x·β` minimising the weighted squared error plus the penalty.
pub fn fit(
    x: &Array2<f64>,
    y: &Array1<f64>,
    weights: &[f64],
    penalty: Penalty,
) -> Result<Linear, ForecastError> {
    let (n, p) = x.dim();
    if n < p + 2 {
        return Err(ForecastError::Model(format!(
            "{n} rows are too few for {p} regressors"
        )));
    }
    let w = Array1::from(weights.to_vec());
    let total: f64 = w.sum();
    let mean_x = x.t().dot(&w) / total;
    let mean_y = y.dot(&w) / total;
    let centred = x - &mean_x.view().insert_axis(Axis(0));
    let scale: Array1<f64> = centred
        .map_axis(Axis(0), |c| {
            (c.iter().zip(&w).map(|(v, wi)| wi * v * v).sum::<f64>() / total).sqrt()
        })
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    let root_w = w.mapv(f64::sqrt).insert_axis(Axis(1));
    let xs = (centred / scale.view().insert_axis(Axis(0))) * &root_w;
    let ys = (y - mean_y) * root_w.column(0);
    let beta_scaled: Array1<f64> = match penalty {
        Penalty::Ridge(lambda) => {
            // Ridge as least squares over the data and sqrt(λ·n)·I.
            let ridge = Array2::<f64>::eye(p) * (lambda * n as f64).sqrt();
            let augmented = ndarray::concatenate(Axis(0), &[xs.view(), ridge.view()])
                .map_err(|e| ForecastError::Model(format!("ridge: {e}")))?;
            let target = Array1::from_iter(ys.iter().copied().chain(std::iter::repeat_n(0.0, p)));
            let model = LinearRegression::new()
                .with_intercept(false)
                .fit(&Dataset::new(augmented, target))
                .map_err(|e| ForecastError::Model(format!("ridge: {e}")))?;
            model.params().clone()
        }
        Penalty::ElasticNet { alpha, l1_ratio } => {
            // The same problem on p rows instead of n: with Xᵀ X = L Lᵀ (Cholesky),
            // |y − Xβ|² = |c − Lᵀ β|² + const for c = L⁻¹ Xᵀ y, so coordinate descent over the
            // p × p factor finds the same β, and each sweep costs p² instead of n·p. linfa's
            // penalty is per row, hence the scaling by n / p.
            let gram = xs.t().dot(&xs);
            // A jitter far below the data's scale keeps duplicated regressors factorable.
            let jitter = 1e-10 * gram.diag().sum().max(1e-300);
            let lower = (gram + Array2::<f64>::eye(p) * jitter)
                .cholesky()
                .map_err(|e| ForecastError::Model(format!("elastic net: {e}")))?;
            let c = lower
                .solve_triangular(&xs.t().dot(&ys).insert_axis(Axis(1)), UPLO::Lower)
                .map_err(|e| ForecastError::Model(format!("elastic net: {e}")))?;
            let model = ElasticNet::params()
                .penalty(alpha * n as f64 / p as f64)
                .l1_ratio(l1_ratio)
                .with_intercept(false)
                .max_iterations(500)
                .tolerance(1e-5)
                .fit(&Dataset::new(lower.t().to_owned(), c.column(0).to_owned()))
                .map_err(|e| ForecastError::Model(format!("elastic net: {e}")))?;
            model.hyperplane().clone()
        }
    };
    let coefficients: Array1<f64> = &beta_scaled / &scale;
    let intercept = mean_y - coefficients.dot(&mean_x);
    if !intercept.is_finite() || coefficients.iter().any(|c| !c.is_finite()) {
        return Err(ForecastError::Model("the fit did not converge".into()));
    }
    Ok(Linear {
        coefficients: coefficients.to_vec(),
        intercept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_plane_and_honours_weights() {
        // y = 3 + 2a - b on a grid; the rows weighted 0 lie elsewhere and must not matter.
        let mut rows = Vec::new();
        let mut y = Vec::new();
        let mut w = Vec::new();
        for a in 0..10 {
            for b in 0..10 {
                rows.extend([f64::from(a), f64::from(b)]);
                y.push(3.0 + 2.0 * f64::from(a) - f64::from(b));
                w.push(1.0);
            }
        }
        rows.extend([5.0, 5.0]);
        y.push(1000.0);
        w.push(0.0);
        let x = Array2::from_shape_vec((101, 2), rows).unwrap();
        let y = Array1::from(y);
        for penalty in [
            Penalty::Ridge(1e-9),
            Penalty::ElasticNet {
                alpha: 1e-9,
                l1_ratio: 0.5,
            },
        ] {
            let m = fit(&x, &y, &w, penalty).unwrap();
            assert!((m.coefficients[0] - 2.0).abs() < 1e-4, "{m:?}");
            assert!((m.coefficients[1] + 1.0).abs() < 1e-4, "{m:?}");
            assert!((m.predict(&[1.0, 1.0]) - 4.0).abs() < 1e-3, "{m:?}");
        }
        let few = x.slice_axis(Axis(0), ndarray::Slice::from(0..3)).to_owned();
        let few_y = y.slice_axis(Axis(0), ndarray::Slice::from(0..3)).to_owned();
        assert!(fit(&few, &few_y, &w[..3], Penalty::Ridge(0.1)).is_err());
    }

    #[test]
    fn the_reduced_elastic_net_is_linfas_elastic_net_on_all_rows() {
        // Columns with mean 0 and variance 1 (the standardisation leaves them as they are),
        // one of them useless, and a target with noise.
        let n = 400;
        let mut state = 11u64;
        let mut noise = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as f64 / (1u64 << 31) as f64 - 0.5
        };
        let x = Array2::from_shape_fn((n, 3), |(i, j)| match j {
            0 => {
                if i % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            1 => {
                if (i / 2) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            _ => {
                if (i / 4) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
        });
        let y = Array1::from_shape_fn(n, |i| 5.0 + 2.0 * x[(i, 0)] - 0.7 * x[(i, 1)] + noise());
        let (alpha, l1_ratio) = (0.05, 0.5);
        let ours = fit(
            &x,
            &y,
            &vec![1.0; n],
            Penalty::ElasticNet { alpha, l1_ratio },
        )
        .unwrap();
        let direct = ElasticNet::params()
            .penalty(alpha)
            .l1_ratio(l1_ratio)
            .with_intercept(false)
            .tolerance(1e-10)
            .fit(&Dataset::new(x.clone(), &y - y.mean().unwrap()))
            .unwrap();
        for (a, b) in ours.coefficients.iter().zip(direct.hyperplane()) {
            assert!((a - b).abs() < 1e-6, "{ours:?} vs {}", direct.hyperplane());
        }
        // The penalty is at work: shrunk, and the useless column dropped.
        assert!(ours.coefficients[0] < 1.99, "{ours:?}");
        assert_eq!(ours.coefficients[2], 0.0, "{ours:?}");
    }
}
