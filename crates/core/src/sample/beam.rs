//! Greedy and beam search over any step-by-step decoder (Sutskever et al. 2014, "Sequence to
//! Sequence Learning with Neural Networks"; the length penalty of Wu et al. 2016, "Google's
//! Neural Machine Translation System").
//!
//! Both search a batch of independent sentences at once. The decoder holds one row per live
//! hypothesis; after each step the search tells it which rows to keep, in which order and how
//! often ([`StepDecoder::keep_rows`]), so finished sentences cost nothing and beams can fork.
//!
//! Beam search keeps `beam` live hypotheses per sentence ranked by their summed
//! log-probability. At each step it looks at the best `2 * beam` one-token extensions; an
//! extension that ends in end-of-sentence among the best `beam` is set aside as finished, the
//! others refill the live beams. A sentence is done when it has `beam` finished hypotheses (or
//! reached the length limit, when its live ones count as finished). The answer is the finished
//! hypothesis with the best length-normalised score `log p(Y) / lp(Y)`, with GNMT's
//! `lp(Y) = ((5 + |Y|) / 6)^alpha`, where `|Y|` counts the end-of-sentence token; `alpha = 0`
//! ranks by raw log-probability, larger values favour longer outputs. With `beam = 1` the search
//! is greedy search.

use crate::error::{Error, Result};

/// A decoder driven one token at a time over a set of rows (live hypotheses).
pub trait StepDecoder {
    /// Feeds one token to every row and returns each row's log-probabilities of the next
    /// token (rows x vocab, row-major, in row order).
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;

    /// Keeps rows `rows` (indices into the current rows; repeats allowed) in this order.
    fn keep_rows(&mut self, rows: &[usize]) -> Result<()>;
}

/// The settings of a search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchOptions {
    /// Hypotheses kept per sentence; 1 is greedy search.
    pub beam: usize,
    /// GNMT length-penalty exponent `alpha` (0: none).
    pub length_penalty: f64,
    /// Most tokens produced per sentence, end-of-sentence included.
    pub max_len: usize,
    /// The token every output starts from (not part of the result).
    pub bos: u32,
    /// The token that ends an output (not part of the result).
    pub eos: u32,
}

/// GNMT's length penalty `((5 + len) / 6)^alpha`.
pub fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// The best output of `n` sentences, without BOS and EOS.
pub fn search(dec: &mut dyn StepDecoder, n: usize, opts: &SearchOptions) -> Result<Vec<Vec<u32>>> {
    if opts.beam == 0 {
        return Err(Error::usage(
            "the beam size must be at least 1 (1 is greedy search)",
        ));
    }
    if opts.beam == 1 {
        greedy(dec, n, opts)
    } else {
        beam_search(dec, n, opts)
    }
}

/// Greedy search: the most likely next token each step.
pub fn greedy(dec: &mut dyn StepDecoder, n: usize, opts: &SearchOptions) -> Result<Vec<Vec<u32>>> {
    let mut out = vec![Vec::new(); n];
    let mut live: Vec<usize> = (0..n).collect(); // sentence of each row
    let mut tokens = vec![opts.bos; n];
    for _ in 0..opts.max_len {
        if live.is_empty() {
            break;
        }
        let lp = dec.step(&tokens)?;
        let vocab = lp.len() / live.len();
        let (mut keep, mut next_live, mut next_tokens) = (Vec::new(), Vec::new(), Vec::new());
        for (row, &s) in live.iter().enumerate() {
            let best = argmax(&lp[row * vocab..(row + 1) * vocab]);
            if best != opts.eos {
                out[s].push(best);
                keep.push(row);
                next_live.push(s);
                next_tokens.push(best);
            }
        }
        if keep.len() < live.len() && !keep.is_empty() {
            dec.keep_rows(&keep)?;
        }
        (live, tokens) = (next_live, next_tokens);
    }
    Ok(out)
}

/// The index of the largest value (the first on ties).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// One hypothesis: its tokens and summed log-probability.
#[derive(Clone, Debug)]
struct Hyp {
    tokens: Vec<u32>,
    score: f64,
}

/// The search state of one sentence.
#[derive(Default)]
struct Sentence {
    live: Vec<Hyp>,
    /// (length-normalised score, tokens).
    finished: Vec<(f64, Vec<u32>)>,
    done: bool,
}

impl Sentence {
    fn finish(&mut self, tokens: Vec<u32>, score: f64, with_eos: bool, alpha: f64) {
        let len = tokens.len() + usize::from(with_eos);
        self.finished
            .push((score / length_penalty(len, alpha), tokens));
    }

    fn best(&self) -> Vec<u32> {
        let mut best: Option<&(f64, Vec<u32>)> = None;
        for f in &self.finished {
            if best.is_none_or(|b| f.0 > b.0) {
                best = Some(f);
            }
        }
        best.map(|b| b.1.clone()).unwrap_or_default()
    }
}

/// Beam search as the module header describes.
pub fn beam_search(
    dec: &mut dyn StepDecoder,
    n: usize,
    opts: &SearchOptions,
) -> Result<Vec<Vec<u32>>> {
    let k = opts.beam;
    let mut sents: Vec<Sentence> = (0..n)
        .map(|_| Sentence {
            live: vec![Hyp {
                tokens: Vec::new(),
                score: 0.0,
            }],
            ..Default::default()
        })
        .collect();
    for step in 0..opts.max_len {
        // Rows are the live hypotheses of the sentences not done, sentence by sentence.
        let tokens: Vec<u32> = sents
            .iter()
            .filter(|s| !s.done)
            .flat_map(|s| s.live.iter().map(|h| *h.tokens.last().unwrap_or(&opts.bos)))
            .collect();
        if tokens.is_empty() {
            break;
        }
        let lp = dec.step(&tokens)?;
        let vocab = lp.len() / tokens.len();
        let last_step = step + 1 == opts.max_len;
        let mut keep = Vec::new();
        let mut row0 = 0;
        for s in sents.iter_mut().filter(|s| !s.done) {
            let rows = s.live.len();
            // The best 2k extensions over this sentence's rows: (score, row, token).
            let mut cands: Vec<(f64, usize, u32)> = Vec::with_capacity(rows * 2 * k);
            for (r, h) in s.live.iter().enumerate() {
                let row = &lp[(row0 + r) * vocab..(row0 + r + 1) * vocab];
                for t in top_indices(row, 2 * k) {
                    cands.push((h.score + row[t] as f64, r, t as u32));
                }
            }
            // Best first; ties by row, then token, so beam 1 picks what greedy picks.
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut live = Vec::with_capacity(k);
            for (rank, &(score, r, t)) in cands.iter().take(2 * k).enumerate() {
                if t == opts.eos {
                    if rank < k {
                        s.finish(s.live[r].tokens.clone(), score, true, opts.length_penalty);
                    }
                    continue;
                }
                if live.len() < k {
                    let mut tokens = s.live[r].tokens.clone();
                    tokens.push(t);
                    live.push((row0 + r, Hyp { tokens, score }));
                }
            }
            row0 += rows;
            if s.finished.len() >= k || live.is_empty() {
                s.done = true;
                continue;
            }
            if last_step {
                for (_, h) in live {
                    s.finish(h.tokens, h.score, false, opts.length_penalty);
                }
                s.done = true;
                continue;
            }
            keep.extend(live.iter().map(|(row, _)| *row));
            s.live = live.into_iter().map(|(_, h)| h).collect();
        }
        if keep.is_empty() {
            break;
        }
        dec.keep_rows(&keep)?;
    }
    Ok(sents.iter().map(Sentence::best).collect())
}

/// The indices of the `m` largest values of `row`, best first (ties: lower index first).
fn top_indices(row: &[f32], m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let m = m.min(row.len());
    let cmp = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    if m < idx.len() {
        idx.select_nth_unstable_by(m, cmp);
        idx.truncate(m);
    }
    idx.sort_by(cmp);
    idx
}
