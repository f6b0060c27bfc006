//! `muse translate RUN`: open a translation run, translate a sentence or a file (greedy or
//! beam search), and `muse eval RUN` on a translation run: BLEU and chrF of its test split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::eval::{EvalReport, EvalRequest};
use super::family::{Family, detect};
use crate::data::parallel::load_parallel;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::translation::{SACREBLEU_VERSION, score_corpus, tok13a::py_rstrip};
use crate::models::seq2seq::{Seq2Seq, load_seq2seq};
use crate::run_dir::RunDir;
use crate::sample::attention_map::{AttentionMap, attention_map};
use crate::sample::translate::{source_ids, translate_batch, translate_texts};
use crate::tokenizer::TextTokenizer;
use crate::train::progress::Progress;
use crate::train::seq2seq::{Seq2SeqRunConfig, specials_of};

pub use crate::sample::translate::TranslateOptions;

/// What to translate.
#[derive(Clone, Debug)]
pub enum TranslateInput {
    /// One sentence given on the command line.
    Text(String),
    /// A UTF-8 file, one sentence a line.
    File(PathBuf),
}

/// What `muse translate RUN` was asked.
#[derive(Clone, Debug)]
pub struct TranslateRequest {
    pub model: PathBuf,
    pub input: TranslateInput,
    /// `-o`: write the translations here, one a line (else they are returned to print).
    pub output: Option<PathBuf>,
    /// `--attention`: draw the cross-attention of the translation of a single sentence here
    /// (PNG; `.svg` for one with the tokens written along the axes).
    pub attention: Option<PathBuf>,
    pub options: TranslateOptions,
    pub device: Device,
}

/// What a translation produced.
pub struct TranslateReport {
    /// The translations, one per input line (empty lines stay empty).
    pub translations: Vec<String>,
    /// Where they were written, with `-o`.
    pub written: Option<PathBuf>,
    /// The attention map written with `--attention`: its path and the tokens of its axes.
    pub attention: Option<(PathBuf, AttentionMap)>,
    pub seconds: f64,
}

/// A translation run, opened.
pub struct Translator {
    pub model: Seq2Seq,
    pub tokenizer: TextTokenizer,
    pub dir: PathBuf,
}

impl Translator {
    /// Opens the run in `dir`; anything other than a seq2seq run is a usage error.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let family = detect(dir)?;
        if family != Family::Seq2seq {
            return Err(Error::usage(format!(
                "{} holds {}, not a translation model: `muse translate` takes a run of `muse \
                 train seq2seq`",
                dir.display(),
                family.describe()
            )));
        }
        let run = RunDir::new(dir);
        let tokenizer = TextTokenizer::from_file(&run.tokenizer())?;
        let model = load_seq2seq(dir, device)
            .map_err(|e| Error::input(format!("cannot open {}: {e}", dir.display())))?;
        let sp = specials_of(&tokenizer)?;
        let cfg = model.config();
        if (sp.pad, sp.bos, sp.eos) != (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) {
            return Err(Error::input(format!(
                "{}: tokenizer.json and config.json disagree on the special token ids",
                dir.display()
            )));
        }
        Ok(Self {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
        })
    }

    /// The cross-attention map of the translation of `text`.
    pub fn attention(&self, text: &str, opts: &TranslateOptions) -> Result<AttentionMap> {
        let src = source_ids(&self.model, &self.tokenizer, text.trim())?;
        let out = translate_batch(&self.model, &[&src], opts)?;
        let out = out.into_iter().next().unwrap_or_default();
        attention_map(&self.model, &self.tokenizer, &src, &out)
    }

    /// Translates `texts` (empty lines stay empty), with a progress bar when `progress`.
    pub fn translate(
        &self,
        texts: &[String],
        opts: &TranslateOptions,
        progress: bool,
    ) -> Result<Vec<String>> {
        let todo: Vec<usize> = (0..texts.len())
            .filter(|&i| !texts[i].trim().is_empty())
            .collect();
        let sources: Vec<String> = todo.iter().map(|&i| texts[i].trim().to_string()).collect();
        let bar = progress.then(|| Progress::new("translate", 0, sources.len() as u64));
        let mut done = 0u64;
        let outs = translate_texts(&self.model, &self.tokenizer, &sources, opts, &mut |n| {
            done += n as u64;
            if let Some(b) = &bar {
                b.set(done);
            }
        })?;
        if let Some(b) = &bar {
            b.finish();
        }
        let mut all = vec![String::new(); texts.len()];
        for (i, o) in todo.into_iter().zip(outs) {
            // One translation a line, as sacreBLEU reads files.
            all[i] = py_rstrip(&o.replace(['\n', '\r'], " ")).to_string();
        }
        Ok(all)
    }
}

/// Translates what `req` asks for.
pub fn translate(req: &TranslateRequest) -> Result<TranslateReport> {
    check_options(&req.options)?;
    let texts = match &req.input {
        TranslateInput::Text(t) => vec![t.clone()],
        TranslateInput::File(path) => read_sentences(path)?,
    };
    if req.attention.is_some() && !matches!(req.input, TranslateInput::Text(_)) {
        return Err(Error::usage(
            "--attention draws the translation of one sentence: give the sentence, not --file",
        ));
    }
    let translator = Translator::open(&req.model, &req.device)?;
    let attention = match (&req.attention, &req.input) {
        (Some(path), TranslateInput::Text(text)) => {
            let map = translator.attention(text, &req.options)?;
            let bytes = match path.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("svg") => map.to_svg().into_bytes(),
                _ => map.to_png()?,
            };
            crate::io::write_atomic(path, &bytes)?;
            Some((path.clone(), map))
        }
        _ => None,
    };
    let t0 = Instant::now();
    let translations = translator.translate(&texts, &req.options, texts.len() > 1)?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(out) = &req.output {
        let mut body = translations.join("\n");
        body.push('\n');
        crate::io::write_atomic(out, body.as_bytes())?;
    }
    Ok(TranslateReport {
        translations,
        written: req.output.clone(),
        attention,
        seconds,
    })
}

fn check_options(opts: &TranslateOptions) -> Result<()> {
    if opts.beam == 0 {
        return Err(Error::usage(
            "--beam must be at least 1 (1 is greedy search; 4 or 5 is usual for beam search)",
        ));
    }
    if opts.batch_size == 0 {
        return Err(Error::usage("--batch-size must be at least 1"));
    }
    if !opts.length_penalty.is_finite() || opts.length_penalty < 0.0 {
        return Err(Error::usage(
            "--length-penalty must be a number >= 0 (0: none; 0.6 is GNMT's)",
        ));
    }
    Ok(())
}

/// The lines of a UTF-8 file, without line ends.
fn read_sentences(path: &Path) -> Result<Vec<String>> {
    if path.is_dir() {
        return Err(Error::usage(format!(
            "--file {} is a folder: pass a text file with one sentence a line",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::input(format!(
            "cannot read --file {}: {e}; pass an existing UTF-8 text file with one sentence a \
             line",
            path.display()
        ))
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    Ok(body
        .split('\n')
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

/// `muse eval RUN` on a translation run: greedy and beam translations of its test split (or
/// the first `--limit` sentences), scored as `muse eval --hyp --ref` scores files.
pub fn eval_translation(req: &EvalRequest) -> Result<EvalReport> {
    check_options(&TranslateOptions {
        beam: req.beam.max(1),
        ..Default::default()
    })?;
    if req.beam == 0 {
        return Err(Error::usage("--beam must be at least 1 (1: greedy only)"));
    }
    let translator = Translator::open(&req.model, &req.device)?;
    let record = RunDir::new(&req.model).read_training()?;
    let cfg: Seq2SeqRunConfig = serde_json::from_value(record.config).map_err(|e| {
        Error::input(format!(
            "{}: training.json holds no translation config: {e}",
            req.model.display()
        ))
    })?;
    let data = req.data.clone().unwrap_or(cfg.data.dataset.clone());
    let parallel = load_parallel(&data, cfg.data.reverse, cfg.data.split_seed)?;
    let mut test = parallel.splits.test;
    if let Some(n) = req.limit {
        if n == 0 {
            return Err(Error::usage("--limit must be at least 1"));
        }
        test.truncate(n);
    }
    let sources: Vec<String> = test.iter().map(|p| p.source.clone()).collect();
    let refs: Vec<String> = test
        .iter()
        .map(|p| py_rstrip(&p.target).to_string())
        .collect();
    let mut lines = vec![format!(
        "test split of {data}{}: {} sentences",
        if cfg.data.reverse { " (reversed)" } else { "" },
        test.len()
    )];
    let mut json =
        json!({ "data": data, "sentences": test.len(), "sacrebleu_version": SACREBLEU_VERSION });
    let mut searches = vec![("greedy".to_string(), 1)];
    if req.beam > 1 {
        searches.push((format!("beam {}", req.beam), req.beam));
    }
    for (name, beam) in searches {
        let opts = TranslateOptions {
            beam,
            batch_size: req.batch_size.max(1),
            ..Default::default()
        };
        let t0 = Instant::now();
        let hyps = translator.translate(&sources, &opts, true)?;
        let secs = t0.elapsed().as_secs_f64();
        let s = score_corpus(&hyps, &refs)?;
        let rate = test.len() as f64 / secs.max(1e-9);
        let lp = if beam > 1 {
            format!(", length penalty {}", opts.length_penalty)
        } else {
            String::new()
        };
        lines.push(format!("{name}{lp}: {rate:.1} sentences/s"));
        lines.extend(s.lines());
        let mut j = serde_json::to_value(&s).unwrap_or_default();
        if let Some(o) = j.as_object_mut() {
            o.insert("beam".into(), beam.into());
            o.insert("sentences_per_s".into(), rate.into());
        }
        json[name.replace(' ', "_")] = j;
    }
    Ok(EvalReport { lines, json })
}
