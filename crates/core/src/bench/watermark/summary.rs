//! The watermark benchmark's figures from its scored texts.

use serde_json::{Value, json};

use super::Row;
use super::texts::HUMAN_KINDS;

/// Texts of `kind`.
fn of<'a>(rows: &'a [Row], kind: &str) -> Vec<&'a Row> {
    rows.iter().filter(|r| r.kind == kind).collect()
}

/// Share of `rows` the detector calls watermarked at `threshold` (a text it cannot judge is
/// not called watermarked).
fn detected(rows: &[&Row], threshold: f64) -> f64 {
    share(rows, |r| r.z.is_some_and(|z| z > threshold))
}

fn share(rows: &[&Row], pred: impl Fn(&Row) -> bool) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    round(rows.iter().filter(|r| pred(r)).count() as f64 / rows.len() as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    round(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Counts, detection rate and median z of one kind of text.
fn group(rows: &[&Row], threshold: f64) -> Value {
    json!({
        "texts": rows.len(),
        "judged": rows.iter().filter(|r| r.z.is_some()).count(),
        "median_tokens": median(rows.iter().map(|r| r.tokens as f64).collect()),
        "detected": detected(rows, threshold),
        "median_z": median(rows.iter().filter_map(|r| r.z).collect()),
        "max_z": rows.iter().filter_map(|r| r.z).fold(f64::NAN, f64::max),
    })
}

/// The z above which at most 1% of the texts without a watermark (plain replies and human
/// text) lie: the threshold a user who accepts 1% false positives would set.
fn threshold_at_1pct(negatives: &[&Row]) -> f64 {
    let mut z: Vec<f64> = negatives
        .iter()
        .map(|r| r.z.unwrap_or(f64::NEG_INFINITY))
        .collect();
    z.sort_by(f64::total_cmp);
    if z.is_empty() {
        return f64::NAN;
    }
    let at = ((z.len() as f64) * 0.99).ceil() as usize;
    z[at.min(z.len()) - 1]
}

/// The report's figures.
pub fn summarize(rows: &[Row], threshold: f64) -> Value {
    let marked = of(rows, "watermarked");
    let plain = of(rows, "plain");
    let human: Vec<&Row> = rows
        .iter()
        .filter(|r| HUMAN_KINDS.contains(&r.kind.as_str()))
        .collect();
    let negatives: Vec<&Row> = plain.iter().chain(human.iter()).copied().collect();
    let z1 = threshold_at_1pct(&negatives);
    let ppl = |rs: &[&Row]| median(rs.iter().filter_map(|r| r.ppl).collect());
    json!({
        "prompts": marked.len(),
        "watermarked": group(&marked, threshold),
        "plain": group(&plain, threshold),
        "replaced_10pct": group(&of(rows, "replaced-10"), threshold),
        "replaced_25pct": group(&of(rows, "replaced-25"), threshold),
        "human_shakespeare": group(&of(rows, "shakespeare"), threshold),
        "human_seed_answers": group(&of(rows, "seed-answers"), threshold),
        "z_at_1pct_fpr": round(z1),
        "tpr_at_1pct_fpr": share(&marked, |r| r.z.is_some_and(|z| z > z1)),
        "median_ppl_plain": ppl(&plain),
        "median_ppl_watermarked": ppl(&marked),
        "by_length": by_length(&marked, threshold),
        "by_entropy": by_entropy(&marked, threshold),
    })
}

/// Detection of watermarked replies by their length in tokens.
fn by_length(marked: &[&Row], threshold: f64) -> Value {
    let bands = [(0, 50), (50, 100), (100, 150), (150, usize::MAX)];
    Value::Array(
        bands
            .iter()
            .map(|&(lo, hi)| {
                let rs: Vec<&Row> = marked
                    .iter()
                    .filter(|r| r.tokens >= lo && r.tokens < hi)
                    .copied()
                    .collect();
                json!({"tokens_from": lo, "texts": rs.len(), "detected": detected(&rs, threshold),
                       "median_z": median(rs.iter().filter_map(|r| r.z).collect())})
            })
            .collect(),
    )
}

/// Detection of watermarked replies by quartile of the model's mean entropy while writing
/// them: low entropy leaves the bias little room, the paper's known failure.
fn by_entropy(marked: &[&Row], threshold: f64) -> Value {
    let mut sorted: Vec<&Row> = marked.to_vec();
    sorted.sort_by(|a, b| {
        a.entropy
            .unwrap_or(0.0)
            .total_cmp(&b.entropy.unwrap_or(0.0))
    });
    let n = sorted.len();
    Value::Array(
        (0..4)
            .map(|q| {
                let rs = &sorted[q * n / 4..(q + 1) * n / 4];
                json!({
                    "quartile": q + 1,
                    "texts": rs.len(),
                    "mean_entropy_nats": median(rs.iter().filter_map(|r| r.entropy).collect()),
                    "detected": detected(rs, threshold),
                    "median_z": median(rs.iter().filter_map(|r| r.z).collect()),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, z: Option<f64>) -> Row {
        Row {
            kind: kind.into(),
            prompt: 0,
            tokens: 100,
            z,
            ppl: Some(2.0),
            entropy: Some(1.0),
        }
    }

    #[test]
    fn detection_counts_unjudged_texts_as_missed() {
        let rows = [row("watermarked", Some(5.0)), row("watermarked", None)];
        let refs: Vec<&Row> = rows.iter().collect();
        assert_eq!(detected(&refs, 4.0), 0.5);
    }

    #[test]
    fn one_percent_threshold_is_the_99th_percentile_of_negatives() {
        let rows: Vec<Row> = (0..200)
            .map(|i| row("plain", Some(i as f64 / 10.0)))
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        // 198 of 200 values lie at or below 19.7: at most 1% above it.
        assert_eq!(threshold_at_1pct(&refs), 19.7);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
