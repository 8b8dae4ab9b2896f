//! Load forecasts with quantiles, for scaling decisions.
//!
//! Per series, candidates compete on a rolling-origin validation over the most recent week of
//! the history, fitted once on the data before it:
//! - seasonal naive, a day and a week back;
//! - seasonal regressions on linfa (ridge; ridge with recency weights and robust reweighting;
//!   elastic net), which forecast each block of a day's steps from regressors that all lie at
//!   least that far back (lags at the seasonal offsets, the last known day's level, daily and
//!   weekly Fourier terms, trend; [`features`]), so one fit serves every origin;
//! - seasonal autoregressions (linfa ridge on the last steps and the same time on earlier days
//!   or a week back), one step ahead, iterated.
//!
//! Every candidate carries its recent residual forward, decayed by how much of it was still
//! there `h` steps later in its own history: after a sudden drop (a storm, an outage) the
//! next hours start from the new level. The single candidates and the means of the best two
//! and three compete; means often win, as in the M4 competition. Counts are modelled as
//! log(1 + y), which stabilises their variance.
//!
//! Quantiles are split-conformal: errors per step ahead (pooled with neighbouring steps),
//! added to the forecast, from two windows: the validation window, and the window before it
//! forecast by the chosen candidates fitted on the data before that, which the choice was not
//! made on. Each quantile is the wider of the two. With too little history for a model, the
//! forecast falls back to the day before (or the mean), flagged, with intervals from the
//! whole history's spread, widened.

pub mod backtest;
pub mod features;
pub mod linear;
pub mod live;
pub mod m4;
pub mod metrics;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use ndarray::{Array1, Array2};

use features::FeatureSet;
use linear::{Linear, Penalty};

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{0}")]
    Input(String),
    #[error("model: {0}")]
    Model(String),
    #[error("{0}")]
    Polars(#[from] polars::error::PolarsError),
}

/// Steps per day and per week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seasonality {
    pub day: usize,
    pub week: usize,
}

impl Seasonality {
    pub fn for_step_ns(step_ns: i64) -> Self {
        let day = ((86_400e9 / step_ns as f64).round() as usize).max(1);
        Self { day, week: 7 * day }
    }
}

/// What to forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastOptions {
    pub horizon: usize,
    /// Quantile levels besides the point forecast, e.g. 0.1, 0.5, 0.9.
    pub quantiles: Vec<f64>,
}

/// One candidate's validation score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub model: String,
    /// Mean absolute error over the validation forecasts.
    pub mae: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The chosen candidate.
    pub model: String,
    /// The point forecast (the median), one per step.
    pub yhat: Vec<f64>,
    /// Per requested level, one value per step.
    pub quantiles: Vec<(f64, Vec<f64>)>,
    /// Too little history for a model: a fallback with wide intervals.
    pub short_history: bool,
    /// The validation score of every candidate that could forecast and of the means of the
    /// best two and three, best first.
    pub scores: Vec<Score>,
    /// The chosen candidate's validation error relative to the in-sample seasonal naive (daily
    /// lag) error: its MASE on the last week of the history. None for the fallback.
    pub validation_mase: Option<f64>,
    pub fit_seconds: f64,
}

impl Forecast {
    /// The values of quantile `level` (nearest requested level).
    pub fn quantile(&self, level: f64) -> Option<&[f64]> {
        self.quantiles
            .iter()
            .find(|(l, _)| (l - level).abs() < 1e-9)
            .map(|(_, v)| v.as_slice())
    }
}

/// Counts are modelled as log(1 + y); series with negative values as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Log1p,
    Identity,
}

impl Transform {
    fn for_values(values: &[f64]) -> Self {
        if values.iter().all(|v| *v >= 0.0) {
            Self::Log1p
        } else {
            Self::Identity
        }
    }
    fn forward(self, y: f64) -> f64 {
        match self {
            Self::Log1p => y.ln_1p(),
            Self::Identity => y,
        }
    }
    fn inverse(self, z: f64) -> f64 {
        match self {
            Self::Log1p => z.exp_m1().max(0.0),
            Self::Identity => z,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Candidate {
    NaiveDay,
    NaiveWeek,
    Regression {
        name: &'static str,
        penalty: Penalty,
        /// Half-life of the recency weights, in days.
        halflife_days: Option<f64>,
        /// Refit with outliers down-weighted.
        robust: bool,
    },
    /// A seasonal autoregression on the last steps and the same time on earlier days or
    /// weeks, one step ahead, iterated over the horizon.
    Autoregression {
        name: &'static str,
        lags: ArLags,
    },
}

/// The lags of an autoregression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArLags {
    /// The last four steps, around the same time yesterday, two and three days back, and a
    /// week back.
    Days,
    /// The last two steps and around the same time yesterday and a week back.
    Weeks,
}

impl ArLags {
    fn lags(self, season: Seasonality) -> Vec<usize> {
        let (d, w) = (season.day, season.week);
        let mut lags = match self {
            Self::Days => vec![1, 2, 3, 4, d - 1, d, d + 1, 2 * d, 3 * d, w],
            Self::Weeks => vec![1, 2, d, d + 1, w, w + 1],
        };
        // With a day of one or two steps, some lags coincide.
        lags.retain(|l| *l >= 1);
        lags.sort_unstable();
        lags.dedup();
        lags
    }
}

const CANDIDATES: [Candidate; 7] = [
    Candidate::NaiveDay,
    Candidate::NaiveWeek,
    Candidate::Regression {
        name: "ridge",
        penalty: Penalty::Ridge(1e-4),
        halflife_days: None,
        robust: false,
    },
    Candidate::Regression {
        name: "ridge_recent_robust",
        penalty: Penalty::Ridge(1e-4),
        halflife_days: Some(28.0),
        robust: true,
    },
    Candidate::Regression {
        name: "elastic_net",
        penalty: Penalty::ElasticNet {
            alpha: 1e-3,
            l1_ratio: 0.5,
        },
        halflife_days: Some(28.0),
        robust: true,
    },
    Candidate::Autoregression {
        name: "seasonal_ar_days",
        lags: ArLags::Days,
    },
    Candidate::Autoregression {
        name: "seasonal_ar_weeks",
        lags: ArLags::Weeks,
    },
];

impl Candidate {
    fn name(&self) -> &'static str {
        match self {
            Self::NaiveDay => "seasonal_naive_day",
            Self::NaiveWeek => "seasonal_naive_week",
            Self::Regression { name, .. } | Self::Autoregression { name, .. } => name,
        }
    }
}

/// A candidate fitted on `z[..end]`, able to forecast from any origin `o` with `end <= o` (for
/// validation) or `o == z.len()`.
struct Fitted {
    /// Per block of a regression: the model and its regressor columns over `z` and the future
    /// steps. Empty for the other candidates.
    blocks: Vec<(Linear, Rc<Columns>)>,
    /// An autoregression and its lags.
    ar: Option<(Linear, Vec<usize>)>,
    /// How much of the recent residual (see [`Setup::carry`]) is still there 1..=horizon
    /// steps later, measured on the fitted history.
    decay: Vec<f64>,
}

impl Fitted {
    fn row(columns: &[Vec<f64>], t: usize) -> Option<Vec<f64>> {
        let row: Vec<f64> = columns.iter().map(|c| c[t]).collect();
        row.iter().all(|v| v.is_finite()).then_some(row)
    }
}

/// Residuals averaged into the carried level: one step alone is too noisy, a longer mean
/// reacts too late to a sudden drop.
const CARRY_STEPS: usize = 2;

struct Setup<'a> {
    /// The targets.
    z: &'a [f64],
    /// What the regressors are built from: `z` with outliers replaced (see [`clean`]).
    regressor_source: Vec<f64>,
    season: Seasonality,
    horizon: usize,
    /// Built regressor columns by block and feature set.
    regressors: RefCell<Vec<(usize, FeatureSet, Rc<Columns>)>>,
    /// The range an iterated forecast is held to: the history's, widened by its own width on
    /// both sides, so that an unstable autoregression cannot run off to infinity far ahead.
    bounds: (f64, f64),
}

/// Regressor columns over the history and the future steps.
type Columns = Vec<Vec<f64>>;

impl Setup<'_> {
    fn blocks(&self) -> usize {
        self.horizon.div_ceil(self.season.day)
    }

    /// The regressor columns of a block, built once for all candidates and fits.
    fn regressors(&self, block: usize, set: FeatureSet) -> Result<Rc<Columns>, ForecastError> {
        let mut cache = self.regressors.borrow_mut();
        if let Some((_, _, columns)) = cache.iter().find(|(b, s, _)| *b == block && *s == set) {
            return Ok(Rc::clone(columns));
        }
        let (_, columns) = features::regressors(
            &self.regressor_source,
            self.horizon,
            self.season,
            block,
            set,
        )?;
        let columns = Rc::new(columns);
        cache.push((block, set, Rc::clone(&columns)));
        Ok(columns)
    }

    /// The candidate's residual at `t`: the error of what it would have said about `t` from
    /// the data a day before (one step before, for an autoregression).
    fn residual(&self, candidate: &Candidate, fitted: &Fitted, t: usize) -> Option<f64> {
        let base = match candidate {
            Candidate::NaiveDay => self.z[t.checked_sub(self.season.day)?],
            Candidate::NaiveWeek => self.z[t.checked_sub(self.season.week)?],
            Candidate::Regression { .. } => {
                let (model, columns) = fitted.blocks.first()?;
                model.predict(&Fitted::row(columns, t)?)
            }
            Candidate::Autoregression { .. } => {
                let (model, lags) = fitted.ar.as_ref()?;
                model.predict(&lagged(lags, t, |i| self.z[i])?)
            }
        };
        Some(self.z[t] - base)
    }

    /// The mean of the last [`CARRY_STEPS`] residuals before origin `o`.
    fn carry(&self, candidate: &Candidate, fitted: &Fitted, o: usize) -> Option<f64> {
        let residuals: Option<Vec<f64>> = (o.checked_sub(CARRY_STEPS)?..o)
            .map(|t| self.residual(candidate, fitted, t))
            .collect();
        Some(residuals?.iter().sum::<f64>() / CARRY_STEPS as f64)
    }

    /// Fits a candidate on `z[..end]`: the regressions' models, and for every candidate how
    /// its recent residual persists (the regression of the residual `h` steps later on the
    /// carried residual, within [0, 1]).
    fn fit(&self, candidate: &Candidate, end: usize) -> Result<Fitted, ForecastError> {
        let blocks = match candidate {
            Candidate::Regression {
                penalty,
                halflife_days,
                robust,
                ..
            } => self.fit_blocks(*penalty, *halflife_days, *robust, end)?,
            _ => Vec::new(),
        };
        let ar = match candidate {
            Candidate::Autoregression { lags, .. } => {
                Some(self.fit_ar(lags.lags(self.season), end)?)
            }
            _ => None,
        };
        let mut fitted = Fitted {
            blocks,
            ar,
            decay: Vec::new(),
        };
        let residuals: Vec<Option<f64>> = (0..end)
            .map(|t| self.residual(candidate, &fitted, t))
            .collect();
        let carried: Vec<Option<f64>> = (0..end)
            .map(|t| {
                let window = residuals.get((t + 1).checked_sub(CARRY_STEPS)?..=t)?;
                let sum = window.iter().copied().sum::<Option<f64>>()?;
                Some(sum / CARRY_STEPS as f64)
            })
            .collect();
        fitted.decay = (1..=self.horizon)
            .map(|h| {
                let (mut num, mut den) = (0.0, 0.0);
                for t in 0..end.saturating_sub(h) {
                    if let (Some(a), Some(c)) = (residuals[t + h], carried[t]) {
                        num += a * c;
                        den += c * c;
                    }
                }
                if den > 0.0 {
                    (num / den).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        Ok(fitted)
    }

    /// The candidate fitted on `z[..end]` and forecast from each origin (as far as the data
    /// goes), in the original scale; None if it cannot be fitted or cannot forecast.
    fn backtest(
        &self,
        candidate: &Candidate,
        end: usize,
        origins: &[usize],
        transform: Transform,
    ) -> Option<Vec<Vec<f64>>> {
        let fitted = self.fit(candidate, end).ok()?;
        let n = self.z.len();
        origins
            .iter()
            .map(|o| {
                let pred = self.predict(candidate, &fitted, *o, self.horizon.min(n - o))?;
                Some(pred.iter().map(|p| transform.inverse(*p)).collect())
            })
            .collect()
    }

    /// An autoregression on `z[..end]` with these lags.
    fn fit_ar(&self, lags: Vec<usize>, end: usize) -> Result<(Linear, Vec<usize>), ForecastError> {
        let first = lags.iter().max().copied().unwrap_or(0);
        let rows = end.saturating_sub(first);
        if rows < (2 * self.season.day).max(3 * lags.len()) {
            return Err(ForecastError::Model(format!(
                "{rows} rows to fit {} lags",
                lags.len()
            )));
        }
        let x = Array2::from_shape_fn((rows, lags.len()), |(i, j)| self.z[first + i - lags[j]]);
        let y = Array1::from_iter(self.z[first..end].iter().copied());
        let model = linear::fit(&x, &y, &vec![1.0; rows], Penalty::Ridge(1e-3))?;
        Ok((model, lags))
    }

    /// The regression models, one per block of a day's steps ahead.
    fn fit_blocks(
        &self,
        penalty: Penalty,
        halflife_days: Option<f64>,
        robust: bool,
        end: usize,
    ) -> Result<Vec<(Linear, Rc<Columns>)>, ForecastError> {
        let set = FeatureSet::for_history(end, self.season);
        let mut blocks = Vec::new();
        for block in 1..=self.blocks() {
            let columns = self.regressors(block, set)?;
            let rows: Vec<usize> = (0..end)
                .filter(|t| columns.iter().all(|c| c[*t].is_finite()))
                .collect();
            let p = columns.len();
            if rows.len() < (2 * self.season.day).max(3 * p) {
                return Err(ForecastError::Model(format!(
                    "{} rows to fit {p} regressors",
                    rows.len()
                )));
            }
            let x = Array2::from_shape_fn((rows.len(), p), |(i, j)| columns[j][rows[i]]);
            let y = Array1::from_iter(rows.iter().map(|t| self.z[*t]));
            let mut weights: Vec<f64> = match halflife_days {
                Some(days) => {
                    let halflife = days * self.season.day as f64;
                    rows.iter()
                        .map(|t| 0.5f64.powf((end - 1 - t) as f64 / halflife))
                        .collect()
                }
                None => vec![1.0; rows.len()],
            };
            let mut model = linear::fit(&x, &y, &weights, penalty)?;
            if robust {
                // Down-weight rows more than 2.5 robust deviations off (Huber weights).
                let residuals: Vec<f64> = (0..rows.len())
                    .map(|i| y[i] - model.predict(x.row(i).as_slice().unwrap_or(&[])))
                    .collect();
                let mut abs: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
                abs.sort_by(f64::total_cmp);
                let limit = 2.5 * 1.4826 * abs[abs.len() / 2];
                if limit > 0.0 {
                    for (w, r) in weights.iter_mut().zip(&residuals) {
                        *w *= (limit / r.abs()).min(1.0);
                    }
                    model = linear::fit(&x, &y, &weights, penalty)?;
                }
            }
            blocks.push((model, columns));
        }
        Ok(blocks)
    }

    /// The forecast (in the transformed scale) of steps 1..=steps after origin `o`: the
    /// candidate's base plus the recent residual, decayed as measured.
    fn predict(
        &self,
        candidate: &Candidate,
        fitted: &Fitted,
        o: usize,
        steps: usize,
    ) -> Option<Vec<f64>> {
        let season = self.season;
        // The value `back` steps before step h's time, known at the origin.
        let known = |h: usize, period: usize| {
            let back = period * h.div_ceil(period);
            (o + h - 1).checked_sub(back).map(|i| self.z[i])
        };
        let carry = self.carry(candidate, fitted, o).unwrap_or(0.0);
        // An autoregression is iterated: later steps read the forecasts of earlier ones.
        let path = match &fitted.ar {
            Some((model, lags)) => {
                let mut path: Vec<f64> = Vec::with_capacity(steps);
                for h in 0..steps {
                    let row = lagged(lags, o + h, |i| if i < o { self.z[i] } else { path[i - o] })?;
                    let (low, high) = self.bounds;
                    path.push(model.predict(&row).clamp(low, high));
                }
                path
            }
            None => Vec::new(),
        };
        (1..=steps)
            .map(|h| {
                let base = match candidate {
                    Candidate::NaiveDay => known(h, season.day)?,
                    Candidate::NaiveWeek => known(h, season.week)?,
                    Candidate::Autoregression { .. } => *path.get(h - 1)?,
                    Candidate::Regression { .. } => {
                        let block = h.div_ceil(season.day);
                        let (model, columns) = fitted.blocks.get(block - 1)?;
                        model.predict(&Fitted::row(columns, o + h - 1)?)
                    }
                };
                Some(base + fitted.decay[h - 1] * carry)
            })
            .collect()
    }
}

/// The autoregression's row for step `t`: the value `lag` steps before it, per lag; None when
/// a lag reaches before the series.
fn lagged(lags: &[usize], t: usize, value: impl Fn(usize) -> f64) -> Option<Vec<f64>> {
    lags.iter().map(|l| t.checked_sub(*l).map(&value)).collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    empirical_quantile(values, 0.5)
}

/// `z` with outliers (a blizzard, an outage) replaced by the median of the same step in the
/// three previous weeks (days, with less than four weeks of history), so that one odd day does
/// not become the lag the next days are forecast from. An outlier lies more than 4 robust
/// standard deviations from that median. Only the past is used at every step.
fn clean(z: &[f64], season: Seasonality) -> Vec<f64> {
    let period = if z.len() >= 4 * season.week {
        season.week
    } else {
        season.day
    };
    let baseline: Vec<Option<f64>> = (0..z.len())
        .map(|t| {
            let mut past: Vec<f64> = (1..=3)
                .filter_map(|k| t.checked_sub(k * period).map(|i| z[i]))
                .collect();
            (past.len() >= 2).then(|| median(&mut past))
        })
        .collect();
    let mut deviations: Vec<f64> = z
        .iter()
        .zip(&baseline)
        .filter_map(|(v, b)| b.map(|b| v - b))
        .collect();
    if deviations.len() < 10 {
        return z.to_vec();
    }
    let centre = median(&mut deviations);
    let mut spread: Vec<f64> = deviations.iter().map(|d| (d - centre).abs()).collect();
    let limit = 4.0 * 1.4826 * median(&mut spread);
    z.iter()
        .zip(&baseline)
        .map(|(v, b)| match b {
            Some(b) if limit > 0.0 && (v - b - centre).abs() > limit => *b,
            _ => *v,
        })
        .collect()
}

/// The empirical quantile of sorted values (linear interpolation).
fn empirical_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Forecasts `horizon` steps after the end of `history` (a regular grid, gaps filled).
pub fn forecast(
    history: &[f64],
    season: Seasonality,
    options: &ForecastOptions,
) -> Result<Forecast, ForecastError> {
    let started = Instant::now();
    let horizon = options.horizon;
    if horizon == 0 {
        return Err(ForecastError::Input(
            "the horizon must be at least one step".into(),
        ));
    }
    if history.is_empty() {
        return Err(ForecastError::Input("no history to forecast from".into()));
    }
    if let Some(t) = history.iter().position(|v| !v.is_finite()) {
        return Err(ForecastError::Input(format!(
            "history value {t} is {}, not a number",
            history[t]
        )));
    }
    if let Some(bad) = options.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(ForecastError::Input(format!(
            "quantile levels lie in [0, 1], got {bad}"
        )));
    }
    let transform = Transform::for_values(history);
    let z: Vec<f64> = history.iter().map(|y| transform.forward(*y)).collect();
    let n = z.len();
    let setup = Setup {
        regressor_source: clean(&z, season),
        z: &z,
        season,
        horizon,
        regressors: RefCell::default(),
        bounds: {
            let low = z.iter().copied().fold(f64::INFINITY, f64::min);
            let high = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (2.0 * low - high, 2.0 * high - low)
        },
    };
    let blocks = setup.blocks();
    let validation = (7 * season.day).min(n / 4);
    let enough = n >= (blocks + 4) * season.day && validation >= season.day;
    let finish = |model: &str,
                  point: Vec<f64>,
                  windows: Vec<Vec<Vec<f64>>>,
                  widen: f64,
                  short: bool,
                  scores: Vec<Score>| {
        // Split-conformal quantiles per step, pooled with neighbouring steps, from each
        // window of errors (one list per step ahead; a window of one list serves every step).
        // The median comes from the first window; the other quantiles are the widest any
        // window gives, since how far a series strays changes over time.
        let pool = (horizon / 16).clamp(1, 16);
        let levels: Vec<f64> = std::iter::once(0.5)
            .chain(options.quantiles.iter().copied())
            .collect();
        let mut table = vec![Vec::with_capacity(horizon); levels.len()];
        for (h, z) in point.iter().enumerate() {
            let pooled: Vec<Vec<f64>> = windows
                .iter()
                .filter(|errors| !errors.is_empty())
                .map(|errors| {
                    let c = h.min(errors.len() - 1);
                    let near = &errors[c.saturating_sub(pool)..(c + pool + 1).min(errors.len())];
                    let mut pooled: Vec<f64> = near.iter().flatten().copied().collect();
                    if pooled.len() < 10 {
                        pooled = errors.iter().flatten().copied().collect();
                    }
                    pooled.sort_by(f64::total_cmp);
                    pooled
                })
                .collect();
            for (column, q) in table.iter_mut().zip(&levels) {
                let mut each = pooled.iter().map(|p| empirical_quantile(p, *q) * widen);
                let first = each.next().unwrap_or(0.0);
                let error = if *q > 0.5 {
                    each.fold(first, f64::max)
                } else if *q < 0.5 {
                    each.fold(first, f64::min)
                } else {
                    first
                };
                column.push(transform.inverse(z + error));
            }
        }
        let mut table = table.into_iter();
        let yhat = table.next().unwrap_or_default();
        let validation_mase = scores
            .first()
            .map(|s: &Score| s.mae / metrics::seasonal_naive_scale(history, season.day));
        Forecast {
            validation_mase: validation_mase.filter(|m| m.is_finite()),
            model: model.to_owned(),
            yhat,
            quantiles: options.quantiles.iter().copied().zip(table).collect(),
            short_history: short,
            scores,
            fit_seconds: started.elapsed().as_secs_f64(),
        }
    };

    if !enough {
        // Fallback: the day before, or the mean; errors from the whole history, widened.
        let (model, point, errors): (&str, Vec<f64>, Vec<f64>) = if n > season.day {
            let naive = Fitted {
                blocks: Vec::new(),
                ar: None,
                decay: vec![0.0; horizon],
            };
            let point = setup
                .predict(&Candidate::NaiveDay, &naive, n, horizon)
                .unwrap_or_default();
            let errors = (season.day..n).map(|t| z[t] - z[t - season.day]).collect();
            ("seasonal_naive_day", point, errors)
        } else {
            let mean = z.iter().sum::<f64>() / n as f64;
            let errors = z.iter().map(|v| v - mean).collect();
            ("mean", vec![mean; horizon], errors)
        };
        let errors = if errors.is_empty() { vec![0.0] } else { errors };
        return Ok(finish(
            model,
            point,
            vec![vec![errors]],
            1.5,
            true,
            Vec::new(),
        ));
    }

    // Validation: fit on all but the last `validation` steps, forecast from origins every
    // `stride` steps within them.
    let end = n - validation;
    let stride = (season.day / 8).max(1);
    let origins: Vec<usize> = (end..n).step_by(stride).collect();
    // Per candidate that forecast every origin: its forecasts, in the original scale.
    let mut runs: Vec<(Candidate, Vec<Vec<f64>>)> = Vec::new();
    for candidate in CANDIDATES {
        if candidate == Candidate::NaiveWeek && end < season.week {
            continue;
        }
        if let Some(forecasts) = setup.backtest(&candidate, end, &origins, transform) {
            runs.push((candidate, forecasts));
        }
    }
    let mae = |forecasts: &[Vec<f64>]| {
        let (mut sum, mut count) = (0.0, 0usize);
        for (o, pred) in origins.iter().zip(forecasts) {
            for (h, p) in pred.iter().enumerate() {
                sum += (history[o + h] - p).abs();
                count += 1;
            }
        }
        sum / count.max(1) as f64
    };
    // A candidate whose forecasts blew up (a NaN or infinite error) is out.
    let mut singles: Vec<(f64, usize)> = runs
        .iter()
        .enumerate()
        .map(|(i, (_, forecasts))| (mae(forecasts), i))
        .filter(|(mae, _)| mae.is_finite())
        .collect();
    singles.sort_by(|a, b| a.0.total_cmp(&b.0));
    if singles.is_empty() {
        return Err(ForecastError::Model("no candidate could forecast".into()));
    }
    // Every single candidate, and the means of the best two and three: combining forecasts
    // that err differently often beats every one of them.
    let mut choices: Vec<Choice> = singles
        .iter()
        .map(|(mae, i)| Choice {
            mae: *mae,
            members: vec![*i],
            forecasts: runs[*i].1.clone(),
        })
        .collect();
    for k in 2..=COMBINED.min(singles.len()) {
        let mut members: Vec<usize> = singles[..k].iter().map(|(_, i)| *i).collect();
        // In the candidates' order, so that one combination has one name.
        members.sort_unstable();
        let forecasts: Vec<Vec<f64>> = (0..origins.len())
            .map(|j| mean_forecast(members.iter().map(|i| &runs[*i].1[j])))
            .collect();
        choices.push(Choice {
            mae: mae(&forecasts),
            members,
            forecasts,
        });
    }
    choices.sort_by(|a, b| a.mae.total_cmp(&b.mae));
    let name = |members: &[usize]| -> String {
        let names: Vec<&str> = members.iter().map(|i| runs[*i].0.name()).collect();
        match names.as_slice() {
            [one] => (*one).to_owned(),
            many => format!("mean({})", many.join(", ")),
        }
    };
    let scores: Vec<Score> = choices
        .iter()
        .map(|c| Score {
            model: name(&c.members),
            mae: c.mae,
        })
        .collect();
    let best = &choices[0];
    let errors_of = |origins: &[usize], forecasts: &[Vec<f64>]| {
        let mut errors = vec![Vec::new(); horizon];
        for (o, pred) in origins.iter().zip(forecasts) {
            for (h, p) in pred.iter().enumerate() {
                errors[h].push(z[o + h] - transform.forward(*p));
            }
        }
        errors
    };
    // A second window of errors for the intervals, one the choice was not made on (errors
    // where it won are small): the chosen members fitted on the history before the window
    // before the validation window, forecast across it.
    let calibration: Option<(Vec<usize>, Vec<Vec<f64>>)> =
        end.checked_sub(validation).and_then(|start| {
            let origins: Vec<usize> = (start..end).step_by(stride).collect();
            let members: Option<Vec<Vec<Vec<f64>>>> = best
                .members
                .iter()
                .map(|i| setup.backtest(&runs[*i].0, start, &origins, transform))
                .collect();
            let members = members?;
            let forecasts = (0..origins.len())
                .map(|j| mean_forecast(members.iter().map(|m| &m[j])))
                .collect();
            Some((origins, forecasts))
        });
    let mut windows = vec![errors_of(&origins, &best.forecasts)];
    windows.extend(calibration.map(|(o, f)| errors_of(&o, &f)));
    let mut members = Vec::new();
    for i in &best.members {
        let candidate = &runs[*i].0;
        let fitted = setup.fit(candidate, n)?;
        let point = setup
            .predict(candidate, &fitted, n, horizon)
            .ok_or_else(|| ForecastError::Model(format!("{} cannot forecast", candidate.name())))?;
        members.push(
            point
                .iter()
                .map(|p| transform.inverse(*p))
                .collect::<Vec<f64>>(),
        );
    }
    let point: Vec<f64> = mean_forecast(members.iter())
        .iter()
        .map(|p| transform.forward(*p))
        .collect();
    Ok(finish(
        &name(&best.members),
        point,
        windows,
        1.0,
        false,
        scores,
    ))
}

/// At most this many of the best candidates are combined.
const COMBINED: usize = 3;

/// A single candidate or a combination, with its validation forecasts.
struct Choice {
    mae: f64,
    /// Indexes of the runs averaged.
    members: Vec<usize>,
    forecasts: Vec<Vec<f64>>,
}

/// The step-wise mean of forecasts of one length.
fn mean_forecast<'a>(forecasts: impl Iterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut count = 0;
    for f in forecasts {
        if sum.is_empty() {
            sum = vec![0.0; f.len()];
        }
        for (s, v) in sum.iter_mut().zip(f) {
            *s += v;
        }
        count += 1;
    }
    sum.iter().map(|s| s / count.max(1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ForecastOptions {
        ForecastOptions {
            horizon: 24,
            quantiles: vec![0.1, 0.5, 0.9],
        }
    }

    /// Hourly load with a daily and a weekly cycle, a trend, and noise.
    fn synthetic(days: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..days * 24)
            .map(|t| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 20.0;
                let hour = (t % 24) as f64;
                let weekday = (t / 24) % 7;
                let daily = 100.0 + 80.0 * (std::f64::consts::PI * hour / 24.0).sin().powi(2);
                let weekly = if weekday >= 5 { 0.6 } else { 1.0 };
                daily * weekly + t as f64 * 0.05 + noise
            })
            .collect()
    }

    #[test]
    fn a_regression_beats_seasonal_naive_on_clean_cycles() {
        let season = Seasonality { day: 24, week: 168 };
        let series = synthetic(42, 7);
        let f = forecast(&series[..40 * 24], season, &options()).unwrap();
        assert!(!f.short_history);
        assert!(!f.model.starts_with("seasonal_naive"), "{f:?}");
        assert_eq!(f.yhat.len(), 24);
        let actual = &series[40 * 24..41 * 24];
        let mae: f64 = f
            .yhat
            .iter()
            .zip(actual)
            .map(|(p, a)| (p - a).abs())
            .sum::<f64>()
            / 24.0;
        // The noise alone has a mean absolute value of 5.
        assert!(mae < 9.0, "MAE {mae}: {f:?}");
        let (p10, p90) = (f.quantile(0.1).unwrap(), f.quantile(0.9).unwrap());
        for h in 0..24 {
            assert!(
                p10[h] <= f.yhat[h] && f.yhat[h] <= p90[h],
                "step {h}: {f:?}"
            );
        }
    }

    #[test]
    fn short_history_falls_back_with_wide_intervals() {
        let season = Seasonality { day: 24, week: 168 };
        let series = synthetic(3, 1);
        let f = forecast(&series, season, &options()).unwrap();
        assert!(f.short_history);
        assert_eq!(f.model, "seasonal_naive_day");
        let f = forecast(&series[..10], season, &options()).unwrap();
        assert_eq!(f.model, "mean");
        assert!(f.quantile(0.9).unwrap()[0] > f.quantile(0.1).unwrap()[0]);
        assert!(forecast(&[1.0, f64::NAN], season, &options()).is_err());
        // Zeros stay non-negative.
        let f = forecast(&[0.0; 100], season, &options()).unwrap();
        assert!(f.yhat.iter().all(|v| *v == 0.0), "{f:?}");
        assert!(
            forecast(
                &series,
                season,
                &ForecastOptions {
                    horizon: 0,
                    quantiles: vec![]
                }
            )
            .is_err()
        );
    }
}
