//! `muse train FAMILY`: one request type for every family, resolved in one way
//! ([`super::resolve`]), dispatched once, and summed up in one report the CLI prints.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::family::Family;
use super::resolve::{ConfigRequest, FlagSet, Resolved, StartMode, resolve_config};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::run_dir::OnExisting;

/// Everything `muse train FAMILY` can be told.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub family: Family,
    /// Preset, `--config`, flag overrides and `--set`s.
    pub config: ConfigRequest,
    /// `--seed`: weights, data order, dropout and sampling.
    pub seed: Option<u64>,
    /// `--max-steps`: train exactly this many optimizer steps.
    pub max_steps: Option<u64>,
    /// `--out` [default: `runs/<preset>` for GPT, `runs/<family>-<preset>` otherwise].
    pub out: Option<PathBuf>,
    pub mode: StartMode,
    /// `--print-config`: resolve, print, train nothing.
    pub print_config: bool,
    /// GPT: training text (dataset name or file) [default: tinyshakespeare; on resume, the
    /// run's own].
    pub text_data: Option<String>,
    /// GPT: continue pretraining from this run or Hugging Face GPT-2 folder.
    pub init: Option<PathBuf>,
    /// GAN: the objective (`bce`, `wgan-gp`), which also changes the critic and optimizer.
    pub gan_loss: Option<String>,
    /// GAN: the classifier for the coverage check while training.
    pub classifier: ClassifierChoice,
    pub device: Device,
}

/// Which reference classifier judges images while training.
#[derive(Clone, Debug, Default)]
pub enum ClassifierChoice {
    /// `runs/classifier-<dataset>` when it exists (a note otherwise).
    #[default]
    Default,
    /// This run folder (an error when missing).
    At(PathBuf),
    /// None: `--no-classifier`.
    Off,
}

impl TrainRequest {
    /// A request with every option at its default.
    pub fn new(family: Family, device: Device) -> Self {
        Self {
            family,
            config: ConfigRequest::default(),
            seed: None,
            max_steps: None,
            out: None,
            mode: StartMode::New,
            print_config: false,
            text_data: None,
            init: None,
            gan_loss: None,
            classifier: ClassifierChoice::Default,
            device,
        }
    }
}

/// What `muse train` did.
pub enum TrainOutcome {
    /// `--print-config`: the resolved configuration as TOML.
    Config(String),
    Trained(TrainSummary),
}

/// A finished run, said in words.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// One line: steps, time, final figures (stderr).
    pub done: String,
    /// The result a script reads: a sample, a test figure (stdout).
    pub output: Vec<String>,
    /// Commands worth running next.
    pub next: String,
}

/// Resolves and trains what `req` asks for.
pub fn train(req: TrainRequest) -> Result<TrainOutcome> {
    match req.family {
        Family::Gpt => gpt(req),
        Family::Classifier => classifier(req),
        Family::Vae => vae(req),
        Family::Gan => gan(req),
        Family::Diffusion => diffusion(req),
        Family::Seq2seq => seq2seq(req),
        other => Err(Error::usage(format!(
            "`muse train` does not train {}: start from a Muse GPT run with `muse train gpt \
             --init`, or fine-tune it with `muse finetune`",
            other.describe()
        ))),
    }
}

/// The `--out` folder of a request.
fn out_dir(req: &TrainRequest, default_preset: &str) -> PathBuf {
    req.out.clone().unwrap_or_else(|| {
        let preset = req.config.preset.as_deref().unwrap_or(default_preset);
        match req.family {
            Family::Gpt => PathBuf::from("runs").join(preset),
            f => PathBuf::from("runs").join(format!("{f}-{preset}")),
        }
    })
}

/// The config request with `--seed` and `--max-steps` as overrides: the seed must match a
/// resumed run's, the step count may change.
fn with_loop_flags(req: &TrainRequest, steps_key: &str) -> ConfigRequest {
    let mut c = req.config.clone();
    if let Some(seed) = req.seed {
        c.flags.push(FlagSet::new("--seed", "train.seed", seed));
    }
    if let Some(n) = req.max_steps {
        c.sets.insert(0, format!("{steps_key}={n}"));
    }
    c
}

/// What a training request comes to once its configuration is resolved.
enum Prepared<C> {
    /// Train with this configuration.
    Run(Resolved<C>),
    /// `--print-config`: the resolved configuration as TOML, nothing trained.
    PrintConfig(String),
    /// `--resume` of a run whose checkpoint already reached the step count.
    Complete(TrainSummary),
}

/// Resolves, validates and says what will run.
fn prepare<C: Serialize + serde::de::DeserializeOwned>(
    req: &TrainRequest,
    out: &Path,
    steps_key: &str,
    default_preset: &str,
    start_only: &[&str],
    preset: impl Fn(&str) -> Result<C>,
    validate: impl Fn(&C) -> Result<()>,
) -> Result<Prepared<C>> {
    let creq = with_loop_flags(req, steps_key);
    let r = resolve_config(
        req.family.as_str(),
        out,
        req.mode,
        &creq,
        default_preset,
        start_only,
        preset,
    )?;
    if req.print_config {
        return Ok(Prepared::PrintConfig(toml::to_string(&r.config).map_err(
            |e| Error::usage(format!("cannot print the config: {e}")),
        )?));
    }
    validate(&r.config)?;
    if r.on_existing == OnExisting::Resume
        && let Some(total) = step_count(&r.config, steps_key)?
        && let Some(done) = already_complete(out, total, steps_key)?
    {
        return Ok(Prepared::Complete(done));
    }
    for note in &r.notes {
        tracing::info!("{note}");
    }
    tracing::info!("run: {}  preset: {}", out.display(), r.preset);
    tracing::debug!(
        "resolved configuration:\n{}",
        toml::to_string(&r.config).unwrap_or_default()
    );
    Ok(Prepared::Run(r))
}

/// The value of the step-count key (`train.max_steps`, say) in a resolved configuration;
/// `None` when it is 0, as image families say "count in epochs" (their loop then knows the
/// total and trains nothing past it).
fn step_count<C: Serialize>(config: &C, key: &str) -> Result<Option<u64>> {
    let value = serde_json::to_value(config).map_err(|e| Error::usage(e.to_string()))?;
    let steps = key
        .split('.')
        .try_fold(&value, |v, part| v.get(part))
        .and_then(|v| v.as_u64())
        .ok_or_else(|| Error::usage(format!("the configuration has no step count '{key}'")))?;
    Ok((steps > 0).then_some(steps))
}

fn gpt(req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::gpt::{GptRunConfig, GptTrainJob, train_gpt_from};
    let out = out_dir(&req, "char-baby");
    let init_model = match (&req.init, req.mode) {
        (Some(dir), m)
            if m != StartMode::Resume || !crate::run_dir::RunDir::new(&out).state().is_file() =>
        {
            Some(init_architecture(dir)?)
        }
        _ => None,
    };
    let preset = |name: &str| {
        let mut p = GptRunConfig::preset(name)?;
        if let Some(m) = &init_model {
            p.model = m.clone();
        }
        Ok(p)
    };
    let r = match prepare(
        &req,
        &out,
        "train.max_iters",
        "char-baby",
        &[],
        preset,
        |c: &GptRunConfig| {
            c.validate()?;
            check_training_memory(c)
        },
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let resuming = r.on_existing == OnExisting::Resume;
    let data = match (&req.text_data, &r.record) {
        (Some(d), _) => d.clone(),
        (None, Some(rec)) => rec.dataset.path.clone(),
        (None, None) => "tinyshakespeare".into(),
    };
    let preset_name = match (&req.init, resuming) {
        (Some(dir), false) => format!("{} (init from {})", r.preset, dir.display()),
        _ => r.preset.clone(),
    };
    let job = GptTrainJob {
        out,
        preset: preset_name,
        config: r.config,
        data,
        on_existing: r.on_existing,
        device: req.device.clone(),
    };
    let init = req.init.as_deref().filter(|_| !resuming);
    let report = train_gpt_from(job, init)?;
    let dir = report.run_dir.display().to_string();
    let mut output = Vec::new();
    if let Some(text) = report.sample {
        output.push(format!("--- sample ({}) ---", crate::AI_GENERATED_NOTICE));
        output.push(text);
    }
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | train {:.4} | val {:.4} | run in {dir}",
            report.steps, report.train_seconds, report.train_loss, report.val_loss
        ),
        output,
        next: format!("muse sample {dir} --prompt \"ROMEO:\"   |   muse eval {dir}"),
        run_dir: report.run_dir,
    }))
}

/// Refuses a GPT configuration whose training step cannot fit in the memory this machine has
/// left, before any folder or tensor is made.
fn check_training_memory(cfg: &crate::train::gpt::GptRunConfig) -> Result<()> {
    let need = crate::train::gpt::training_bytes(&cfg.model, cfg.train.batch_size);
    let Some(avail) = crate::device::available_memory() else {
        return Ok(());
    };
    if need <= avail {
        return Ok(());
    }
    let m = &cfg.model;
    Err(Error::usage(format!(
        "a training step of this model needs about {:.1} GB (batch {} x context {} tokens, {} \
         layers of width {}) and this machine has {:.1} GB available: lower n_positions or \
         batch_size (--set n_positions=N, --set batch_size=N)",
        need as f64 / 1e9,
        cfg.train.batch_size,
        m.n_positions,
        m.n_layer,
        m.n_embd,
        avail as f64 / 1e9
    )))
}

/// A resumed run whose checkpoint already reached `total` steps: nothing to train, and the
/// recorded figures stay as they are (evaluating again would change them).
fn already_complete(out: &Path, total: u64, steps_key: &str) -> Result<Option<TrainSummary>> {
    let state: crate::train::checkpoint::TrainState =
        crate::io::read_json(&crate::run_dir::RunDir::new(out).state())?;
    if state.step < total {
        return Ok(None);
    }
    let dir = out.display().to_string();
    let val = state
        .last_val_loss
        .map_or(String::new(), |v| format!(" | val {v:.4}"));
    Ok(Some(TrainSummary {
        run_dir: out.to_path_buf(),
        done: format!(
            "{dir} is already complete at step {} (of {total}){val}: nothing to do; raise the \
             step count (--max-steps N or --set {key}=N) to train further",
            state.step,
            key = steps_key.rsplit('.').next().unwrap_or(steps_key)
        ),
        output: Vec::new(),
        next: format!("muse sample {dir}   |   muse eval {dir}"),
    }))
}

/// The architecture of an `--init` folder; only the GPT-2 family trains in this loop.
fn init_architecture(dir: &Path) -> Result<crate::models::gpt::GptConfig> {
    use crate::models::pretrained::{ModelConfig, without_backtrace};
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "--init {}: no such folder (give a Muse GPT run or a Hugging Face GPT-2 folder)",
            dir.display()
        )));
    }
    let family = super::family::detect(dir)?;
    if !family.is_text() {
        return Err(Error::usage(format!(
            "--init {}: the folder holds {}; continued pretraining starts from a GPT run or a \
             Hugging Face GPT-2 folder",
            dir.display(),
            family.describe()
        )));
    }
    match ModelConfig::read(&dir.join("config.json")).map_err(without_backtrace) {
        Ok(ModelConfig::Gpt(c)) => Ok(c),
        Ok(other) => Err(Error::usage(format!(
            "--init {}: continued pretraining with `muse train gpt` takes GPT-2-family models; \
             this is a {} model (it loads for sample, chat and export)",
            dir.display(),
            other.model_type()
        ))),
        Err(e) => Err(Error::input(format!("--init: {e}"))),
    }
}

fn classifier(req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::classifier::{ClassifierRunConfig, ClassifierTrainJob, train_classifier};
    // The data names the default preset: fashion-mnist data, fashion-mnist preset.
    let asks_fashion = req
        .config
        .flags
        .iter()
        .any(|f| f.set == "data.dataset=fashion-mnist");
    let default = if asks_fashion {
        "fashion-mnist"
    } else {
        "mnist"
    };
    let out = out_dir(&req, default);
    let r = match prepare(
        &req,
        &out,
        "train.max_steps",
        default,
        &[],
        ClassifierRunConfig::preset,
        |c: &ClassifierRunConfig| c.validate(),
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let report = train_classifier(ClassifierTrainJob {
        out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: req.device.clone(),
    })?;
    let dir = report.run_dir.display().to_string();
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | test loss {:.4} | test accuracy {:.2}% | run in {dir}",
            report.steps,
            report.train_seconds,
            report.test.loss,
            report.test.accuracy * 100.0
        ),
        output: vec![format!(
            "test accuracy {:.2}%",
            report.test.accuracy * 100.0
        )],
        next: format!("muse eval {dir}   |   muse eval RUN --classifier {dir}"),
        run_dir: report.run_dir,
    }))
}

fn vae(req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::vae::{VaeRunConfig, VaeTrainJob, train_vae};
    let out = out_dir(&req, "mnist-mlp");
    let r = match prepare(
        &req,
        &out,
        "train.max_steps",
        "mnist-mlp",
        &[],
        VaeRunConfig::preset,
        |c: &VaeRunConfig| c.validate(),
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let report = train_vae(VaeTrainJob {
        out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: req.device.clone(),
    })?;
    let dir = report.run_dir.display().to_string();
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | train {:.2} | test loss {:.2} (bce {:.2} + kl {:.2}) \
             per image | run in {dir}",
            report.steps,
            report.train_seconds,
            report.train_loss,
            report.test.loss,
            report.test.bce,
            report.test.kl
        ),
        output: vec![
            format!("test loss {:.2} nats per image", report.test.loss),
            format!("samples: {dir}/samples/ ({})", crate::AI_GENERATED_NOTICE),
        ],
        next: format!("muse sample {dir} --n 64 -o grid.png   |   muse eval {dir}"),
        run_dir: report.run_dir,
    }))
}

fn gan(mut req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::gan::{GanLoss, GanRunConfig, GanTrainJob, train_gan};
    let loss = req.gan_loss.as_deref().map(GanLoss::parse).transpose()?;
    if let Some(l) = loss {
        // On resume the objective must be the stored one; new runs get it from the preset.
        let value = serde_json::to_value(l).map_err(|e| Error::usage(e.to_string()))?;
        let value = value.as_str().unwrap_or_default().to_string();
        if req.mode == StartMode::Resume {
            req.config
                .flags
                .push(FlagSet::new("--loss", "gan.loss", value));
        }
    }
    let out = out_dir(&req, "dcgan-mnist");
    let preset = |name: &str| {
        let cfg = GanRunConfig::preset(name)?;
        Ok(match loss {
            Some(l) => cfg.with_loss(l),
            None => cfg,
        })
    };
    let r = match prepare(
        &req,
        &out,
        "train.max_steps",
        "dcgan-mnist",
        &[],
        preset,
        |c: &GanRunConfig| c.validate(),
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let classifier = match &req.classifier {
        ClassifierChoice::Off => None,
        ClassifierChoice::At(dir) => Some(
            crate::eval::image::open_classifier(Some(dir), &r.config.data.dataset, &req.device)?.0,
        ),
        ClassifierChoice::Default => {
            let dataset = &r.config.data.dataset;
            let default = crate::eval::image::default_classifier_dir(dataset);
            if default.join("model.safetensors").is_file() {
                Some(crate::eval::image::open_classifier(None, dataset, &req.device)?.0)
            } else {
                tracing::warn!(
                    "no classifier at {}, so no class-coverage check while training (train one \
                     with `muse train classifier --data {dataset}`, or pass --classifier RUN)",
                    default.display()
                );
                None
            }
        }
    };
    let report = train_gan(
        GanTrainJob {
            out,
            preset: r.preset,
            config: r.config,
            on_existing: r.on_existing,
            device: req.device.clone(),
        },
        classifier.as_ref(),
    )?;
    let cov = report.quality.as_ref().map_or(String::new(), |q| {
        let acc = q.label_accuracy.map_or(String::new(), |a| {
            format!(" | label accuracy {:.1}%", 100.0 * a)
        });
        format!(" | coverage {}/{}{acc}", q.classes_found, q.n_classes)
    });
    let dir = report.run_dir.display().to_string();
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | D {:.4} | G {:.4}{cov} | run in {dir}",
            report.steps, report.train_seconds, report.last.loss_d, report.last.loss_g
        ),
        output: vec![format!("samples: {}", report.grid.display())],
        next: format!("muse sample {dir} --n 64 -o grid.png   |   muse eval {dir}"),
        run_dir: report.run_dir,
    }))
}

fn diffusion(req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::diffusion::{
        DiffusionRunConfig, DiffusionTrainJob, START_ONLY_KEYS, train_diffusion,
    };
    let out = out_dir(&req, "ddpm-mnist");
    let r = match prepare(
        &req,
        &out,
        "train.max_steps",
        "ddpm-mnist",
        START_ONLY_KEYS,
        DiffusionRunConfig::preset,
        |c: &DiffusionRunConfig| c.validate(),
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let ask = match (&r.config.text, r.config.data.dataset.contains("fashion")) {
        (Some(_), true) => " --prompt \"a green ankle boot\" --guidance 4",
        (Some(_), false) => " --prompt \"a digit 7 in green\" --guidance 4",
        (None, _) => "",
    };
    let report = train_diffusion(DiffusionTrainJob {
        out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: req.device.clone(),
    })?;
    let dir = report.run_dir.display().to_string();
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | loss {:.4} | test {:.4} | run in {dir}",
            report.steps, report.train_seconds, report.train_loss, report.test.loss
        ),
        output: vec![format!("samples: {}", report.grid.display())],
        next: format!(
            "muse sample {dir}{ask} --sampler ddim --steps 50 -o grid.png --trajectory strip.png"
        ),
        run_dir: report.run_dir,
    }))
}

fn seq2seq(req: TrainRequest) -> Result<TrainOutcome> {
    use crate::train::seq2seq::{Seq2SeqRunConfig, Seq2SeqTrainJob, train_seq2seq};
    let out = out_dir(&req, "tatoeba-en-fr");
    let r = match prepare(
        &req,
        &out,
        "train.max_iters",
        "tatoeba-en-fr",
        &[],
        Seq2SeqRunConfig::preset,
        |c: &Seq2SeqRunConfig| c.validate(),
    )? {
        Prepared::Run(r) => r,
        Prepared::PrintConfig(toml) => return Ok(TrainOutcome::Config(toml)),
        Prepared::Complete(done) => return Ok(TrainOutcome::Trained(done)),
    };
    let report = train_seq2seq(Seq2SeqTrainJob {
        out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: req.device.clone(),
    })?;
    let dir = report.run_dir.display().to_string();
    Ok(TrainOutcome::Trained(TrainSummary {
        done: format!(
            "done: {} steps in {:.0} s | loss {:.4} | val {:.4} | run in {dir}",
            report.steps, report.train_seconds, report.train_loss, report.val_loss
        ),
        output: vec![
            format!(
                "--- greedy translations of validation sentences ({}) ---",
                crate::AI_GENERATED_NOTICE
            ),
            report.sample.trim_end().to_string(),
        ],
        next: format!("muse translate {dir} \"How are you?\"   |   muse eval {dir}"),
        run_dir: report.run_dir,
    }))
}
