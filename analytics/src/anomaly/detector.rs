//! A causal, constant-time anomaly detector for one metric series.
//!
//! The score at t uses only points up to t, and each step costs the same however long the
//! series has run, so one detector per KPI series can run on every new minute. Three kinds of
//! evidence are combined:
//! - **prediction error**: the best of three forecasts (a smoothed level, and the same phase
//!   of the day and of the week, whichever has erred least lately) against the new value,
//!   averaged over the last point and the last 20 points;
//! - **unseen context**: the last 5 and 6 values, quantized into 10 levels of the range seen
//!   so far, never seen in that order before (the idea of the Contextual Anomaly Detector,
//!   CAD OSE, which scores 69.9 on NAB);
//! - **new extremes**: a value beyond 2 % outside the range seen so far.
//!
//! Each kind is judged against its own long-run mean and spread (the "anomaly likelihood" of
//! Ahmad et al., 2017), so a noisy series needs a bigger jump than a quiet one; the strongest
//! evidence wins, and a new extreme is enough on its own.
//!
//! One event raises one alert: a point scores fully only when it is the most surprising of
//! the last 75, and after a point scores above [`ANOMALY_THRESHOLD`] the next 200 points are
//! damped by 0.7 rather than silenced, so only a much stronger point (an undamped score of
//! about 0.79, e.g. a new extreme) alerts again during the rest: a second, bigger fault soon
//! after a first is still flagged, the tail of the first is not.
//!
//! The constants were chosen on the Numenta Anomaly Benchmark (`headroom anomaly nab`); the
//! README records the scores.

use std::collections::{HashSet, VecDeque};

/// The score above which a point is anomalous: the threshold NAB's standard profile chooses
/// for this detector.
pub const ANOMALY_THRESHOLD: f64 = 0.55;

/// Smoothing of the level forecast (about the last 33 points).
const LEVEL_ALPHA: f64 = 0.03;
/// Smoothing of the per-phase (daily and weekly) forecasts: about the last three periods.
const SEASONAL_ALPHA: f64 = 0.3;
/// Smoothing of each forecast's absolute error, which picks the forecast.
const ERROR_ALPHA: f64 = 0.01;
/// Errors beyond this many typical errors are clipped when learning.
const CLIP: f64 = 4.0;
/// Errors a seasonal forecast must have made before it may be picked.
const SEASONAL_MIN_POINTS: usize = 50;
/// Prediction errors of this many typical errors map to a surprise of 1 − 1/e.
const ERROR_SCALE: f64 = 11.0;
/// Points averaged by the slow prediction-error channel.
const SLOW_WINDOW: usize = 20;
/// The single-point channel is noisier: its evidence counts half.
const POINT_WEIGHT: f64 = 0.5;
/// (values in a context, quantization levels) of the two context channels.
const CONTEXTS: [(usize, usize); 2] = [(5, 10), (6, 10)];
/// Points over which the share of unseen contexts is averaged.
const CONTEXT_WINDOW: usize = 10;
/// Contexts remembered per channel: the recent half in one set, the half before in another,
/// so memory stays bounded without forgetting everything at once.
const CONTEXT_CAPACITY: usize = 10_000;
/// Smoothing of each channel's long-run mean and variance (about 1,400 points).
const HISTORY_ALPHA: f64 = 0.0007;
/// Floor of a channel's long-run standard deviation.
const MIN_SD: f64 = 0.02;
/// A value this far beyond the seen range (as a share of it) is a new extreme...
const EXTREME_MARGIN: f64 = 0.02;
/// ...and adds this many deviations of evidence: an undamped score of at least 0.8, enough
/// to alert alone, even during the rest after an alert.
const EXTREME_EVIDENCE: f64 = 20.0;
/// New extremes count once this much time has passed since the first point.
const EXTREMES_AFTER_SECONDS: i64 = 86_400;
/// Evidence (in deviations) that maps to a score of 0.5.
const EVIDENCE_HALF: f64 = 5.0;
/// Points after an alert during which scores are damped by `REST_DAMPING`: only points whose
/// undamped score is at least `ANOMALY_THRESHOLD / REST_DAMPING` (about 0.79) alert again.
const REST_POINTS: usize = 200;
const REST_DAMPING: f64 = 0.7;
/// The span a point must top to score fully; a point below the largest score of the last
/// `PEAK_POINTS` points is damped by `PEAK_DAMPING`.
const PEAK_POINTS: usize = 75;
const PEAK_DAMPING: f64 = 0.5;
/// Points learned before anything is scored.
const WARMUP_POINTS: usize = 100;
/// The largest period, in points, a seasonal forecast keeps (a week of minutes).
const MAX_PHASES: i64 = 10_080;

/// What the detector expected of a point and how anomalous the point was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Anomaly score in [0, 1); 0 during warm-up. Anomalous from [`ANOMALY_THRESHOLD`].
    pub score: f64,
    /// The score before the one-alert-per-event damping: for callers that group alerts into
    /// events themselves.
    pub undamped: f64,
    /// The forecast made before the point was seen.
    pub expected: f64,
    /// The band of ordinary values around `expected` (three typical errors).
    pub lower: f64,
    pub upper: f64,
}

/// One forecast of the next point, and how well it has been doing.
#[derive(Debug, Clone)]
struct Forecast {
    /// Smoothed value per phase of the period (a single phase for the level).
    phases: Vec<f64>,
    seen: Vec<bool>,
    period_seconds: i64,
    alpha: f64,
    mean_abs_error: f64,
    errors: usize,
}

impl Forecast {
    fn new(period_seconds: i64, phases: usize, alpha: f64) -> Self {
        Forecast {
            phases: vec![0.0; phases],
            seen: vec![false; phases],
            period_seconds,
            alpha,
            mean_abs_error: 0.0,
            errors: 0,
        }
    }

    fn phase(&self, t: i64) -> usize {
        let n = self.phases.len() as i128;
        let p = t.rem_euclid(self.period_seconds) as i128;
        (p * n / self.period_seconds as i128) as usize
    }

    fn predict(&self, t: i64) -> Option<f64> {
        let k = self.phase(t);
        self.seen[k].then_some(self.phases[k])
    }

    fn learn(&mut self, t: i64, value: f64) {
        // Errors beyond CLIP typical errors teach as if they were CLIP: an outage or a spike
        // moves the forecast slowly, a lasting change still becomes the new normal.
        let clip = if self.errors >= SEASONAL_MIN_POINTS {
            CLIP * self.mean_abs_error
        } else {
            f64::INFINITY
        };
        if let Some(p) = self.predict(t) {
            self.errors += 1;
            let a = ERROR_ALPHA.max(1.0 / self.errors as f64);
            self.mean_abs_error += a * ((value - p).abs().min(clip) - self.mean_abs_error);
        }
        let k = self.phase(t);
        if self.seen[k] {
            let e = value - self.phases[k];
            self.phases[k] += self.alpha * e.clamp(-clip, clip);
        } else {
            self.phases[k] = value;
            self.seen[k] = true;
        }
    }
}

/// A surprise averaged over a trailing window, judged against its own long-run mean and spread.
#[derive(Debug, Clone)]
struct Channel {
    ring: Vec<f64>,
    sum: f64,
    next: usize,
    mean: f64,
    var: f64,
}

impl Channel {
    fn new(window: usize) -> Self {
        Channel {
            ring: vec![0.0; window.max(1)],
            sum: 0.0,
            next: 0,
            mean: 0.0,
            var: 0.0,
        }
    }

    /// Pushes `surprise`; returns how many long-run deviations the window's mean is above
    /// its long-run mean (0 when below).
    fn push(&mut self, surprise: f64, seen: usize) -> f64 {
        self.sum += surprise - self.ring[self.next];
        self.ring[self.next] = surprise;
        self.next = (self.next + 1) % self.ring.len();
        let avg = self.sum / self.ring.len() as f64;
        let d = avg - self.mean;
        let evidence = d / self.var.sqrt().max(MIN_SD);
        self.mean += HISTORY_ALPHA.max(1.0 / (seen + 1) as f64) * d;
        self.var = (1.0 - HISTORY_ALPHA) * (self.var + HISTORY_ALPHA * d * d);
        evidence.max(0.0)
    }
}

/// Whether the last few quantized values, in this order, have been seen before.
#[derive(Debug, Clone)]
struct Contexts {
    len: usize,
    levels: usize,
    context: u64,
    /// Contexts seen lately, and those seen before them.
    seen: [HashSet<u64>; 2],
    channel: Channel,
}

impl Contexts {
    fn new(len: usize, levels: usize) -> Self {
        Contexts {
            len,
            levels,
            context: 0,
            seen: [HashSet::new(), HashSet::new()],
            channel: Channel::new(CONTEXT_WINDOW),
        }
    }

    fn push(&mut self, value: f64, min: f64, range: f64, seen: usize) -> f64 {
        // Levels 0..=levels+1: below the range, inside it, above it; one byte each.
        let level = (((value - min) / range) * self.levels as f64)
            .floor()
            .clamp(-1.0, self.levels as f64) as i64
            + 1;
        let mask = (1u64 << (8 * self.len)) - 1;
        self.context = ((self.context << 8) | level as u64) & mask;
        // Seen again: kept in the recent set, so it survives the next rotation.
        let novel = self.seen[0].insert(self.context) && !self.seen[1].contains(&self.context);
        if self.seen[0].len() >= CONTEXT_CAPACITY / 2 {
            self.seen[1] = std::mem::take(&mut self.seen[0]);
        }
        self.channel.push(if novel { 1.0 } else { 0.0 }, seen)
    }
}

/// The detector of one series. Feed it points in time order with [`Detector::update`].
#[derive(Debug, Clone)]
pub struct Detector {
    seen: usize,
    /// Timestamps of the first points, to learn the sampling step.
    first_times: Vec<i64>,
    forecasts: Vec<Forecast>,
    min: f64,
    max: f64,
    point: Channel,
    slow: Channel,
    contexts: Vec<Contexts>,
    /// (point number, undamped score) of recent points, decreasing scores.
    peaks: VecDeque<(usize, f64)>,
    rest_until: usize,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector {
    pub fn new() -> Self {
        Detector {
            seen: 0,
            first_times: Vec::new(),
            forecasts: vec![Forecast::new(1, 1, LEVEL_ALPHA)],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            point: Channel::new(1),
            slow: Channel::new(SLOW_WINDOW),
            contexts: CONTEXTS
                .iter()
                .map(|&(len, levels)| Contexts::new(len, levels))
                .collect(),
            peaks: VecDeque::new(),
            rest_until: 0,
        }
    }

    /// Adds the daily and weekly forecasts once the sampling step is known (the smallest
    /// interval among the first eight points).
    fn learn_step(&mut self, t: i64) {
        if self.forecasts.len() > 1 || self.first_times.len() >= 8 {
            return;
        }
        self.first_times.push(t);
        if self.first_times.len() < 8 {
            return;
        }
        let Some(step) = self
            .first_times
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .min()
        else {
            return;
        };
        for period in [86_400, 604_800] {
            let phases = period / step;
            if (4..=MAX_PHASES).contains(&phases) {
                self.forecasts
                    .push(Forecast::new(period, phases as usize, SEASONAL_ALPHA));
            }
        }
    }

    /// Scores `value`, observed at `t` (seconds), against the past; then learns from it.
    pub fn update(&mut self, t: i64, value: f64) -> Scored {
        self.learn_step(t);
        if self.seen == 0 {
            self.min = value;
            self.max = value;
        }
        let range = (self.max - self.min).max(value.abs() * 1e-3).max(1e-9);

        // The forecast with the smallest recent error predicts.
        let mut expected = self.forecasts[0].predict(t).unwrap_or(value);
        let mut typical_error = self.forecasts[0].mean_abs_error;
        for f in &self.forecasts[1..] {
            if let Some(p) = f.predict(t)
                && f.errors >= SEASONAL_MIN_POINTS
                && f.mean_abs_error < typical_error
            {
                expected = p;
                typical_error = f.mean_abs_error;
            }
        }
        let typical_error = typical_error.max(range * 1e-3);
        let surprise = 1.0 - (-(value - expected).abs() / typical_error / ERROR_SCALE).exp();

        let mut evidence = (self.point.push(surprise, self.seen) * POINT_WEIGHT)
            .max(self.slow.push(surprise, self.seen));
        for ctx in &mut self.contexts {
            evidence = evidence.max(ctx.push(value, self.min, range, self.seen));
        }
        let margin = range * EXTREME_MARGIN;
        // Until a day has passed, the range has not seen the whole daily cycle yet.
        let day_seen = self
            .first_times
            .first()
            .is_some_and(|t0| t - t0 >= EXTREMES_AFTER_SECONDS);
        if day_seen && (value > self.max + margin || value < self.min - margin) {
            evidence += EXTREME_EVIDENCE;
        }
        let undamped = if self.seen < WARMUP_POINTS {
            0.0
        } else {
            evidence / (evidence + EVIDENCE_HALF)
        };

        // One event, one alert.
        let mut score = undamped;
        while self.peaks.back().is_some_and(|&(_, s)| s <= undamped) {
            self.peaks.pop_back();
        }
        while self
            .peaks
            .front()
            .is_some_and(|&(i, _)| i + PEAK_POINTS < self.seen)
        {
            self.peaks.pop_front();
        }
        if !self.peaks.is_empty() {
            // The front is the largest recent score, and it is above this one.
            score *= PEAK_DAMPING;
        }
        self.peaks.push_back((self.seen, undamped));
        if self.seen < self.rest_until {
            score *= REST_DAMPING;
        } else if score >= ANOMALY_THRESHOLD {
            self.rest_until = self.seen + REST_POINTS;
        }

        if self.first_times.len() >= 8 {
            for f in &mut self.forecasts {
                f.learn(t, value);
            }
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.seen += 1;
        Scored {
            score,
            undamped,
            expected,
            lower: expected - 3.0 * typical_error,
            upper: expected + 3.0 * typical_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: u64) -> f64 {
        // A fixed pseudo-random sequence in [-1, 1).
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn daily(i: i64) -> f64 {
        let phase = (i % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        100.0 + 40.0 * phase.sin() + 3.0 * noise(i as u64)
    }

    #[test]
    fn a_spike_in_a_daily_cycle_is_anomalous_and_the_cycle_is_not() {
        let mut d = Detector::new();
        let mut highest_before = 0.0f64;
        for i in 0..(5 * 1440) {
            let s = d.update(i * 60, daily(i));
            if i > 2 * 1440 {
                highest_before = highest_before.max(s.score);
            }
        }
        assert!(highest_before < ANOMALY_THRESHOLD, "{highest_before}");
        let i = 5 * 1440;
        let s = d.update(i * 60, daily(i) + 60.0);
        assert!(s.score >= ANOMALY_THRESHOLD, "{s:?}");
        // The daily forecast knows the phase: expected within the noise of the cycle.
        assert!((s.expected - daily(i)).abs() < 6.0, "{s:?}");
        assert!(s.lower < daily(i) && daily(i) < s.upper, "{s:?}");
    }

    #[test]
    fn a_level_shift_is_flagged_once_then_rests() {
        let mut d = Detector::new();
        for i in 0..2000 {
            d.update(i * 300, 50.0 + noise(i as u64));
        }
        let scores: Vec<f64> = (2000..2100)
            .map(|i| d.update(i * 300, 80.0 + noise(i as u64)).score)
            .collect();
        assert!(scores[0] >= ANOMALY_THRESHOLD, "{:?}", &scores[..5]);
        let alerts = scores.iter().filter(|s| **s >= ANOMALY_THRESHOLD).count();
        assert_eq!(alerts, 1, "{scores:?}");
    }

    #[test]
    fn a_new_extreme_during_the_rest_still_alerts_and_the_tail_does_not() {
        let mut d = Detector::new();
        for i in 0..2000 {
            d.update(i * 300, 50.0 + noise(i as u64));
        }
        // A level shift alerts and starts the rest.
        assert!(d.update(2000 * 300, 80.0).score >= ANOMALY_THRESHOLD);
        for i in 2001..2100 {
            let s = d.update(i * 300, 80.0 + noise(i as u64));
            assert!(s.score < ANOMALY_THRESHOLD, "{i}: {s:?}");
        }
        // Still resting (REST_POINTS = 200), but a drop far below anything seen breaks through.
        let s = d.update(2100 * 300, 0.0);
        assert!(s.undamped >= ANOMALY_THRESHOLD / REST_DAMPING, "{s:?}");
        assert!(s.score >= ANOMALY_THRESHOLD, "{s:?}");
        // An ordinary point during the rest scores at most REST_DAMPING of its undamped score.
        let s = d.update(2101 * 300, 80.0);
        assert!(s.score <= REST_DAMPING * s.undamped + 1e-12, "{s:?}");
    }

    #[test]
    fn scores_are_in_range_and_warmup_is_silent() {
        let mut d = Detector::new();
        for i in 0..3000 {
            let v = if i % 700 == 0 { 1e6 } else { noise(i) };
            let s = d.update(i as i64 * 60, v);
            assert!((0.0..1.0).contains(&s.score), "{s:?}");
            if (i as usize) < WARMUP_POINTS {
                assert_eq!(s.score, 0.0);
            }
        }
        // A flat series has no noise to judge by; it must not divide by zero.
        let mut d = Detector::new();
        for i in 0..500 {
            let s = d.update(i * 60, 7.0);
            assert!(s.score.is_finite() && s.score < ANOMALY_THRESHOLD, "{s:?}");
        }
        assert!(d.update(500 * 60, 9.0).score >= ANOMALY_THRESHOLD);
    }

    #[test]
    fn memory_stays_bounded_on_a_long_noisy_series() {
        let mut d = Detector::new();
        for i in 0..60_000u64 {
            d.update(i as i64 * 60, noise(i) * 100.0);
        }
        for ctx in &d.contexts {
            assert!(
                ctx.seen[0].len() < CONTEXT_CAPACITY / 2,
                "{}",
                ctx.seen[0].len()
            );
            assert!(ctx.seen[1].len() <= CONTEXT_CAPACITY / 2);
        }
        // A week of minutes per phase table at most.
        assert!(
            d.forecasts
                .iter()
                .all(|f| f.phases.len() <= MAX_PHASES as usize)
        );
        assert_eq!(d.forecasts.len(), 3);
    }
}
