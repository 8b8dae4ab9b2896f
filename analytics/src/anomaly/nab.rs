//! The Numenta Anomaly Benchmark: its corpus, and its scoring, written out from the rules.
//!
//! NAB ships a Python scorer; Headroom's detector is Rust and must be measured in CI without a
//! Python tool chain, so the scoring is reimplemented here, rule for rule:
//! - the first 15 % of each file (at most 750 rows) is probationary and never scored;
//! - a detection is a row whose anomaly score is at least the threshold;
//! - in a labelled window, the earliest detection scores `tp × σ(position)/σ(−1)`, where the
//!   position runs from −1 at the window's first row to 0 just past its last, and
//!   σ(x) = 2/(1+e^{5x}) − 1; later detections in the same window add nothing;
//! - an undetected window scores `−fn`;
//! - a detection outside every window scores `fp × σ(d)`, d being its distance past the end of
//!   the preceding window in that window's widths (−fp before the first window, or from 3
//!   widths on);
//! - one threshold per detector and profile, the one that maximises the corpus's summed raw
//!   score;
//! - the reported score is `100 × (raw − null) / (perfect − null)`: `null` is the same
//!   procedure on a detector that never tells one row from another, `perfect` is `tp` per
//!   window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One of NAB's application profiles: the weights of true positives, false positives and
/// false negatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// The three profiles of NAB's `config/profiles.json`.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

const PROBATION_FRACTION: f64 = 0.15;

#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("labels {path}: {message}")]
    Labels { path: PathBuf, message: String },
}

/// One labelled series of the corpus.
#[derive(Debug, Clone)]
pub struct NabFile {
    /// Path relative to the corpus's `data/` directory, e.g. `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    /// Timestamps as written in the file (`YYYY-MM-DD HH:MM:SS`).
    pub timestamps: Vec<String>,
    /// Seconds since the Unix epoch, parsed from `timestamps`.
    pub epoch_seconds: Vec<i64>,
    pub values: Vec<f64>,
    /// Labelled windows as inclusive row ranges, in order.
    pub windows: Vec<(usize, usize)>,
}

impl NabFile {
    /// Rows never scored: `min(floor(0.15 n), 0.15 × 5000)`.
    pub fn probation_rows(&self) -> usize {
        let n = self.values.len() as f64;
        (PROBATION_FRACTION * n)
            .floor()
            .min(PROBATION_FRACTION * 5000.0) as usize
    }
}

/// Reads every `data/<category>/<file>.csv` of a NAB checkout and its
/// `labels/combined_windows.json`.
pub fn load_corpus(root: &Path) -> Result<Vec<NabFile>, NabError> {
    let labels_path = root.join("labels").join("combined_windows.json");
    let text = read(&labels_path)?;
    let labels: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).map_err(|e| NabError::Labels {
            path: labels_path.clone(),
            message: e.to_string(),
        })?;
    let mut files = Vec::with_capacity(labels.len());
    for (name, windows) in labels {
        let path = root.join("data").join(&name);
        let mut file = parse_csv(&path, &name)?;
        for (start, end) in windows {
            let (start, end) = (trim_ts(&start), trim_ts(&end));
            let first = file.timestamps.iter().position(|t| t.as_str() >= start);
            let last = file.timestamps.iter().rposition(|t| t.as_str() <= end);
            match (first, last) {
                (Some(a), Some(b)) if a <= b => file.windows.push((a, b)),
                _ => {
                    return Err(NabError::Labels {
                        path: labels_path,
                        message: format!("window {start}..{end} of {name} holds no row"),
                    });
                }
            }
        }
        files.push(file);
    }
    if files.is_empty() {
        return Err(NabError::Labels {
            path: labels_path,
            message: "no files listed".into(),
        });
    }
    Ok(files)
}

fn read(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Label timestamps carry microseconds (`2014-02-19 10:50:00.000000`), data rows do not.
fn trim_ts(ts: &str) -> &str {
    ts.get(..19).unwrap_or(ts)
}

fn parse_csv(path: &Path, name: &str) -> Result<NabFile, NabError> {
    let text = read(path)?;
    let err = |line: usize, message: String| NabError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut file = NabFile {
        name: name.to_string(),
        timestamps: Vec::new(),
        epoch_seconds: Vec::new(),
        values: Vec::new(),
        windows: Vec::new(),
    };
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (ts, value) = line
            .split_once(',')
            .ok_or_else(|| err(i + 1, "expected `timestamp,value`".into()))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|e| err(i + 1, format!("value {value:?}: {e}")))?;
        let ts = trim_ts(ts.trim());
        let parsed = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")
            .map_err(|e| err(i + 1, format!("timestamp {ts:?}: {e}")))?;
        file.timestamps.push(ts.to_string());
        file.epoch_seconds.push(parsed.and_utc().timestamp());
        file.values.push(value);
    }
    Ok(file)
}

/// Runs a fresh [`Detector`](super::Detector) over each file, returning one score per row.
pub fn detect(files: &[NabFile]) -> Vec<Vec<f64>> {
    files
        .iter()
        .map(|f| {
            let mut d = super::Detector::new();
            f.epoch_seconds
                .iter()
                .zip(&f.values)
                .map(|(t, v)| d.update(*t, *v).score)
                .collect()
        })
        .collect()
}

/// Writes results in NAB's layout, `<dir>/<detector>/<category>/<detector>_<file>.csv` with
/// `timestamp,value,anomaly_score,label`, so NAB's own scorer can read them too.
pub fn write_results(
    dir: &Path,
    detector: &str,
    files: &[NabFile],
    scores: &[Vec<f64>],
) -> Result<(), NabError> {
    use std::fmt::Write as _;
    for (file, scores) in files.iter().zip(scores) {
        let (category, name) = file.name.rsplit_once('/').unwrap_or(("", &file.name));
        let path = dir
            .join(detector)
            .join(category)
            .join(format!("{detector}_{name}"));
        let mut out = String::from("timestamp,value,anomaly_score,label\n");
        let mut windows = file.windows.iter().peekable();
        for (i, ((ts, value), score)) in file
            .timestamps
            .iter()
            .zip(&file.values)
            .zip(scores)
            .enumerate()
        {
            while windows.peek().is_some_and(|(_, end)| *end < i) {
                windows.next();
            }
            let label = windows.peek().is_some_and(|(start, _)| *start <= i);
            let _ = writeln!(out, "{ts},{value},{score},{}", u8::from(label));
        }
        let io = |source| NabError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, out).map_err(io)?;
    }
    Ok(())
}

/// A scorable row: its anomaly score, what detecting it is worth, and which window it is in.
#[derive(Debug, Clone, Copy)]
struct SweepPoint {
    anomaly_score: f64,
    sweep_score: f64,
    /// Corpus-wide window number, or `None` outside every window.
    window: Option<usize>,
}

/// The scaled sigmoid of NAB: 0.987 at −1 (a window's start), 0 at 0, −1 from 3 on.
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0
    }
}

/// What detecting each scorable row of `file` would be worth under `profile`.
fn sweep(
    file: &NabFile,
    scores: &[f64],
    profile: &Profile,
    window_base: usize,
    out: &mut Vec<SweepPoint>,
) {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = file.probation_rows();
    let mut windows = file.windows.iter().enumerate().peekable();
    let mut current: Option<(usize, usize, f64)> = None; // (window number, right index, width)
    let mut previous: Option<(usize, f64)> = None; // (right index, width)
    for (i, &anomaly_score) in scores.iter().enumerate() {
        if let Some(&(k, &(start, end))) = windows.peek()
            && start == i
        {
            current = Some((window_base + k, end, (end - start + 1) as f64));
            windows.next();
        }
        let (sweep_score, window) = match current {
            Some((k, right, width)) => {
                let position = -((right - i + 1) as f64) / width;
                (scaled_sigmoid(position) * profile.tp / max_tp, Some(k))
            }
            None => {
                let position = match previous {
                    None => 3.0,
                    Some((right, width)) => (i - right) as f64 / (width - 1.0).max(1.0),
                };
                (scaled_sigmoid(position) * profile.fp, None)
            }
        };
        if i >= probation {
            out.push(SweepPoint {
                anomaly_score,
                sweep_score,
                window,
            });
        }
        if let Some((_, right, width)) = current
            && right == i
        {
            previous = Some((right, width));
            current = None;
        }
    }
}

/// The corpus's raw score at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdScore {
    pub threshold: f64,
    pub score: f64,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

/// Raw score of `files` (with one score per row in `scores`) at every distinct threshold,
/// highest threshold first; the first entry (threshold 1.1) detects nothing.
pub fn score_by_threshold(
    files: &[NabFile],
    scores: &[Vec<f64>],
    profile: &Profile,
) -> Vec<ThresholdScore> {
    let mut points = Vec::new();
    let mut windows = 0;
    for (file, scores) in files.iter().zip(scores) {
        sweep(file, scores, profile, windows, &mut points);
        windows += file.windows.len();
    }
    points.sort_by(|a, b| b.anomaly_score.total_cmp(&a.anomaly_score));
    let mut tally = Tally {
        window_part: vec![-profile.fn_; windows],
        detected: vec![false; windows],
        fp_part: 0.0,
        tp: 0,
        fp: 0,
    };
    let mut out = Vec::new();
    let mut threshold = 1.1;
    for point in &points {
        if point.anomaly_score != threshold {
            out.push(tally.at(threshold));
            threshold = point.anomaly_score;
        }
        match point.window {
            Some(k) => {
                tally.tp += 1;
                tally.detected[k] = true;
                tally.window_part[k] = tally.window_part[k].max(point.sweep_score);
            }
            None => {
                tally.fp += 1;
                tally.fp_part += point.sweep_score;
            }
        }
    }
    out.push(tally.at(threshold));
    out
}

/// The running score of a threshold sweep.
struct Tally {
    /// A window's part is −fn until detected, then the best sweep score among its detections.
    window_part: Vec<f64>,
    detected: Vec<bool>,
    fp_part: f64,
    tp: usize,
    fp: usize,
}

impl Tally {
    fn at(&self, threshold: f64) -> ThresholdScore {
        ThresholdScore {
            threshold,
            score: self.window_part.iter().sum::<f64>() + self.fp_part,
            tp: self.tp,
            fp: self.fp,
            fn_: self.detected.iter().filter(|d| !**d).count(),
        }
    }
}

/// The threshold with the best raw score (the highest such threshold on a tie).
pub fn best_threshold(by_threshold: &[ThresholdScore]) -> ThresholdScore {
    let mut best = by_threshold[0];
    for s in &by_threshold[1..] {
        if s.score > best.score {
            best = *s;
        }
    }
    best
}

/// One profile's result for a detector over the corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileResult {
    pub profile: Profile,
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    /// `100 × (raw − null) / (perfect − null)`.
    pub normalized: f64,
    /// Row counts at the threshold: detected rows inside and outside windows, windows missed.
    pub tp_rows: usize,
    pub fp_rows: usize,
    pub windows_missed: usize,
}

/// Scores a detector's output (one score in [0, 1] per row of each file) under `profile`.
pub fn evaluate(files: &[NabFile], scores: &[Vec<f64>], profile: &Profile) -> ProfileResult {
    let best = best_threshold(&score_by_threshold(files, scores, profile));
    let constant: Vec<Vec<f64>> = files.iter().map(|f| vec![0.5; f.values.len()]).collect();
    let null = best_threshold(&score_by_threshold(files, &constant, profile)).score;
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    let perfect = windows as f64 * profile.tp;
    ProfileResult {
        profile: *profile,
        threshold: best.threshold,
        raw: best.score,
        null,
        perfect,
        normalized: 100.0 * (best.score - null) / (perfect - null),
        tp_rows: best.tp,
        fp_rows: best.fp,
        windows_missed: best.fn_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize, windows: Vec<(usize, usize)>) -> NabFile {
        NabFile {
            name: "t/x.csv".into(),
            timestamps: (0..n).map(|i| format!("{i:05}")).collect(),
            epoch_seconds: (0..n as i64).collect(),
            values: vec![0.0; n],
            windows,
        }
    }

    const STANDARD: Profile = PROFILES[0];

    #[test]
    fn scaled_sigmoid_matches_the_documented_points() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750_rows() {
        assert_eq!(file(1000, vec![]).probation_rows(), 150);
        assert_eq!(file(4032, vec![]).probation_rows(), 604);
        assert_eq!(file(10320, vec![]).probation_rows(), 750);
    }

    #[test]
    fn one_early_detection_scores_one_and_a_late_one_less() {
        // 100 rows, probation 15, one window of 10 rows at 50..=59.
        let f = file(100, vec![(50, 59)]);
        let mut s = vec![0.0; 100];
        s[50] = 1.0;
        let r = evaluate(std::slice::from_ref(&f), &[s.clone()], &STANDARD);
        assert!((r.raw - 1.0).abs() < 1e-12, "{r:?}");
        assert_eq!(r.null, -1.0);
        assert_eq!(r.normalized, 100.0);
        // Detected at its 6th row: position −(59−55+1)/10 = −0.5.
        s[50] = 0.0;
        s[55] = 1.0;
        let r = evaluate(std::slice::from_ref(&f), &[s], &STANDARD);
        let expected = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0);
        assert!((r.raw - expected).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn false_positives_cost_by_distance_from_the_preceding_window() {
        let f = file(200, vec![(50, 59)]);
        let mut s = vec![0.0; 200];
        s[50] = 1.0;
        s[30] = 1.0; // before any window: −0.11
        s[64] = 1.0; // 5 rows past a 10-row window: σ(5/9) × 0.11
        s[150] = 1.0; // far past it: −0.11
        s[5] = 1.0; // probationary: not scored
        let r = evaluate(std::slice::from_ref(&f), &[s], &STANDARD);
        let expected = 1.0 - 0.11 + scaled_sigmoid(5.0 / 9.0) * 0.11 - 0.11;
        assert!((r.raw - expected).abs() < 1e-12, "{r:?}");
        assert_eq!((r.tp_rows, r.fp_rows, r.windows_missed), (1, 3, 0));
    }

    #[test]
    fn the_threshold_is_chosen_to_maximise_the_score() {
        // Window rows score 0.6; a false positive scores 0.8. Detecting the window is worth
        // the false positive: the best threshold is 0.6.
        let f = file(100, vec![(50, 59), (80, 89)]);
        let mut s = vec![0.1; 100];
        s[50] = 0.6;
        s[40] = 0.8;
        let by = score_by_threshold(std::slice::from_ref(&f), &[s.clone()], &STANDARD);
        assert_eq!(by[0].threshold, 1.1);
        assert_eq!(by[0].score, -2.0);
        let best = best_threshold(&by);
        assert_eq!(best.threshold, 0.6);
        assert!((best.score - (1.0 - 0.11 - 1.0)).abs() < 1e-12);
        // The low-FN profile weighs the missed second window twice.
        let r = evaluate(std::slice::from_ref(&f), &[s], &PROFILES[2]);
        assert!((r.raw - (1.0 - 0.11 - 2.0)).abs() < 1e-12);
        assert_eq!(r.null, -4.0);
    }

    #[test]
    fn null_detector_scores_zero_on_the_corpus() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nab");
        let files = load_corpus(&root).unwrap();
        assert_eq!(files.len(), 58);
        assert_eq!(files.iter().map(|f| f.windows.len()).sum::<usize>(), 116);
        let zeros: Vec<Vec<f64>> = files.iter().map(|f| vec![0.0; f.values.len()]).collect();
        for profile in &PROFILES {
            let r = evaluate(&files, &zeros, profile);
            assert_eq!(r.normalized, 0.0, "{r:?}");
        }
    }

    #[test]
    fn the_detector_keeps_its_measured_scores_and_its_results_read_back() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nab");
        let files = load_corpus(&root).unwrap();
        let scores = detect(&files);
        // Measured: 75.23 / 70.15 / 78.89 (README). The standard profile must stay at the
        // target (75); a change that loses more than a point on the others shows here.
        let floors = [75.0, 69.1, 77.9];
        for (profile, floor) in PROFILES.iter().zip(floors) {
            let r = evaluate(&files, &scores, profile);
            assert!(r.normalized >= floor, "{}: {r:?}", profile.name);
        }
        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), "headroom", &files, &scores).unwrap();
        let text = std::fs::read_to_string(
            dir.path()
                .join("headroom/realKnownCause/headroom_nyc_taxi.csv"),
        )
        .unwrap();
        let taxi = files
            .iter()
            .position(|f| f.name == "realKnownCause/nyc_taxi.csv")
            .unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), files[taxi].values.len());
        let labelled = rows.iter().filter(|r| r.ends_with(",1")).count();
        let in_windows: usize = files[taxi].windows.iter().map(|(a, b)| b - a + 1).sum();
        assert_eq!(labelled, in_windows);
        let first: Vec<&str> = rows[0].split(',').collect();
        assert_eq!(first[0], "2014-07-01 00:00:00");
        assert_eq!(first[1].parse::<f64>().unwrap(), 10844.0);
        assert_eq!(first[2].parse::<f64>().unwrap(), scores[taxi][0]);
    }
}
