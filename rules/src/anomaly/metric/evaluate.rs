//! Judging a detector on a labelled corpus the way it will meet new series: leave one category out.
//!
//! Pure: the series' scores and windows come in as values, figures come out. For every category of the
//! corpus (NAB's `realKnownCause`, `realTraffic`, ...), the configuration and the threshold are chosen on the
//! other categories only (the best NAB score there among the candidate configurations, each at its best single
//! threshold) and the held-out category is scored with that choice. Three figures come out of the folds:
//!
//! * the **pooled held-out score**: NAB's normalised score over the whole corpus, each file scored with the
//!   choice made without its category. It is on the same scale as a whole-set score (NAB's published figures)
//!   and, unlike a per-category figure, it also charges the false positives of a category without windows;
//! * the **mean** and the **worst** of the per-category normalised scores (categories without windows have
//!   no normalised score, and are left out of both).
//!
//! The whole-set score (configuration and threshold chosen on every file) is reported next to them; it is
//! what a method fitted to the corpus gets, not what it gets on series it has not seen.

use super::nab::{NabScorer, ScoredFile, Window};

/// One labelled series of the corpus.
#[derive(Debug, Clone)]
pub struct LabelledSeries {
    /// NAB's relative path, e.g. `realTraffic/speed_6005.csv`.
    pub name: String,
    /// Its category: the first component of the name.
    pub category: String,
    /// The labelled windows, as point indices.
    pub windows: Vec<Window>,
}

/// A detector configuration's scores for every series of the corpus (same order as the series).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub scores: Vec<Vec<f64>>,
}

/// A category's figures with one choice of configuration and threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryScore {
    pub category: String,
    pub files: usize,
    pub windows: usize,
    /// Sum of the files' raw NAB scores.
    pub raw: f64,
    /// NAB's normalised score of the category alone; `None` for a category without windows.
    pub normalized: Option<f64>,
    /// Windows detected, windows missed, detections outside windows.
    pub detected: usize,
    pub missed: usize,
    pub false_positives: usize,
}

/// One fold: a category held out.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The configuration chosen on the other categories.
    pub candidate: String,
    /// The threshold chosen with it.
    pub threshold: f64,
    /// The normalised score on the other categories (what the choice was made on).
    pub training: f64,
    /// The held-out category scored with the choice.
    pub held_out: CategoryScore,
}

/// Everything [`evaluate`] finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The configuration and threshold chosen on the whole corpus, and its normalised score there.
    pub whole_candidate: String,
    pub whole_threshold: f64,
    pub whole: f64,
    /// Each category at the whole-set choice.
    pub categories: Vec<CategoryScore>,
    /// One fold per category, in category order; empty when the corpus has fewer than two categories.
    pub folds: Vec<Fold>,
    /// The pooled held-out score (see the module's documentation); `None` without folds.
    pub pooled: Option<f64>,
    /// Mean of the folds' normalised held-out scores (categories with windows).
    pub mean: Option<f64>,
    /// The fold with the lowest normalised held-out score: (category, score).
    pub worst: Option<(String, f64)>,
}

/// The categories of the corpus, sorted.
fn categories(series: &[LabelledSeries]) -> Vec<String> {
    let mut out: Vec<String> = series.iter().map(|s| s.category.clone()).collect();
    out.sort();
    out.dedup();
    out
}

fn files<'a>(series: &'a [LabelledSeries], scores: &'a [Vec<f64>], keep: &[bool]) -> Vec<ScoredFile<'a>> {
    series
        .iter()
        .zip(scores)
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|((s, sc), _)| ScoredFile { name: &s.name, scores: sc, windows: &s.windows })
        .collect()
}

/// The best (candidate index, threshold, normalised score) on the series marked in `keep`; among equal
/// scores the first candidate wins.
fn choose(scorer: &NabScorer, series: &[LabelledSeries], candidates: &[Candidate], keep: &[bool]) -> (usize, f64, f64) {
    let mut best: Option<(usize, f64, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let result = scorer.optimize(&files(series, &c.scores, keep));
        if best.is_none_or(|(_, _, score)| result.normalized > score) {
            best = Some((i, result.threshold, result.normalized));
        }
    }
    best.expect("at least one candidate")
}

fn category_score(
    scorer: &NabScorer,
    series: &[LabelledSeries],
    scores: &[Vec<f64>],
    category: &str,
    threshold: f64,
) -> CategoryScore {
    let keep: Vec<bool> = series.iter().map(|s| s.category == category).collect();
    let result = scorer.score(&files(series, scores, &keep), threshold);
    let windows: usize = result.files.iter().map(|f| f.windows).sum();
    CategoryScore {
        category: category.to_string(),
        files: result.files.len(),
        windows,
        raw: result.raw,
        normalized: (result.perfect > result.null).then_some(result.normalized),
        detected: result.files.iter().map(|f| f.true_positives).sum(),
        missed: result.files.iter().map(|f| f.false_negatives).sum(),
        false_positives: result.files.iter().map(|f| f.false_positives).sum(),
    }
}

/// Evaluates the candidates on the corpus: the whole-set choice and score, each category at it, and one
/// leave-one-category-out fold per category.
///
/// # Panics
/// When `candidates` is empty or a candidate's scores do not match the series one for one (a caller's
/// mistake, not an input's).
pub fn evaluate(scorer: &NabScorer, series: &[LabelledSeries], candidates: &[Candidate]) -> Evaluation {
    assert!(!candidates.is_empty(), "no candidate configuration");
    for c in candidates {
        assert_eq!(c.scores.len(), series.len(), "candidate {}: one score vector per series", c.name);
    }
    let cats = categories(series);
    let all = vec![true; series.len()];
    let (whole_i, whole_threshold, whole) = choose(scorer, series, candidates, &all);
    let whole_scores = &candidates[whole_i].scores;
    let per_category: Vec<CategoryScore> =
        cats.iter().map(|c| category_score(scorer, series, whole_scores, c, whole_threshold)).collect();

    let mut folds = Vec::new();
    if cats.len() >= 2 {
        for held in &cats {
            let keep: Vec<bool> = series.iter().map(|s| &s.category != held).collect();
            let (i, threshold, training) = choose(scorer, series, candidates, &keep);
            let held_out = category_score(scorer, series, &candidates[i].scores, held, threshold);
            folds.push(Fold { candidate: candidates[i].name.clone(), threshold, training, held_out });
        }
    }
    let (pooled, mean, worst) = if folds.is_empty() {
        (None, None, None)
    } else {
        // The whole corpus' null and perfect scores, the folds' held-out raw scores summed.
        let reference = scorer.score(&files(series, &candidates[0].scores, &all), f64::INFINITY);
        let raw: f64 = folds.iter().map(|f| f.held_out.raw).sum();
        let pooled = (reference.perfect > reference.null)
            .then(|| 100.0 * (raw - reference.null) / (reference.perfect - reference.null));
        let scored: Vec<(&str, f64)> =
            folds.iter().filter_map(|f| Some((f.held_out.category.as_str(), f.held_out.normalized?))).collect();
        let mean = (!scored.is_empty()).then(|| scored.iter().map(|(_, s)| s).sum::<f64>() / scored.len() as f64);
        let worst = scored.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|(c, s)| (c.to_string(), *s));
        (pooled, mean, worst)
    };
    Evaluation {
        whole_candidate: candidates[whole_i].name.clone(),
        whole_threshold,
        whole,
        categories: per_category,
        folds,
        pooled,
        mean,
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series of 100 points with one window at 60..=69, named `cat/i.csv`.
    fn series(cat: &str, i: usize) -> LabelledSeries {
        LabelledSeries { name: format!("{cat}/{i}.csv"), category: cat.into(), windows: vec![Window::new(60, 69)] }
    }

    /// Scores that reach `peak` at the window's first point and `noise` at point 30 (a false positive).
    fn scores(peak: f64, noise: f64) -> Vec<f64> {
        let mut s = vec![0.0; 100];
        s[60] = peak;
        s[30] = noise;
        s
    }

    #[test]
    fn each_fold_chooses_on_the_other_categories_only() {
        // Category a: anomalies score 0.9, noise 0.5. Category b: anomalies score 0.6, noise 0.3.
        // On both, any threshold in (0.5, 0.6] catches every window without a false positive.
        // Category c: anomalies 0.95, noise 0.8; with a threshold chosen on a and b (0.6) c pays a false
        // positive per file; chosen on a and c, the threshold stays above 0.8 and b misses every window.
        let corpus: Vec<LabelledSeries> =
            ["a", "a", "b", "b", "c", "c"].iter().enumerate().map(|(i, c)| series(c, i)).collect();
        let s = vec![
            scores(0.9, 0.5),
            scores(0.9, 0.5),
            scores(0.6, 0.3),
            scores(0.6, 0.3),
            scores(0.95, 0.8),
            scores(0.95, 0.8),
        ];
        let scorer = NabScorer::default();
        let e = evaluate(&scorer, &corpus, &[Candidate { name: "only".into(), scores: s }]);
        assert_eq!(e.folds.len(), 3);
        // Held out a: chosen on b and c. Threshold 0.6 catches b's and c's windows but fires on c's noise
        // (2 × −0.11); above 0.8 it misses b's windows (2 × −2 swing): 0.6 wins. a is then perfect.
        let a = &e.folds[0];
        assert_eq!(a.threshold, 0.6);
        assert_eq!((a.held_out.detected, a.held_out.missed, a.held_out.false_positives), (2, 0, 0));
        assert_eq!(a.held_out.normalized, Some(100.0));
        // Held out b: chosen on a and c: the best threshold is 0.9 (every window, no noise); b misses both.
        let b = &e.folds[1];
        assert_eq!(b.threshold, 0.9);
        assert_eq!((b.held_out.detected, b.held_out.missed), (0, 2));
        assert_eq!(b.held_out.normalized, Some(0.0));
        // Held out c: chosen on a and b: 0.6; c's windows are caught, its noise costs 0.11 per file.
        let c = &e.folds[2];
        assert_eq!(c.threshold, 0.6);
        assert_eq!((c.held_out.detected, c.held_out.false_positives), (2, 2));
        let expected_c = 100.0 * (2.0 - 0.22 + 2.0) / 4.0;
        assert!((c.held_out.normalized.unwrap() - expected_c).abs() < 1e-9);
        // Mean and worst over the three; pooled over the six files: raw 2 + (−2) + 1.78 against null −6.
        assert!((e.mean.unwrap() - (100.0 + 0.0 + expected_c) / 3.0).abs() < 1e-9);
        assert_eq!(e.worst, Some(("b".to_string(), 0.0)));
        assert!((e.pooled.unwrap() - 100.0 * (2.0 - 2.0 + 1.78 + 6.0) / 12.0).abs() < 1e-9);
        // The whole set's choice is 0.6 too (every window; c's noise is cheaper than b's misses).
        assert_eq!(e.whole_threshold, 0.6);
        assert!((e.whole - 100.0 * (6.0 - 0.22 + 6.0) / 12.0).abs() < 1e-9);
    }

    #[test]
    fn the_configuration_is_chosen_per_fold_and_a_category_without_windows_is_charged_in_the_pool() {
        // Two configurations: `quiet` catches a's window only and never fires on the window-less category n;
        // `loud` catches a's and b's windows and fires once on n.
        let mut corpus: Vec<LabelledSeries> = vec![series("a", 0), series("b", 1)];
        corpus.push(LabelledSeries { name: "n/2.csv".into(), category: "n".into(), windows: vec![] });
        let quiet = vec![scores(0.9, 0.0), scores(0.0, 0.0), vec![0.0; 100]];
        let mut n_loud = vec![0.0; 100];
        n_loud[40] = 0.95;
        let loud = vec![scores(0.9, 0.0), scores(0.9, 0.0), n_loud];
        let candidates =
            [Candidate { name: "quiet".into(), scores: quiet }, Candidate { name: "loud".into(), scores: loud }];
        let e = evaluate(&NabScorer::default(), &corpus, &candidates);
        let fold = |c: &str| e.folds.iter().find(|f| f.held_out.category == c).unwrap().clone();
        // Held out n, chosen on a and b: loud (100) over quiet (50, b missed); n pays its false positive and
        // has no normalised score of its own.
        let n = fold("n");
        assert_eq!((n.candidate.as_str(), n.threshold), ("loud", 0.9));
        assert_eq!((n.held_out.normalized, n.held_out.false_positives), (None, 1));
        assert!((n.held_out.raw + 0.11).abs() < 1e-12);
        // Held out a, chosen on b and n: loud (b caught, n's false positive: 94.5) over quiet (0); a is caught.
        let a = fold("a");
        assert_eq!((a.candidate.as_str(), a.held_out.normalized), ("loud", Some(100.0)));
        // Held out b, chosen on a and n: quiet (100) over loud (94.5); b is missed.
        let b = fold("b");
        assert_eq!((b.candidate.as_str(), b.held_out.normalized), ("quiet", Some(0.0)));
        // Pooled over the three files: raw 1 − 1 − 0.11 against null −2 and perfect 2.
        assert!((e.pooled.unwrap() - 100.0 * (1.0 - 1.0 - 0.11 + 2.0) / 4.0).abs() < 1e-9);
        assert_eq!(e.mean, Some(50.0));
        assert_eq!(e.worst, Some(("b".to_string(), 0.0)));
    }

    #[test]
    fn one_category_has_no_folds() {
        let corpus = vec![series("a", 0)];
        let e =
            evaluate(&NabScorer::default(), &corpus, &[Candidate { name: "x".into(), scores: vec![scores(1.0, 0.0)] }]);
        assert!(e.folds.is_empty() && e.pooled.is_none() && e.mean.is_none() && e.worst.is_none());
        assert_eq!(e.whole, 100.0);
    }
}
