//! A candidate metric anomaly detector: range novelty + context novelty + deviation, summed.
//!
//! Not yet the daemon's detector (that is [`super::detector`]): it is evaluated next to it with
//! `cloudwarden anomaly evaluate --detector novelty` (see `docs/anomaly-detection.md`, where its figures and
//! the way its design was chosen are written down).
//!
//! Values are fed one at a time in time order with their timestamps (seconds); each gets a score in `[0, 1]`
//! computed from the points before it and the point itself. The state per series is bounded (under 1 KB with the
//! default configuration, see [`NoveltyDetector::state_bytes`]) and the result is deterministic.
//!
//! The timestamps are used only to learn the series' step (the gap between its first two points), which turns
//! the range horizon, given in seconds, into points.
//!
//! The score is the sum of three parts, clamped to `[0, 1]`:
//!
//! * **Range novelty** (weight 1): how far the value lies outside the `[min, max]` of the last
//!   [`NoveltyConfig::range_horizon_secs`] (two weeks), relative to that range's span, `r / (r + range_margin)`.
//!   The range is kept per block of points (a fixed ring of [`NoveltyConfig::range_blocks`] blocks).
//! * **Context novelty** (weight [`NoveltyConfig::w_ctx`]): the value is quantised into [`NoveltyConfig::ctx_levels`] levels
//!   of that range (including the value itself); the last [`NoveltyConfig::ctx_len`] levels form a context, counted in
//!   a table of saturating byte counts (one per context, or hashed when there are too many). A context seen `c` times before scores `(1 + c)^-2`:
//!   1 when new, 0.25 the second time. A sequence the series has never gone through (a jump between levels
//!   that never follow each other, a level never visited after a range change) scores even inside the range.
//! * **Deviation** (weight [`NoveltyConfig::w_dev`], at most that weight): the distance of the value from an EWMA
//!   level in units of the EW mean absolute residual, `z² / (z² + dev_z²)`.
//!
//! During the first [`NoveltyConfig::probation`] points the detector learns and scores 0. Non-finite values score 0
//! and leave the state untouched; huge finite values never produce NaN (the score saturates).

use std::mem::size_of;

use super::detector::range_novelty;

/// Settings of the [`NoveltyDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct NoveltyConfig {
    /// Points learned from at the start that score 0 (default 150).
    pub probation: usize,
    /// Horizon of the range, in seconds (default 14 days), turned into points with the series' step.
    pub range_horizon_secs: f64,
    /// Blocks of the range tracker (default 28; 16 bytes each).
    pub range_blocks: usize,
    /// Relative excess beyond the range that scores 0.5 (default 0.05).
    pub range_margin: f64,
    /// Weight of the context novelty (default 0.3).
    pub w_ctx: f64,
    /// Quantisation levels of the context (default 6).
    pub ctx_levels: u32,
    /// Points per context (default 2, at most 8).
    pub ctx_len: usize,
    /// log2 of the largest context table (default 12: 4 KB); when `ctx_levels^ctx_len` contexts fit, the
    /// table has one byte per context (36 bytes with the defaults) and no hashing.
    pub ctx_bits: u32,
    /// Weight (and maximum) of the deviation part (default 0.5).
    pub w_dev: f64,
    /// Smoothing of the EWMA level (default 0.1).
    pub dev_alpha: f64,
    /// Smoothing of the mean absolute residual (default 0.002).
    pub dev_scale_alpha: f64,
    /// Deviation z that scores half the weight (default 6).
    pub dev_z: f64,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        NoveltyConfig {
            probation: 150,
            range_horizon_secs: 14.0 * 86400.0,
            range_blocks: 28,
            range_margin: 0.05,
            w_ctx: 0.3,
            ctx_levels: 6,
            ctx_len: 2,
            ctx_bits: 12,
            w_dev: 0.5,
            dev_alpha: 0.1,
            dev_scale_alpha: 0.002,
            dev_z: 6.0,
        }
    }
}

/// Min and max of the last blocks of points (a fixed ring), plus the block being filled.
#[derive(Debug, Clone)]
struct Range {
    blocks: Vec<(f64, f64)>,
    filled: usize,
    head: usize,
    cur: (f64, f64),
    cur_len: usize,
    block_len: usize,
    /// Range of the completed blocks.
    done: Option<(f64, f64)>,
}

impl Range {
    fn new(nblocks: usize, block_len: usize) -> Self {
        Range {
            blocks: vec![(0.0, 0.0); nblocks.max(1)],
            filled: 0,
            head: 0,
            cur: (f64::INFINITY, f64::NEG_INFINITY),
            cur_len: 0,
            block_len: block_len.max(1),
            done: None,
        }
    }

    fn range(&self) -> Option<(f64, f64)> {
        match (self.done, self.cur_len > 0) {
            (Some((a, b)), true) => Some((a.min(self.cur.0), b.max(self.cur.1))),
            (Some(r), false) => Some(r),
            (None, true) => Some(self.cur),
            (None, false) => None,
        }
    }

    fn push(&mut self, x: f64) {
        self.cur = (self.cur.0.min(x), self.cur.1.max(x));
        self.cur_len += 1;
        if self.cur_len >= self.block_len {
            let n = self.blocks.len();
            self.blocks[self.head] = self.cur;
            self.head = (self.head + 1) % n;
            self.filled = (self.filled + 1).min(n);
            self.cur = (f64::INFINITY, f64::NEG_INFINITY);
            self.cur_len = 0;
            self.done = Some(
                self.blocks[..self.filled]
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), b| (lo.min(b.0), hi.max(b.1))),
            );
        }
    }
}

/// Entries of the context table: one per possible context when there are at most `2^ctx_bits` of them
/// (`ctx_levels^ctx_len`, 36 with the defaults), else `2^ctx_bits` hashed slots.
fn table_len(c: &NoveltyConfig) -> usize {
    let direct = (c.ctx_levels.max(1) as u64).checked_pow(c.ctx_len.clamp(1, 8) as u32);
    let cap = 1u64 << c.ctx_bits.clamp(4, 16);
    match direct {
        Some(n) if n <= cap => n as usize,
        _ => cap as usize,
    }
}

/// Index of a context (levels, newest first) in a table of `len` entries: the context read as a number in
/// base `levels` when it fits, else a hash of it.
fn context_index(ctx: &[u32], levels: u32, len: usize) -> usize {
    let direct = (levels as u64).checked_pow(ctx.len() as u32);
    if direct == Some(len as u64) {
        return ctx.iter().fold(0usize, |acc, &l| acc * levels as usize + l as usize);
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for &l in ctx {
        h = (h ^ l as u64).wrapping_mul(0x100000001b3);
    }
    let h = (h ^ (h >> 31)).wrapping_mul(0xbf58476d1ce4e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    (h % len as u64) as usize
}

/// The online detector for one series.
#[derive(Debug, Clone)]
pub struct NoveltyDetector {
    config: NoveltyConfig,
    /// The first point, held until the second gives the step.
    first: Option<(i64, f64)>,
    started: bool,
    seen: u64,
    range: Range,
    table: Vec<u8>,
    /// Last levels, newest first.
    levels: [u32; 8],
    level: f64,
    scale: f64,
}

impl NoveltyDetector {
    /// A detector that has seen nothing yet.
    pub fn new(config: NoveltyConfig) -> Self {
        NoveltyDetector {
            range: Range::new(config.range_blocks, 1),
            table: vec![0u8; table_len(&config)],
            config,
            first: None,
            started: false,
            seen: 0,
            levels: [0; 8],
            level: 0.0,
            scale: 0.0,
        }
    }

    /// Scores the next point and learns it. `timestamp_secs` should increase by the series' regular step.
    pub fn update(&mut self, timestamp_secs: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        if !self.started {
            match self.first {
                None => {
                    self.first = Some((timestamp_secs, value));
                    return 0.0;
                }
                Some((t0, x0)) => {
                    let step = if timestamp_secs > t0 { timestamp_secs - t0 } else { 300 };
                    let horizon = (self.config.range_horizon_secs / step as f64).round().max(1.0) as usize;
                    let blocks = self.config.range_blocks.max(1);
                    self.range = Range::new(blocks, horizon.div_ceil(blocks));
                    self.started = true;
                    self.first = None;
                    self.learn_and_score(x0);
                }
            }
        }
        self.learn_and_score(value)
    }

    fn learn_and_score(&mut self, x: f64) -> f64 {
        let c = &self.config;
        // Range novelty against the range before x.
        let rn = range_novelty(self.range.range(), x, c.range_margin);
        self.range.push(x);

        // Context novelty: quantised in the range including x.
        let mut ctx = 0.0;
        if c.w_ctx > 0.0 {
            let (lo, hi) = self.range.range().unwrap_or((x, x));
            let span = hi - lo;
            let top = c.ctx_levels.max(1) - 1;
            let level = if span > 0.0 && span.is_finite() {
                let q = ((x - lo) / span * c.ctx_levels as f64).floor();
                if q.is_nan() {
                    0
                } else {
                    q.clamp(0.0, top as f64) as u32
                }
            } else {
                0
            };
            self.levels.copy_within(0..7, 1);
            self.levels[0] = level;
            let idx = context_index(&self.levels[..c.ctx_len.clamp(1, 8)], c.ctx_levels.max(1), self.table.len());
            let count = self.table[idx];
            self.table[idx] = count.saturating_add(1);
            let inv = 1.0 / (1.0 + count as f64);
            ctx = inv * inv;
        }

        // Deviation from the EWMA level, in units of the mean absolute residual.
        let mut dev = 0.0;
        if c.w_dev > 0.0 {
            if self.seen == 0 {
                self.level = x;
            }
            let residual = (x - self.level).abs();
            if self.seen > 1 {
                let s = self.scale.max(f64::MIN_POSITIVE).max(1e-9 * self.level.abs());
                let r = residual / s / c.dev_z.max(f64::MIN_POSITIVE);
                // r² / (r² + 1), written so that a huge r gives 1 rather than inf / inf.
                dev = if r.is_finite() { 1.0 / (1.0 + 1.0 / (r * r)) } else { 1.0 };
                if dev.is_nan() {
                    dev = 0.0;
                }
            }
            let a = if self.seen < 50 { 1.0 / (self.seen as f64 + 1.0) } else { c.dev_scale_alpha };
            self.scale += a * (residual.min(f64::MAX / 4.0) - self.scale);
            self.level += c.dev_alpha * (x - self.level);
            if !self.level.is_finite() {
                self.level = x;
            }
            if !self.scale.is_finite() {
                self.scale = f64::MAX / 4.0;
            }
        }

        self.seen += 1;
        if self.seen <= c.probation as u64 {
            return 0.0;
        }
        let score = rn + c.w_ctx * ctx + c.w_dev * dev;
        if score.is_nan() {
            0.0
        } else {
            score.clamp(0.0, 1.0)
        }
    }

    /// Bytes of state: the struct and the buffers it owns.
    pub fn state_bytes(&self) -> usize {
        size_of::<Self>() + self.range.blocks.capacity() * size_of::<(f64, f64)>() + self.table.capacity()
    }
}

/// Scores a whole series (timestamps in seconds, values) with a fresh detector.
pub fn score_series(config: &NoveltyConfig, points: &[(i64, f64)]) -> Vec<f64> {
    let mut detector = NoveltyDetector::new(config.clone());
    points.iter().map(|&(t, x)| detector.update(t, x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_huge_values() {
        let mut d = NoveltyDetector::new(NoveltyConfig::default());
        for i in 0..400i64 {
            let s = d.update(i * 300, (i % 7) as f64);
            assert!(s.is_finite());
        }
        let before = d.clone();
        assert_eq!(d.update(400 * 300, f64::NAN), 0.0);
        assert_eq!(d.update(400 * 300, f64::INFINITY), 0.0);
        assert_eq!(format!("{:?}", d), format!("{:?}", before));
        for (i, x) in [1e308, -1e308, f64::MAX, -f64::MAX, 3.0, f64::MIN_POSITIVE].iter().enumerate() {
            let s = d.update(401 * 300 + i as i64 * 300, *x);
            assert!((0.0..=1.0).contains(&s), "{x} -> {s}");
        }
    }

    /// A daily cycle at a 5-minute step, with noise from a small deterministic generator.
    fn daily(days: i64, step: i64) -> Vec<(i64, f64)> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..days * 86_400 / step)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 1000) as f64 / 1000.0;
                let phase = (i * step % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
                (i * step, 50.0 + 20.0 * phase.sin() + noise)
            })
            .collect()
    }

    #[test]
    fn probation_scores_zero_and_scores_stay_in_the_unit_interval() {
        let points = daily(20, 300);
        let scores = score_series(&NoveltyConfig::default(), &points);
        assert!(scores[..150].iter().all(|s| *s == 0.0));
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        // Deterministic, and online: a prefix scores the same alone.
        assert_eq!(scores, score_series(&NoveltyConfig::default(), &points));
        assert_eq!(score_series(&NoveltyConfig::default(), &points[..3000]), scores[..3000]);
    }

    #[test]
    fn a_spike_scores_high_and_its_repeat_lower() {
        let mut points = daily(20, 300);
        let quiet = score_series(&NoveltyConfig::default(), &points);
        let max_quiet = quiet[4000..].iter().cloned().fold(0.0, f64::max);
        points[5000].1 = 150.0;
        points[5300].1 = 150.0;
        let scores = score_series(&NoveltyConfig::default(), &points);
        assert!(scores[5000] > 0.9, "spike scored {}", scores[5000]);
        assert!(scores[5000] > max_quiet + 0.3, "spike {} against the quiet series' highest {max_quiet}", scores[5000]);
        assert!(scores[5300] < scores[5000], "the repeat scored {} after {}", scores[5300], scores[5000]);
    }

    #[test]
    fn the_range_horizon_is_in_time_not_points() {
        // The same 20 days at a 5-minute and at a 1-hour step: a value last reached 16 days ago is new again
        // (past the 14-day horizon) in both, and one reached 10 days ago is not.
        for step in [300i64, 3600] {
            let n = 20 * 86_400 / step;
            let mut points: Vec<(i64, f64)> = (0..n).map(|i| (i * step, 10.0 + (i % 2) as f64)).collect();
            let at = |days: i64| (days * 86_400 / step) as usize;
            points[at(2)].1 = 30.0;
            points[at(8)].1 = 25.0;
            points[at(18)].1 = 25.0;
            points[at(18) + 2].1 = 30.0;
            let scores = score_series(&NoveltyConfig::default(), &points);
            assert!(scores[at(18) + 2] > 0.5, "step {step}: 16 days later scored {}", scores[at(18) + 2]);
            assert!(scores[at(18)] < 0.5, "step {step}: 10 days later scored {}", scores[at(18)]);
        }
    }

    #[test]
    fn state_is_small_and_does_not_grow() {
        let mut d = NoveltyDetector::new(NoveltyConfig::default());
        for (t, x) in daily(60, 300) {
            d.update(t, x);
        }
        assert!(d.state_bytes() <= 1024, "{} bytes", d.state_bytes());
        let before = d.state_bytes();
        for (t, x) in daily(30, 300) {
            d.update(t + 60 * 86_400, x * 3.0);
        }
        assert_eq!(d.state_bytes(), before);
    }
}
