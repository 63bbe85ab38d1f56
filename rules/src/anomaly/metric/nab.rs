//! A scorer that follows the Numenta Anomaly Benchmark (NAB, scoring as of its version 1.1).
//!
//! Pure: series, labelled windows and anomaly scores come in as values, numbers come out.
//!
//! How a file is scored, for one threshold (a point is a *detection* when its score is `>= threshold`):
//!
//! * The first points of each file are a probationary period and are not scored at all:
//!   `min(floor(p × n), ceil(p × 5000))` points for a file of `n` points, `p` = 15 % ([`NabScorer::probation_length`]).
//! * Each labelled window (an inclusive range of point indices) earns the weight of its *best* detection,
//!   which is its earliest one: the weight decreases through the window. A detection at index `i` of a window
//!   `first..=last` of `w` points sits at the relative position `-(last - i + 1) / w` (−1 at the left edge,
//!   close to 0 at the right edge) and earns `A_TP × σ(position) / σ(−1)`, where
//!   `σ(x) = 2 / (1 + e^(5x)) − 1` is NAB's scaled sigmoid (−1 from `x >= 3` on). So the earliest detection
//!   earns `A_TP`, one in the middle about `0.86 × A_TP`, and later detections in the same window add nothing.
//! * A window without any detection costs `−A_FN`.
//! * Every detection outside all windows is a false positive. After a window it costs
//!   `A_FP × σ((i − last) / (w − 1))` (a negative number, from about 0 just after the window to `−A_FP` three
//!   window widths later); before the first window, or after a window of a single point, it costs `−A_FP`.
//!
//! A window is counted only if at least one of its points lies after the probationary period (NAB drops the
//! probationary points before it lists windows). The corpus score is the sum over files; it is normalised as
//! NAB does: `100 × (raw − null) / (perfect − null)` where `perfect = A_TP × (number of windows)` and `null` is
//! the raw score of a detector that never fires (`−A_FN` per counted window). A perfect detector scores 100 and
//! one that never fires scores 0; one that fires too often goes below 0.
//!
//! One threshold holds for the whole corpus. [`NabScorer::optimize`] sweeps every distinct score of the corpus
//! (an exhaustive version of NAB's threshold optimiser) and returns the threshold with the best corpus score.

/// The weights of a NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostProfile {
    /// Weight of a window's earliest possible detection (`A_TP`).
    pub tp_weight: f64,
    /// Weight of a false positive far from any window (`A_FP`).
    pub fp_weight: f64,
    /// Cost of a window without detection (`A_FN`).
    pub fn_weight: f64,
}

impl CostProfile {
    /// NAB's standard profile: `A_TP = 1`, `A_FP = 0.11`, `A_FN = 1`.
    pub const STANDARD: CostProfile = CostProfile { tp_weight: 1.0, fp_weight: 0.11, fn_weight: 1.0 };
}

impl Default for CostProfile {
    fn default() -> Self {
        CostProfile::STANDARD
    }
}

/// A labelled anomaly window: the inclusive range `first..=last` of point indices in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Index of the window's first point.
    pub first: usize,
    /// Index of the window's last point (inclusive).
    pub last: usize,
}

impl Window {
    /// The window `first..=last`.
    pub fn new(first: usize, last: usize) -> Self {
        Window { first, last }
    }

    /// Number of points in the window.
    pub fn len(&self) -> usize {
        self.last.saturating_sub(self.first) + 1
    }

    /// Never true: a window holds at least one point.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the point of index `i` is inside the window.
    pub fn contains(&self, i: usize) -> bool {
        self.first <= i && i <= self.last
    }
}

/// Turns windows given by time limits (inclusive, as in NAB's label files) into windows of point indices.
///
/// A window covers the points whose timestamp `t` satisfies `start <= t <= end`; a window that covers no point
/// is dropped (it could be neither detected nor missed). Timestamps are expected in ascending order, as in NAB.
pub fn windows_by_time<T: PartialOrd>(timestamps: &[T], limits: &[(T, T)]) -> Vec<Window> {
    let mut windows: Vec<Window> = limits
        .iter()
        .filter_map(|(start, end)| {
            let mut inside =
                timestamps.iter().enumerate().filter(|(_, t)| *start <= **t && **t <= *end).map(|(i, _)| i);
            let first = inside.next()?;
            let last = inside.last().unwrap_or(first);
            Some(Window::new(first, last))
        })
        .collect();
    windows.sort();
    windows
}

/// One file to score: the anomaly score of every point and the labelled windows.
#[derive(Debug, Clone, Copy)]
pub struct ScoredFile<'a> {
    /// Name used in reports (NAB's relative path, e.g. `realAWSCloudwatch/grok_asg_anomaly.csv`).
    pub name: &'a str,
    /// One anomaly score per point, in series order. NaN never counts as a detection.
    pub scores: &'a [f64],
    /// Labelled windows, in any order; they should not overlap (a point in two windows belongs to the
    /// earlier one). Indices past the end of `scores` are clamped.
    pub windows: &'a [Window],
}

/// The outcome for one file at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FileScore {
    /// The file's name.
    pub name: String,
    /// Raw (unnormalised) NAB score of the file.
    pub raw: f64,
    /// Windows with at least one detection.
    pub true_positives: usize,
    /// Counted windows without detection.
    pub false_negatives: usize,
    /// Detections outside every window (after the probationary period).
    pub false_positives: usize,
    /// Windows that count (at least one point after the probationary period).
    pub windows: usize,
}

/// The outcome for a corpus at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusScore {
    /// The threshold: a point is a detection when its score is `>= threshold`.
    pub threshold: f64,
    /// Sum of the files' raw scores.
    pub raw: f64,
    /// Raw score of a detector that never fires.
    pub null: f64,
    /// Raw score of a perfect detector (`A_TP` per window).
    pub perfect: f64,
    /// NAB's normalised score: 100 for a perfect detector, 0 for one that never fires. 0 for a corpus without
    /// windows, where there is nothing to normalise against.
    pub normalized: f64,
    /// One entry per file, in input order.
    pub files: Vec<FileScore>,
}

/// NAB's scorer: a cost profile and a probationary fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NabScorer {
    /// The weights (default: [`CostProfile::STANDARD`]).
    pub profile: CostProfile,
    /// Fraction of each file (capped at this fraction of 5000 points) that is not scored (default 0.15).
    pub probation_percent: f64,
}

impl Default for NabScorer {
    fn default() -> Self {
        NabScorer { profile: CostProfile::STANDARD, probation_percent: 0.15 }
    }
}

/// NAB's scaled sigmoid: `2 / (1 + e^(5x)) − 1`, and −1 from `x >= 3` on.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Where a point stands for scoring.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// In the probationary period: ignored.
    Probation,
    /// Inside the window of this index (into the file's sorted windows); the value is its weight if detected.
    InWindow(usize, f64),
    /// Outside every window; the value is its (negative) weight if detected.
    Outside(f64),
}

/// A file prepared for scoring: sorted, clamped windows and the role of every point.
struct Prepared {
    roles: Vec<Role>,
    /// For each sorted window, whether it counts (has a point after the probationary period).
    counted: Vec<bool>,
}

impl NabScorer {
    /// Number of leading points of a file of `n` points that are not scored: `min(floor(p × n), ceil(p × 5000))`.
    pub fn probation_length(&self, n: usize) -> usize {
        let p = if self.probation_percent.is_finite() { self.probation_percent.clamp(0.0, 1.0) } else { 0.0 };
        let by_len = (p * n as f64).floor() as usize;
        let cap = (p * 5000.0).ceil() as usize;
        by_len.min(cap)
    }

    /// Sorts and clamps the windows and gives every point its role: probationary, in a window with the weight
    /// a detection there earns, or outside with the (negative) weight of a false positive there.
    fn prepare(&self, file: &ScoredFile<'_>) -> Prepared {
        let n = file.scores.len();
        let mut windows: Vec<Window> = file
            .windows
            .iter()
            .filter(|w| w.first <= w.last && w.first < n)
            .map(|w| Window::new(w.first, w.last.min(n.saturating_sub(1))))
            .collect();
        windows.sort();
        let probation = self.probation_length(n);
        let max_tp = scaled_sigmoid(-1.0);
        let CostProfile { tp_weight, fp_weight, .. } = self.profile;
        let mut roles = Vec::with_capacity(n);
        // `next` is the first window that has not ended before `i`; `prev` the last one that has.
        let mut next = 0usize;
        let mut prev: Option<Window> = None;
        for i in 0..n {
            while next < windows.len() && windows[next].last < i {
                prev = Some(windows[next]);
                next += 1;
            }
            let role = if i < probation {
                Role::Probation
            } else if next < windows.len() && windows[next].contains(i) {
                let w = windows[next];
                let position = -((w.last - i + 1) as f64) / w.len() as f64;
                Role::InWindow(next, scaled_sigmoid(position) * tp_weight / max_tp)
            } else {
                let unweighted = match prev {
                    Some(w) if w.len() > 1 => scaled_sigmoid((i - w.last) as f64 / (w.len() - 1) as f64),
                    _ => -1.0,
                };
                Role::Outside(unweighted * fp_weight)
            };
            roles.push(role);
        }
        let counted = windows.iter().map(|w| w.last >= probation).collect();
        Prepared { roles, counted }
    }

    fn score_prepared(&self, name: &str, scores: &[f64], prepared: &Prepared, threshold: f64) -> FileScore {
        let mut best: Vec<Option<f64>> = vec![None; prepared.counted.len()];
        let mut raw_fp = 0.0;
        let mut false_positives = 0;
        for (score, role) in scores.iter().zip(&prepared.roles) {
            let detected = *score >= threshold;
            if !detected {
                continue;
            }
            match *role {
                Role::Probation => {}
                Role::InWindow(w, weight) => {
                    best[w] = Some(best[w].map_or(weight, |b: f64| b.max(weight)));
                }
                Role::Outside(weight) => {
                    raw_fp += weight;
                    false_positives += 1;
                }
            }
        }
        let (mut raw_windows, mut true_positives, mut false_negatives, mut windows) = (0.0, 0, 0, 0);
        for (b, counted) in best.iter().zip(&prepared.counted) {
            if !counted {
                continue;
            }
            windows += 1;
            match b {
                Some(weight) => {
                    raw_windows += weight;
                    true_positives += 1;
                }
                None => {
                    raw_windows -= self.profile.fn_weight;
                    false_negatives += 1;
                }
            }
        }
        FileScore {
            name: name.to_string(),
            raw: raw_windows + raw_fp,
            true_positives,
            false_negatives,
            false_positives,
            windows,
        }
    }

    /// Scores one file at `threshold` (a point is a detection when its score is `>= threshold`).
    pub fn score_file(&self, file: &ScoredFile<'_>, threshold: f64) -> FileScore {
        let prepared = self.prepare(file);
        self.score_prepared(file.name, file.scores, &prepared, threshold)
    }

    fn totals(&self, files: &[ScoredFile<'_>], prepared: &[Prepared]) -> (f64, f64) {
        let all_windows: usize = prepared.iter().map(|p| p.counted.len()).sum();
        let counted: usize = prepared.iter().map(|p| p.counted.iter().filter(|c| **c).count()).sum();
        debug_assert_eq!(files.len(), prepared.len());
        (-self.profile.fn_weight * counted as f64, self.profile.tp_weight * all_windows as f64)
    }

    fn corpus_at(&self, files: &[ScoredFile<'_>], prepared: &[Prepared], threshold: f64) -> CorpusScore {
        let scored: Vec<FileScore> =
            files.iter().zip(prepared).map(|(f, p)| self.score_prepared(f.name, f.scores, p, threshold)).collect();
        let raw: f64 = scored.iter().map(|f| f.raw).sum();
        let (null, perfect) = self.totals(files, prepared);
        let normalized = if perfect > null { 100.0 * (raw - null) / (perfect - null) } else { 0.0 };
        CorpusScore { threshold, raw, null, perfect, normalized, files: scored }
    }

    /// Scores a corpus at one threshold and normalises the sum as NAB does.
    pub fn score(&self, files: &[ScoredFile<'_>], threshold: f64) -> CorpusScore {
        let prepared: Vec<Prepared> = files.iter().map(|f| self.prepare(f)).collect();
        self.corpus_at(files, &prepared, threshold)
    }

    /// Finds the single threshold that gives the corpus its best score, and that score.
    ///
    /// Every distinct score of a scored point is tried as a threshold, plus one above them all (the detector
    /// never fires). Among equal corpus scores the highest threshold wins. Runs in `O(N log N)` for `N` points.
    pub fn optimize(&self, files: &[ScoredFile<'_>]) -> CorpusScore {
        let prepared: Vec<Prepared> = files.iter().map(|f| self.prepare(f)).collect();
        // Every scored point with a score that can be a detection, highest score first.
        let mut points: Vec<(f64, usize, Role)> = Vec::new();
        for (fi, (file, p)) in files.iter().zip(&prepared).enumerate() {
            for (score, role) in file.scores.iter().zip(&p.roles) {
                if !score.is_nan() && *role != Role::Probation {
                    points.push((*score, fi, *role));
                }
            }
        }
        points.sort_by(|a, b| b.0.total_cmp(&a.0));
        let offsets: Vec<usize> = prepared
            .iter()
            .scan(0usize, |acc, p| {
                let start = *acc;
                *acc += p.counted.len();
                Some(start)
            })
            .collect();
        let window_count: usize = prepared.iter().map(|p| p.counted.len()).sum();
        let mut best_in_window: Vec<Option<f64>> = vec![None; window_count];
        let (null, _) = self.totals(files, &prepared);
        let fn_weight = self.profile.fn_weight;
        let mut raw = null;
        let never =
            points.first().map_or(f64::INFINITY, |p| if p.0.is_finite() { p.0.next_up() } else { f64::INFINITY });
        let (mut best_threshold, mut best_raw) = (never, raw);
        let mut i = 0;
        while i < points.len() {
            let threshold = points[i].0;
            while i < points.len() && points[i].0 == threshold {
                let (_, fi, role) = points[i];
                match role {
                    Role::InWindow(w, weight) => {
                        let slot = &mut best_in_window[offsets[fi] + w];
                        match *slot {
                            None => {
                                raw += weight + fn_weight;
                                *slot = Some(weight);
                            }
                            Some(b) if weight > b => {
                                raw += weight - b;
                                *slot = Some(weight);
                            }
                            Some(_) => {}
                        }
                    }
                    Role::Outside(weight) => raw += weight,
                    Role::Probation => {}
                }
                i += 1;
            }
            if raw > best_raw + 1e-12 {
                best_raw = raw;
                best_threshold = threshold;
            }
        }
        self.corpus_at(files, &prepared, best_threshold)
    }
}
