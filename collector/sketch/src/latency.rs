//! The latency sketch of the span rollups: an exponential histogram at the one fixed scale
//! [`SKETCH_SCALE`] (the bucket layout of OTLP exponential histograms), held sparsely as
//! (bucket index, count) pairs in ascending index order. A minute of one endpoint holds a few
//! spans spread over a wide range, where the dense OTLP layout would store mostly zeros. The
//! log-midpoint of a bucket is within 2^(2^-7) - 1 ≈ 0.54 % of every value in it.

/// Scale of the latency sketches: 64 buckets per doubling.
pub const SKETCH_SCALE: i32 = 6;

/// The sketch bucket of a positive duration: bucket `i` holds (2^(i/64), 2^((i+1)/64)].
#[inline]
pub fn bucket_index(duration_ns: i64) -> i32 {
    let per_doubling = f64::from(1 << SKETCH_SCALE);
    ((duration_ns as f64).log2() * per_doubling).ceil() as i32 - 1
}

/// Adds `count` to bucket `index` of a sparse sketch held as (index, count) ascending. Rows list
/// their buckets in order, so most additions land at or past the end.
#[inline]
pub fn add_to_bucket(buckets: &mut Vec<(i32, i64)>, index: i32, count: i64) {
    let at = match buckets.last() {
        Some((last, _)) if *last < index => Err(buckets.len()),
        _ => buckets.binary_search_by_key(&index, |b| b.0),
    };
    match at {
        Ok(k) => buckets[k].1 = buckets[k].1.saturating_add(count),
        Err(k) => buckets.insert(k, (index, count)),
    }
}

/// Adds a whole sketch, `incoming` (bucket index, count) strictly ascending, to `buckets`
/// (ascending too). A few buckets (a row of a minute's few requests) are added one at a time, in
/// place; more in one linear merge: a bucket at a time, merging two sketches of a few hundred
/// buckets each would search and shift for every one.
pub fn merge_buckets(
    buckets: &mut Vec<(i32, i64)>,
    incoming: impl ExactSizeIterator<Item = (i32, i64)>,
) {
    if buckets.is_empty() {
        buckets.extend(incoming);
        return;
    }
    if incoming.len() <= 16 {
        for (index, count) in incoming {
            add_to_bucket(buckets, index, count);
        }
        return;
    }
    let mut out = Vec::with_capacity(buckets.len() + incoming.len());
    let mut old = buckets.iter().copied().peekable();
    for (index, count) in incoming {
        while let Some(before) = old.next_if(|(i, _)| *i < index) {
            out.push(before);
        }
        match old.next_if(|(i, _)| *i == index) {
            Some((i, c)) => out.push((i, c.saturating_add(count))),
            None => out.push((index, count)),
        }
    }
    out.extend(old);
    *buckets = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Merging a sketch whole gives what adding its buckets one at a time gives.
        #[test]
        fn merging_a_sketch_is_adding_its_buckets(
            a in proptest::collection::btree_map(-50i32..50, 1i64..1000, 0..40),
            b in proptest::collection::btree_map(-50i32..50, 1i64..1000, 0..40),
        ) {
            let mut one_by_one: Vec<(i32, i64)> = a.clone().into_iter().collect();
            for (i, c) in &b {
                add_to_bucket(&mut one_by_one, *i, *c);
            }
            let mut merged: Vec<(i32, i64)> = a.into_iter().collect();
            merge_buckets(&mut merged, b.into_iter().collect::<Vec<_>>().into_iter());
            proptest::prop_assert_eq!(merged, one_by_one);
        }
    }
    #[test]
    fn bucket_boundaries_follow_the_exponential_histogram_layout() {
        // 2^10 ns is the upper bound of bucket 639 (inclusive); one more starts bucket 640.
        assert_eq!(bucket_index(1024), 639);
        assert_eq!(bucket_index(1025), 640);
        assert_eq!(bucket_index(1), -1);
        assert_eq!(bucket_index(2), 63);
        // Every value is within 0.54 % of its bucket's log-midpoint.
        for v in [3_i64, 999, 1_234_567, 987_654_321_000] {
            let i = bucket_index(v);
            let mid = 2f64.powf((f64::from(i) + 0.5) / 64.0);
            assert!((mid / v as f64 - 1.0).abs() < 0.0055, "{v}: {mid}");
        }
    }
}
