//! Exponential histograms as OpenTelemetry defines them, and the maths over them that no crate
//! implements: merging across scales, increases of cumulative histograms, Prometheus'
//! native-histogram quantiles and `percentile_cont` over bucket midpoints.
//!
//! Bucket `i` at scale `s` holds the magnitudes in (base^i, base^(i+1)], base = 2^(2^-s);
//! bucket `i` at scale `s - 1` is buckets `2i` and `2i + 1` at scale `s`. Merged histograms of
//! different scales meet at the finest scale every input can be brought down to, and coarser
//! still when one side would need more than [`MAX_BUCKETS`] buckets (as the OpenTelemetry SDKs
//! do); with different zero thresholds the largest wins, and the buckets wholly inside it move
//! to the zero bucket.

/// Buckets per sign a merged histogram may use before it is downscaled (the OpenTelemetry
/// SDKs' default maximum size).
pub const MAX_BUCKETS: usize = 160;
/// The scales OpenTelemetry allows.
pub const MIN_SCALE: i32 = -10;
pub const MAX_SCALE: i32 = 20;

/// One side (positive or negative magnitudes) of an exponential histogram: `counts[k]` is
/// bucket `offset + k`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<i64>,
}

impl Buckets {
    fn total(&self) -> i64 {
        self.counts.iter().fold(0, |sum, c| sum.saturating_add(*c))
    }

    /// The first and last bucket index that holds observations.
    fn extent(&self) -> Option<(i32, i32)> {
        let first = self.counts.iter().position(|c| *c != 0)?;
        let last = self.counts.iter().rposition(|c| *c != 0)?;
        Some((self.offset + first as i32, self.offset + last as i32))
    }

    /// Every bucket `by` scales coarser: index i becomes i >> by.
    fn downscale(&self, by: u32) -> Buckets {
        let Some((first, last)) = self.extent() else {
            return Buckets::default();
        };
        let offset = first >> by;
        let mut counts = vec![0i64; ((last >> by) - offset) as usize + 1];
        for (k, c) in self.counts.iter().enumerate() {
            if *c != 0 {
                let slot = &mut counts[((self.offset + k as i32) >> by).abs_diff(offset) as usize];
                *slot = slot.saturating_add(*c);
            }
        }
        Buckets { offset, counts }
    }

    /// `self + sign * other`, both at the same scale.
    fn combine(&self, other: &Buckets, sign: i64) -> Buckets {
        let extents: Vec<(i32, i32)> = [self.extent(), other.extent()]
            .into_iter()
            .flatten()
            .collect();
        let (Some(first), Some(last)) = (
            extents.iter().map(|e| e.0).min(),
            extents.iter().map(|e| e.1).max(),
        ) else {
            return Buckets::default();
        };
        let mut counts = vec![0i64; (last - first + 1) as usize];
        for (side, factor) in [(self, 1), (other, sign)] {
            for (k, c) in side.counts.iter().enumerate() {
                let i = side.offset + k as i32;
                if (first..=last).contains(&i) {
                    let slot = &mut counts[i.abs_diff(first) as usize];
                    *slot = slot.saturating_add(factor * c);
                }
            }
        }
        Buckets {
            offset: first,
            counts,
        }
    }
}

/// An OTLP exponential histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpHistogram {
    pub scale: i32,
    pub zero_count: i64,
    pub zero_threshold: f64,
    pub positive: Buckets,
    pub negative: Buckets,
}

/// base^index at `scale`, for a fractional index too: the lower boundary of bucket `index`.
#[inline]
pub fn boundary(index: f64, scale: i32) -> f64 {
    (index * (-f64::from(scale)).exp2()).exp2()
}

/// An observation as its bucket's log-midpoint (or 0, in the zero bucket), kept as the bucket
/// index until the value is needed: a percentile needs one or two values out of hundreds of
/// buckets, and `exp2` per bucket was most of its cost.
#[derive(Clone, Copy, Debug)]
pub struct Midpoint {
    index: i32,
    scale: i32,
    /// 1 for a positive bucket, -1 for a negative one, 0 for the zero bucket.
    sign: i8,
}

impl Midpoint {
    pub const ZERO: Midpoint = Midpoint {
        index: 0,
        scale: 0,
        sign: 0,
    };

    #[inline]
    pub fn positive(index: i32, scale: i32) -> Self {
        Self {
            index,
            scale,
            sign: 1,
        }
    }

    pub fn negative(index: i32, scale: i32) -> Self {
        Self {
            index,
            scale,
            sign: -1,
        }
    }

    #[inline]
    pub fn value(self) -> f64 {
        match self.sign {
            0 => 0.0,
            s => f64::from(s) * boundary(f64::from(self.index) + 0.5, self.scale),
        }
    }
}

/// [`ExpHistogram::percentile`] over observations given as (midpoint, count), ascending,
/// `total` of them.
pub fn percentile_of(
    observations: impl Iterator<Item = (Midpoint, i64)>,
    total: i64,
    phi: f64,
) -> Option<f64> {
    if !(0.0..=1.0).contains(&phi) || total <= 0 {
        return None;
    }
    let rank = phi * (total - 1) as f64;
    let (lo, frac) = (rank.floor() as i64, rank - rank.floor());
    let mut below = 0i64;
    let mut lower = None;
    for (mid, count) in observations {
        below = below.saturating_add(count);
        if lower.is_none() && below > lo {
            lower = Some(mid.value());
        }
        if let Some(l) = lower
            && (frac == 0.0 || below > lo + 1)
        {
            return Some(l + (mid.value() - l) * frac);
        }
    }
    lower
}

/// The largest positive bucket index at `scale` whose log-midpoint is ≤ `x` (i64::MIN for
/// none): the estimate from the logarithm, corrected for rounding.
fn last_index_at_most(x: f64, scale: i32) -> i64 {
    if x <= 0.0 {
        return i64::MIN;
    }
    let mid = |i: i64| boundary(i as f64 + 0.5, scale);
    let mut i = (x.log2() * f64::from(scale).exp2() - 0.5)
        .floor()
        .clamp(i32::MIN as f64, i32::MAX as f64) as i64;
    while mid(i + 1) <= x && i < i64::from(i32::MAX) {
        i += 1;
    }
    while mid(i) > x && i > i64::from(i32::MIN) {
        i -= 1;
    }
    i
}

/// [`ExpHistogram::count_le`] over observations given as (midpoint, count), ascending.
pub fn count_le_of(observations: impl Iterator<Item = (Midpoint, i64)>, x: f64) -> i64 {
    if x.is_nan() {
        return 0;
    }
    // Positive buckets are compared by index with the last one whose midpoint is ≤ x, found
    // once per scale.
    let mut cut: Option<(i32, i64)> = None;
    let mut le = |m: Midpoint| {
        if m.sign <= 0 {
            return m.value() <= x;
        }
        let i = match cut {
            Some((scale, i)) if scale == m.scale => i,
            _ => {
                let i = last_index_at_most(x, m.scale);
                cut = Some((m.scale, i));
                i
            }
        };
        i64::from(m.index) <= i
    };
    observations
        .take_while(|(m, _)| le(*m))
        .fold(0i64, |n, (_, c)| n.saturating_add(c))
}

impl ExpHistogram {
    /// A histogram from its parts; `None` when they do not make one.
    pub fn new(
        scale: i32,
        zero_count: i64,
        zero_threshold: f64,
        positive: Buckets,
        negative: Buckets,
    ) -> Option<Self> {
        // Every bucket must lie within the range of doubles (|log2| < 1100): beyond it an
        // index means nothing, and bounding it bounds what merges allocate.
        let in_range = |side: &Buckets| {
            let last = i64::from(side.offset) + side.counts.len() as i64;
            [i64::from(side.offset), last]
                .iter()
                .all(|i| (*i as f64 * (-f64::from(scale)).exp2()).abs() < 1100.0)
        };
        let valid = (MIN_SCALE..=MAX_SCALE).contains(&scale)
            && in_range(&positive)
            && in_range(&negative)
            && zero_count >= 0
            && zero_threshold >= 0.0
            && positive
                .counts
                .iter()
                .chain(&negative.counts)
                .all(|c| *c >= 0);
        valid.then_some(Self {
            scale,
            zero_count,
            zero_threshold,
            positive,
            negative,
        })
    }

    pub fn count(&self) -> i64 {
        self.zero_count
            .saturating_add(self.positive.total())
            .saturating_add(self.negative.total())
    }

    fn downscale(&self, to: i32) -> ExpHistogram {
        let by = (self.scale - to).max(0) as u32;
        ExpHistogram {
            scale: self.scale.min(to),
            zero_count: self.zero_count,
            zero_threshold: self.zero_threshold,
            positive: self.positive.downscale(by),
            negative: self.negative.downscale(by),
        }
    }

    /// Moves the buckets whose magnitudes all lie within `threshold` into the zero bucket.
    fn widen_zero(&mut self, threshold: f64) {
        self.zero_threshold = self.zero_threshold.max(threshold);
        for side in [&mut self.positive, &mut self.negative] {
            let mut moved = 0;
            for (k, c) in side.counts.iter_mut().enumerate() {
                let upper = boundary(f64::from(side.offset + k as i32 + 1), self.scale);
                if upper > self.zero_threshold {
                    break;
                }
                moved = std::mem::take(c).saturating_add(moved);
            }
            self.zero_count = self.zero_count.saturating_add(moved);
        }
    }

    /// The scale at which `self` and `other` can be added.
    fn common_scale(&self, other: &ExpHistogram) -> i32 {
        let mut scale = self.scale.min(other.scale);
        while scale > MIN_SCALE {
            let fits = [
                (&self.positive, &other.positive),
                (&self.negative, &other.negative),
            ]
            .into_iter()
            .all(|(a, b)| {
                let by_a = (self.scale - scale) as u32;
                let by_b = (other.scale - scale) as u32;
                let indexes: Vec<i32> =
                    [a.extent().map(|e| (e, by_a)), b.extent().map(|e| (e, by_b))]
                        .into_iter()
                        .flatten()
                        .flat_map(|((first, last), by)| [first >> by, last >> by])
                        .collect();
                match (indexes.iter().min(), indexes.iter().max()) {
                    (Some(lo), Some(hi)) => ((hi - lo) as usize) < MAX_BUCKETS,
                    _ => true,
                }
            });
            if fits {
                break;
            }
            scale -= 1;
        }
        scale
    }

    /// `self + sign * other` at their common scale and zero threshold.
    fn combine(&self, other: &ExpHistogram, sign: i64) -> ExpHistogram {
        let scale = self.common_scale(other);
        let threshold = self.zero_threshold.max(other.zero_threshold);
        let mut a = self.downscale(scale);
        let mut b = other.downscale(scale);
        a.widen_zero(threshold);
        b.widen_zero(threshold);
        ExpHistogram {
            scale,
            zero_count: a.zero_count.saturating_add(sign * b.zero_count),
            zero_threshold: threshold,
            positive: a.positive.combine(&b.positive, sign),
            negative: a.negative.combine(&b.negative, sign),
        }
    }

    /// The sum of two histograms.
    pub fn merge(&self, other: &ExpHistogram) -> ExpHistogram {
        self.combine(other, 1)
    }

    /// The increase of a cumulative histogram since `previous`, or `self` after a reset.
    pub fn increase_since(&self, previous: Option<&ExpHistogram>) -> ExpHistogram {
        let Some(previous) = previous else {
            return self.clone();
        };
        let delta = self.combine(previous, -1);
        let went_down = delta.zero_count < 0
            || delta
                .positive
                .counts
                .iter()
                .chain(&delta.negative.counts)
                .any(|c| *c < 0);
        if went_down { self.clone() } else { delta }
    }

    /// Every observation as the log-midpoint of its bucket (0 in the zero bucket), with its
    /// count, from the most negative up.
    fn representatives(&self) -> impl Iterator<Item = (Midpoint, i64)> + '_ {
        let scale = self.scale;
        let negative = self.negative.counts.iter().enumerate().rev();
        let positive = self.positive.counts.iter().enumerate();
        negative
            .map(move |(k, c)| {
                let index = self.negative.offset + k as i32;
                (Midpoint::negative(index, scale), *c)
            })
            .chain(std::iter::once((Midpoint::ZERO, self.zero_count)))
            .chain(positive.map(move |(k, c)| {
                (
                    Midpoint::positive(self.positive.offset + k as i32, scale),
                    *c,
                )
            }))
            .filter(|(_, c)| *c > 0)
    }

    /// The φ-percentile as PostgreSQL's `percentile_cont` computes it (ranks φ·(n−1),
    /// interpolated linearly), each observation taken as the log-midpoint of its bucket: within
    /// 2^(2^-(scale+1)) − 1 of the exact value (0.54 % at scale 6). `None` when empty or φ is
    /// outside [0, 1].
    pub fn percentile(&self, phi: f64) -> Option<f64> {
        percentile_of(self.representatives(), self.count(), phi)
    }

    /// How many observations are at most `x`, each taken as the log-midpoint of its bucket.
    pub fn count_le(&self, x: f64) -> i64 {
        count_le_of(self.representatives(), x)
    }

    /// The φ-quantile; `None` for an empty histogram or φ = NaN.
    pub fn quantile(&self, phi: f64) -> Option<f64> {
        let total = self.count();
        if phi.is_nan() || total == 0 {
            return None;
        }
        if phi < 0.0 {
            return Some(f64::NEG_INFINITY);
        }
        if phi > 1.0 {
            return Some(f64::INFINITY);
        }
        let rank = phi * total as f64;
        let mut below = 0i64;
        // From the most negative value up: negative buckets by falling magnitude, the zero
        // bucket, positive buckets by rising magnitude.
        let negative = self.negative.counts.iter().enumerate().rev();
        for (k, &count) in negative {
            if count > 0 && below.saturating_add(count) as f64 >= rank {
                let index = f64::from(self.negative.offset + k as i32);
                let fraction = (rank - below as f64) / count as f64;
                // From -base^(index+1) towards -base^index.
                return Some(-boundary(index + 1.0 - fraction, self.scale));
            }
            below = below.saturating_add(count);
        }
        if self.zero_count > 0 && below.saturating_add(self.zero_count) as f64 >= rank {
            let lower = if self.negative.total() > 0 {
                -self.zero_threshold
            } else {
                0.0
            };
            let upper = if self.positive.total() > 0 || self.negative.total() == 0 {
                self.zero_threshold
            } else {
                0.0
            };
            let fraction = (rank - below as f64) / self.zero_count as f64;
            return Some(lower + (upper - lower) * fraction);
        }
        below = below.saturating_add(self.zero_count);
        let mut last = None;
        for (k, &count) in self.positive.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let index = f64::from(self.positive.offset + k as i32);
            if below.saturating_add(count) as f64 >= rank {
                let fraction = (rank - below as f64) / count as f64;
                return Some(boundary(index + fraction, self.scale));
            }
            below = below.saturating_add(count);
            last = Some(index + 1.0);
        }
        // Rounding left the rank past the last bucket: its upper boundary.
        last.map(|index| boundary(index, self.scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The histogram of `values` at `scale`, bucketed as the OpenTelemetry SDKs do.
    fn record(values: &[f64], scale: i32) -> ExpHistogram {
        let mut h = ExpHistogram::new(scale, 0, 0.0, Buckets::default(), Buckets::default())
            .expect("valid scale");
        for v in values {
            if *v == 0.0 {
                h.zero_count += 1;
                continue;
            }
            // The index whose bucket (base^i, base^(i+1)] holds |v|.
            let index = (v.abs().log2() * f64::from(scale).exp2()).ceil() as i32 - 1;
            let side = if *v > 0.0 {
                &mut h.positive
            } else {
                &mut h.negative
            };
            let one = Buckets {
                offset: index,
                counts: vec![1],
            };
            *side = side.combine(&one, 1);
        }
        h
    }

    #[test]
    fn quantiles_follow_prometheus_native_histogram_rules() {
        // Scale 0: bucket i is (2^i, 2^(i+1)]. 4 in (1, 2], 4 in (2, 4].
        let h = ExpHistogram::new(
            0,
            0,
            0.0,
            Buckets {
                offset: 0,
                counts: vec![4, 4],
            },
            Buckets::default(),
        )
        .expect("valid");
        // Rank 4 ends bucket 0: its upper boundary. Rank 6: half-way into (2, 4], log-linear.
        assert_eq!(h.quantile(0.5), Some(2.0));
        assert!((h.quantile(0.75).expect("q") - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(h.quantile(1.0), Some(4.0));
        assert_eq!(h.quantile(f64::NAN), None);
        // Negative buckets and the zero bucket: -4..-2 (2), zero (2, threshold 0.5), 1..2 (2).
        let h = ExpHistogram::new(
            0,
            2,
            0.5,
            Buckets {
                offset: 0,
                counts: vec![2],
            },
            Buckets {
                offset: 1,
                counts: vec![2],
            },
        )
        .expect("valid");
        assert_eq!(h.quantile(0.0), Some(-4.0));
        assert!((h.quantile(1.0 / 6.0).expect("q") + 2.0 * 2f64.sqrt()).abs() < 1e-12);
        // Rank 3 is half-way through the zero bucket, which spans [-0.5, 0.5].
        assert_eq!(h.quantile(0.5), Some(0.0));
        let empty = ExpHistogram::new(0, 0, 0.0, Buckets::default(), Buckets::default());
        assert_eq!(empty.expect("valid").quantile(0.5), None);
        assert!(ExpHistogram::new(21, 0, 0.0, Buckets::default(), Buckets::default()).is_none());
    }

    #[test]
    fn percentiles_follow_percentile_cont_over_bucket_midpoints() {
        // Scale 0: 1.5 and 3 sit in (1, 2] and (2, 4], represented by 2^0.5 and 2^1.5.
        let h = record(&[1.5, 3.0, 3.0, 0.0], 0);
        let (lo, hi) = (2f64.sqrt(), 2f64.powf(1.5));
        // Sorted: 0, lo, hi, hi; rank φ(n-1) interpolated linearly.
        assert_eq!(h.percentile(0.0), Some(0.0));
        assert_eq!(h.percentile(1.0 / 3.0), Some(lo));
        assert!((h.percentile(0.5).unwrap() - (lo + hi) / 2.0).abs() < 1e-12);
        assert_eq!(h.percentile(1.0), Some(hi));
        assert_eq!(h.percentile(1.5), None);
        assert_eq!(record(&[], 0).percentile(0.5), None);
        // Counted at their midpoints: 1.5 (~1.41) is at most 1.45, the 3s are not.
        assert_eq!(h.count_le(1.45), 2);
        assert_eq!(h.count_le(1.4), 1);
        assert_eq!(h.count_le(100.0), 4);
        assert_eq!(h.count_le(-1.0), 0);
    }

    #[test]
    fn merging_scales_downscales_the_finer_side() {
        // Scale 1 buckets 2 and 3 are (2, 2^1.5] and (2^1.5, 4]: bucket 1 at scale 0.
        let fine = record(&[2.5, 3.5], 1);
        let coarse = record(&[3.0], 0);
        let merged = fine.merge(&coarse);
        assert_eq!(merged.scale, 0);
        assert_eq!(
            merged.positive,
            Buckets {
                offset: 1,
                counts: vec![3]
            }
        );
        // A wider zero threshold absorbs the buckets inside it.
        let mut wide = record(&[], 0);
        wide.zero_threshold = 2.0;
        let merged = record(&[1.5, 3.0], 0).merge(&wide);
        assert_eq!(merged.zero_count, 1);
        assert_eq!(merged.positive.total(), 1);
    }

    #[test]
    fn hostile_input_is_refused_or_saturates_never_panics() {
        let side = |offset, counts: Vec<i64>| Buckets { offset, counts };
        // Buckets beyond the range of doubles are not a histogram.
        assert!(ExpHistogram::new(0, 0, 0.0, side(i32::MAX, vec![1]), side(0, vec![])).is_none());
        assert!(ExpHistogram::new(-10, 0, 0.0, side(0, vec![]), side(i32::MIN, vec![1])).is_none());
        // Counts that overflow saturate.
        let big = ExpHistogram::new(0, i64::MAX, 0.0, side(-3, vec![i64::MAX]), side(0, vec![]))
            .expect("valid");
        let merged = big.merge(&big);
        assert_eq!(merged.count(), i64::MAX);
        assert!(merged.quantile(0.99).is_some());
        // Far-apart buckets merge into a bounded number of buckets.
        let low = ExpHistogram::new(20, 0, 0.0, side(-1_000_000_000, vec![1]), side(0, vec![]));
        let high = ExpHistogram::new(20, 0, 0.0, side(1_000_000_000, vec![1]), side(0, vec![]));
        let merged = low.expect("valid").merge(&high.expect("valid"));
        assert!(merged.positive.counts.len() <= MAX_BUCKETS, "{merged:?}");
        assert_eq!(merged.count(), 2);
    }

    #[test]
    fn increases_and_resets() {
        let before = record(&[1.5, 3.0], 1);
        let after = record(&[1.5, 3.0, 3.0, -5.0], 1);
        let delta = after.increase_since(Some(&before));
        assert_eq!(delta.count(), 2);
        assert_eq!(delta.quantile(1.0), record(&[3.0], 1).quantile(1.0));
        // Fewer observations than before: the counter restarted.
        assert_eq!(before.increase_since(Some(&after)), before);
    }

    proptest! {
        /// At scale 6 every percentile is within 2^(1/128) - 1 (0.54 %) of the exact
        /// percentile_cont of the values.
        #[test]
        fn scale_6_percentiles_are_within_0_54_percent(
            values in prop::collection::vec((0.0f64..30.0).prop_map(f64::exp2), 1..300),
            phi in 0.0f64..=1.0,
        ) {
            let h = record(&values, 6);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = phi * (sorted.len() - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            let exact = sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64);
            let estimate = h.percentile(phi).expect("not empty");
            prop_assert!((estimate / exact - 1.0).abs() <= 2f64.powf(1.0 / 128.0) - 1.0 + 1e-9,
                "estimate {} exact {}", estimate, exact);
        }

        /// Counting by bucket index answers what comparing every bucket's midpoint with x
        /// would, at midpoints exactly, between them and beyond the ends, at any scale.
        #[test]
        fn count_le_by_index_equals_count_le_by_value(
            values in prop::collection::vec((-20.0f64..20.0).prop_map(f64::exp2), 1..200),
            negative in prop::collection::vec((-20.0f64..20.0).prop_map(|v| -v.exp2()), 0..20),
            scale in -3i32..9,
            pick in 0usize..400,
            nudge in prop::sample::select(vec![-1e-12, 0.0, 1e-12]),
            x in -30.0f64..30.0,
        ) {
            let mut all = values.clone();
            all.extend(&negative);
            let h = record(&all, scale);
            let mids: Vec<(f64, i64)> =
                h.representatives().map(|(m, c)| (m.value(), c)).collect();
            let by_value = |x: f64| mids.iter().filter(|(v, _)| *v <= x).map(|(_, c)| c).sum::<i64>();
            let at_midpoint = mids[pick % mids.len()].0 * (1.0 + nudge);
            for x in [at_midpoint, x.exp2(), -x.exp2(), 0.0, f64::INFINITY, f64::NEG_INFINITY] {
                prop_assert_eq!(h.count_le(x), by_value(x), "x {}", x);
            }
        }

        /// Merging histograms of different scales keeps every observation and answers each
        /// quantile within one bucket of the exact value at the merged scale.
        #[test]
        fn merged_quantiles_stay_within_a_bucket(
            a in prop::collection::vec((-20.0f64..20.0).prop_map(f64::exp2), 1..200),
            b in prop::collection::vec((-20.0f64..20.0).prop_map(f64::exp2), 1..200),
            scale_a in -2i32..8,
            scale_b in -2i32..8,
            phi in 0.0f64..1.0,
        ) {
            let merged = record(&a, scale_a).merge(&record(&b, scale_b));
            let reversed = record(&b, scale_b).merge(&record(&a, scale_a));
            prop_assert_eq!(&merged, &reversed);
            let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
            all.sort_by(f64::total_cmp);
            prop_assert_eq!(merged.count(), all.len() as i64);
            // The exact φ-quantile is the observation of rank ceil(φ n).
            let rank = ((phi * all.len() as f64).ceil() as usize).clamp(1, all.len());
            let exact = all[rank - 1];
            let estimate = merged.quantile(phi).expect("not empty");
            let base = f64::from(-merged.scale).exp2().exp2();
            prop_assert!(estimate <= exact * base * (1.0 + 1e-9) && estimate >= exact / base / (1.0 + 1e-9),
                "estimate {} exact {} scale {}", estimate, exact, merged.scale);
        }
    }
}
