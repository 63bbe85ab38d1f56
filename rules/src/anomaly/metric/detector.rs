//! The online metric anomaly detector.
//!
//! The values of a series are fed one at a time, in time order; each gets a score in `[0, 1]` computed from the
//! points before it and the point itself, never from later ones. Timestamps stay with the caller: the detector
//! uses the order of the points only and expects a regular period (as CloudWatch returns a metric). The state per series is bounded (see
//! [`Detector::state_bytes`]) and the result is deterministic: the same points in the same order give the same
//! scores, bit for bit.
//!
//! The score is the larger of two parts:
//!
//! * **Range novelty** (the main signal, from 0 up to 1): how far the value lies outside the range
//!   `[min, max]` of the last [`DetectorConfig::range_horizon`] points, relative to that range's span:
//!   `r = excess / span`, scored `r / (r + range_margin)`. A value inside the range scores 0 here; one outside it
//!   by `range_margin` of the span scores 0.5, by the whole span about 0.95. A value that differs from a history
//!   that was perfectly flat scores 1. Once a value has been seen it is part of the range, so a level shift
//!   scores high on its first point and low afterwards, and a recurring pattern (a daily spike) stops scoring
//!   once it has been seen within the horizon.
//! * **Robust deviation** (a weaker signal, capped at [`DetectorConfig::deviation_cap`]): the distance of the
//!   value from the median of the last [`DetectorConfig::deviation_window`] points in units of their robust
//!   spread (interquartile range / 1.349, floored at a fraction of their span), scored
//!   `cap × z² / (z² + deviation_z²)`. It ranks values that are unusual for the recent past without being
//!   outside everything seen, below any clear range novelty.
//!
//! During the first [`DetectorConfig::probation`] points the detector learns and scores 0.
//!
//! Non-finite values (NaN, ±∞; a missing CloudWatch datapoint often arrives as NaN) carry no information about
//! the level of the series: they score 0 and leave the state untouched. Huge finite values are handled (the
//! arithmetic saturates to a score of 1, never NaN).

use std::collections::VecDeque;
use std::mem::size_of;

/// The one global threshold of the default configuration on NAB's AWS CloudWatch files (a point is a detection
/// when its score is `>= DEFAULT_THRESHOLD`); see `docs/anomaly-detection.md`.
pub const DEFAULT_THRESHOLD: f64 = 0.6695;

/// Settings of the [`Detector`]. Window lengths are in points; the defaults assume CloudWatch's common 5-minute
/// period (288 points a day) but hold for any regular series.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Points at the start of a series that are learned from but score 0 (default 288: a day of 5-minute points).
    pub probation: usize,
    /// Points whose range the value is compared against (default 2016: a week of 5-minute points). It is
    /// tracked in blocks of [`DetectorConfig::range_block`] points, so the horizon moves a block at a time and
    /// covers between `range_horizon` and `range_horizon + range_block` points.
    pub range_horizon: usize,
    /// Points per block of the range tracker (default 72). Memory is 16 bytes per block.
    pub range_block: usize,
    /// Relative excess beyond the range that scores 0.5 (default 0.05: 5 % of the range's span).
    pub range_margin: f64,
    /// Points of the recent window for the robust deviation (default 288: a day of 5-minute points). Memory is
    /// 16 bytes per point.
    pub deviation_window: usize,
    /// Robust z-score at which the deviation part reaches half its cap (default 6).
    pub deviation_z: f64,
    /// The deviation part's maximum (default 0.5): at 0.5 it never outranks a range novelty of `range_margin`
    /// or more.
    pub deviation_cap: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            probation: 288,
            range_horizon: 2016,
            range_block: 72,
            range_margin: 0.05,
            deviation_window: 288,
            deviation_z: 6.0,
            deviation_cap: 0.5,
        }
    }
}

/// Min and max of the last points, kept per block of points: the horizon advances one block at a time.
#[derive(Debug, Clone)]
struct RangeTracker {
    /// (min, max) of each completed block, oldest first.
    blocks: VecDeque<(f64, f64)>,
    /// (min, max) of the block being filled and how many points it has.
    current: Option<(f64, f64)>,
    current_len: usize,
    block: usize,
    max_blocks: usize,
}

impl RangeTracker {
    fn new(horizon: usize, block: usize) -> Self {
        let block = block.max(1);
        let max_blocks = horizon.div_ceil(block).max(1);
        RangeTracker {
            blocks: VecDeque::with_capacity(max_blocks + 1),
            current: None,
            current_len: 0,
            block,
            max_blocks,
        }
    }

    /// (min, max) over the horizon, or `None` before the first point.
    fn range(&self) -> Option<(f64, f64)> {
        self.blocks.iter().chain(self.current.iter()).fold(None, |acc, &(lo, hi)| match acc {
            None => Some((lo, hi)),
            Some((a, b)) => Some((lo.min(a), hi.max(b))),
        })
    }

    fn push(&mut self, x: f64) {
        self.current = Some(self.current.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))));
        self.current_len += 1;
        if self.current_len >= self.block {
            if let Some(done) = self.current.take() {
                self.blocks.push_back(done);
            }
            self.current_len = 0;
            while self.blocks.len() > self.max_blocks {
                self.blocks.pop_front();
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<(f64, f64)>()
    }
}

/// The last points, in arrival order and sorted (for quantiles).
#[derive(Debug, Clone)]
struct SortedWindow {
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
    cap: usize,
}

impl SortedWindow {
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        SortedWindow { ring: VecDeque::with_capacity(cap), sorted: Vec::with_capacity(cap), cap }
    }

    fn push(&mut self, x: f64) {
        if self.ring.len() == self.cap {
            if let Some(old) = self.ring.pop_front() {
                let i = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
                self.sorted.remove(i);
            }
        }
        self.ring.push_back(x);
        let i = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Linear-interpolated quantile `q` in `[0, 1]`; the window must not be empty.
    fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        let pos = q * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        // Written as a weighted mean so that huge values of opposite signs do not overflow.
        self.sorted[lo] * (1.0 - frac) + self.sorted[hi] * frac
    }

    fn heap_bytes(&self) -> usize {
        self.ring.capacity() * size_of::<f64>() + self.sorted.capacity() * size_of::<f64>()
    }
}

/// Range novelty of `x` against the range a tracker holds (0 before any point).
fn novelty(tracker: &RangeTracker, x: f64, margin: f64) -> f64 {
    range_novelty(tracker.range(), x, margin)
}

/// Range novelty of `x` against `[lo, hi]` (0 without a range): how far it lies outside, relative to the span.
pub(crate) fn range_novelty(range: Option<(f64, f64)>, x: f64, margin: f64) -> f64 {
    match range {
        Some((lo, hi)) => {
            let excess = if x > hi {
                x - hi
            } else if x < lo {
                lo - x
            } else {
                0.0
            };
            relative_excess_score(excess, hi - lo, margin)
        }
        None => 0.0,
    }
}

/// `excess / span` turned into `[0, 1)` with `margin` scoring 0.5; a positive excess over a zero span scores 1.
fn relative_excess_score(excess: f64, span: f64, margin: f64) -> f64 {
    // Written so that NaN falls on the safe side.
    if excess.is_nan() || excess <= 0.0 {
        return 0.0;
    }
    let r = excess / span;
    if span.is_nan() || span <= 0.0 || !r.is_finite() {
        return 1.0;
    }
    let m = if margin > 0.0 { margin } else { f64::MIN_POSITIVE };
    r / (r + m)
}

/// The online detector for one series. See the [module documentation](self) for the method.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    /// Finite points learned so far.
    seen: u64,
    range: RangeTracker,
    recent: SortedWindow,
}

/// The parts of one point's score, for explanations and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParts {
    /// The range-novelty part, in `[0, 1]`.
    pub range_novelty: f64,
    /// The robust-deviation part, in `[0, deviation_cap]`.
    pub deviation: f64,
    /// The score: the larger part, or 0 during probation and for non-finite values.
    pub score: f64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DetectorConfig::default())
    }
}

impl Detector {
    /// A detector that has seen nothing yet.
    pub fn new(config: DetectorConfig) -> Self {
        Detector {
            range: RangeTracker::new(config.range_horizon, config.range_block),
            recent: SortedWindow::new(config.deviation_window),
            seen: 0,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Number of finite points learned so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Scores the next value of the series and learns it. The timestamp is not needed: points are expected in
    /// time order at a regular period, and the score depends on their order only.
    pub fn update(&mut self, value: f64) -> f64 {
        self.update_parts(value).score
    }

    /// [`Detector::update`] with the parts of the score.
    pub fn update_parts(&mut self, x: f64) -> ScoreParts {
        if !x.is_finite() {
            return ScoreParts { range_novelty: 0.0, deviation: 0.0, score: 0.0 };
        }
        let range_novelty = novelty(&self.range, x, self.config.range_margin);
        let deviation = self.deviation(x);
        self.range.push(x);
        self.recent.push(x);
        self.seen += 1;
        let score = if self.seen <= self.config.probation as u64 { 0.0 } else { range_novelty.max(deviation) };
        ScoreParts { range_novelty, deviation, score: clamp_unit(score) }
    }

    fn deviation(&self, x: f64) -> f64 {
        let n = self.recent.len();
        if n < 2 {
            return 0.0;
        }
        let median = self.recent.quantile(0.5);
        let iqr = (self.recent.quantile(0.75) - self.recent.quantile(0.25)).max(0.0);
        let span = (self.recent.quantile(1.0) - self.recent.quantile(0.0)).max(0.0);
        // Floors: a quantised or mostly constant window has a zero IQR; fall back on its span, then on the
        // magnitude of the level, so that a tiny wobble is not infinitely surprising.
        let spread = (iqr / 1.349).max(span / n as f64).max(median.abs() * 1e-9).max(f64::MIN_POSITIVE);
        let z = (x - median).abs() / spread;
        let cap = self.config.deviation_cap.clamp(0.0, 1.0);
        if !z.is_finite() {
            return if z.is_nan() { 0.0 } else { cap };
        }
        let z0 = self.config.deviation_z.max(f64::MIN_POSITIVE);
        let ratio = z / z0;
        // cap × ratio² / (ratio² + 1), written so that a huge ratio gives cap rather than inf / inf.
        cap / (1.0 + 1.0 / (ratio * ratio))
    }

    /// Bytes of state of this detector: the struct itself and the buffers it owns (capacity, not length), so
    /// the figure is the one the series reaches once its windows are full.
    pub fn state_bytes(&self) -> usize {
        size_of::<Self>() + self.range.heap_bytes() + self.recent.heap_bytes()
    }
}

/// Clamps to `[0, 1]`, NaN to 0.
fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// Scores a whole series with a fresh detector: one score per value, in order.
pub fn score_series(config: &DetectorConfig, values: &[f64]) -> Vec<f64> {
    let mut detector = Detector::new(config.clone());
    values.iter().map(|v| detector.update(*v)).collect()
}
