//! `muse sample MODEL`: parse the flags of every family, call `run::sample`, print. Text
//! streams to stdout token by token; images are written as PNG.

use std::io::Write;
use std::path::PathBuf;

use muse_core::run::generation::{Sampler, StopReason, Watermark, generate};
use muse_core::run::{
    DiffusionRequest, ImageRequest, SamplePlan, SampleRequest, TextRequest, TextSession,
};

use super::common::{DeviceArgs, WatermarkArgs};

/// Generate from a trained run or a Hugging Face model folder. Text streams to stdout; images
/// go to a PNG; every output is labelled as AI-generated. Flags of another family than the
/// model's are refused.
#[derive(clap::Args)]
pub struct Args {
    /// The run directory (`muse train --out`), a Hugging Face model folder (gpt2, llama), or a
    /// llama2.c checkpoint file (.bin, with --tokenizer).
    run: PathBuf,
    /// Seed of the sampling random stream (same seed, same output).
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    text: TextArgs,
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    diffusion: DiffusionArgs,
    #[command(flatten)]
    watermark: WatermarkArgs,
}

/// Flags only diffusion models take (with --n, --steps, --label, -o from the image flags).
#[derive(clap::Args)]
#[command(next_help_heading = "Diffusion models")]
struct DiffusionArgs {
    /// ddim (deterministic for a seed with --eta 0) or ddpm (ancestral, stochastic)
    /// [default: ddim].
    #[arg(long)]
    sampler: Option<String>,
    /// DDIM noise: 0 is deterministic, 1 is DDPM-like [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    eta: Option<f64>,
    /// Also write this PNG: x_t (top) and the predicted x_0 (bottom) of the first images at
    /// 10 points of the chain, noise turning into an image from left to right.
    #[arg(long, value_name = "PNG")]
    trajectory: Option<PathBuf>,
    /// Classifier-free guidance weight for a conditional model: eps_u + w (eps_c - eps_u);
    /// 1 is the conditional model alone, 0 ignores the label [default: 3].
    #[arg(long, allow_negative_numbers = true)]
    guidance: Option<f64>,
    /// Image-to-image: start from this PNG (the model's size; greyscale for greyscale models),
    /// noised part-way by --strength, and let the model redraw it (SDEdit).
    #[arg(long, value_name = "PNG")]
    init: Option<PathBuf>,
    /// How far towards noise the --init image goes before denoising: 1 keeps only its rough
    /// layout, small values only touch up detail [default: 0.6, with --mask 1].
    #[arg(long, allow_negative_numbers = true)]
    strength: Option<f64>,
    /// Inpainting with --init: black pixels of this PNG are kept exactly, white ones are
    /// painted by the model.
    #[arg(long, value_name = "PNG")]
    mask: Option<PathBuf>,
}

/// Flags for text models.
#[derive(clap::Args)]
#[command(next_help_heading = "Text models (gpt, gpt2, llama)")]
struct TextArgs {
    /// Text to continue [default: a newline]. Longer than the model's context: only its end
    /// is used. For a text-to-image diffusion run: the picture to draw ("a green ankle boot")
    /// [default: one prompt per class and colour].
    #[arg(long, short)]
    prompt: Option<String>,
    /// New tokens to generate (at most) [default: 500].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Softmax temperature: lower is more conservative; 0 always takes the likeliest token
    /// [default: 0.8].
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sample only among the k likeliest tokens (0: no limit) [default: 200].
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only among the likeliest tokens whose probabilities add up to p (1: no limit)
    /// [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Penalise tokens already in the context (1: off; 1.1-1.3 reduces loops) [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// Stop when the output contains this text (repeatable); the stop text is not printed.
    /// `\n`, `\t` and `\\` stand for a newline, a tab and a backslash.
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Independent samples to draw, one after another [default: 1].
    #[arg(long)]
    num_samples: Option<usize>,
    /// Instead of sampling, print the most likely continuation by beam search with N
    /// hypotheses (1: greedy); finished ones are ranked by log-probability over GNMT's
    /// length penalty ((5 + length) / 6)^alpha. Temperature, top-k and top-p do not apply.
    #[arg(long, value_name = "N")]
    beam: Option<usize>,
    /// The length-penalty exponent alpha of --beam [default: 0.6].
    #[arg(long, value_name = "ALPHA", requires = "beam")]
    length_penalty: Option<f64>,
    /// After each generated token, print the 5 likeliest candidates with their probabilities
    /// (softmax at the sampling temperature, before top-k/top-p), one token per line.
    #[arg(long)]
    show_probs: bool,
    /// Tokenizer to use instead of the folder's: a tokenizer.json, a SentencePiece
    /// tokenizer.model, a llama2.c tokenizer.bin (required for a llama2.c .bin checkpoint), or
    /// a folder holding one.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A LoRA adapter folder (adapter_config.json + adapter.safetensors, as `muse finetune
    /// --lora` or PEFT write) to apply over the model; a run's own adapter is applied anyway.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

/// Flags for image models.
#[derive(clap::Args)]
#[command(next_help_heading = "Image models (vae, gan, diffusion)")]
struct ImageArgs {
    /// Images to draw (or test images for --reconstruct / --denoise-test) [default: 64].
    #[arg(long)]
    n: Option<usize>,
    /// The PNG to write [default: samples.png].
    #[arg(short = 'o', long = "out", value_name = "PNG")]
    out: Option<PathBuf>,
    /// Images per row of the grid [default: about the square root of --n].
    #[arg(long)]
    nrow: Option<usize>,
    /// VAE: the first --n test images (top row) above their reconstructions.
    #[arg(long)]
    reconstruct: bool,
    /// VAE: decode the straight latent path from test image I to test image J, as a strip.
    #[arg(long, num_args = 2, value_names = ["I", "J"])]
    interpolate: Option<Vec<usize>>,
    /// VAE: points on the --interpolate path, both ends included [default: 10]. Diffusion:
    /// model evaluations of the chain [default: 50 for ddim, T for ddpm].
    #[arg(long)]
    steps: Option<usize>,
    /// VAE: denoise this PNG/JPEG image (resized to the model's size); writes it beside the
    /// model's reconstruction.
    #[arg(long, value_name = "IMAGE")]
    denoise: Option<PathBuf>,
    /// VAE: corrupt --n test images with Gaussian noise of this standard deviation and denoise
    /// them; rows: clean, noisy, denoised.
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    denoise_test: Option<f64>,
    /// VAE: where the test images come from (NAME[:split] or a folder) [default: the run's
    /// dataset].
    #[arg(long)]
    data: Option<String>,
    /// GAN, diffusion: draw every image of this class (class-conditional runs, e.g.
    /// --label 7).
    #[arg(long)]
    label: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let t = a.text;
    let i = a.image;
    let req = SampleRequest {
        model: a.run,
        seed: a.seed,
        text: TextRequest {
            prompt: t.prompt,
            max_tokens: t.max_tokens,
            temperature: t.temperature,
            top_k: t.top_k,
            top_p: t.top_p,
            repetition_penalty: t.repetition_penalty,
            stop: t.stop,
            num_samples: t.num_samples,
            show_probs: t.show_probs,
            tokenizer: t.tokenizer,
            adapter: t.adapter,
            beam: t.beam,
            length_penalty: t.length_penalty,
        },
        image: ImageRequest {
            n: i.n,
            out: i.out,
            nrow: i.nrow,
            reconstruct: i.reconstruct,
            interpolate: i.interpolate.map(|v| (v[0], v[1])),
            steps: i.steps,
            denoise: i.denoise,
            denoise_test: i.denoise_test,
            data: i.data,
            label: i.label,
        },
        diffusion: DiffusionRequest {
            sampler: a.diffusion.sampler,
            eta: a.diffusion.eta,
            trajectory: a.diffusion.trajectory,
            guidance: a.diffusion.guidance,
            init: a.diffusion.init,
            strength: a.diffusion.strength,
            mask: a.diffusion.mask,
        },
        device: a.device.device()?,
    };
    let watermark = a.watermark.watermark()?;
    match muse_core::run::sample(req)? {
        SamplePlan::Images { path, what } => {
            println!(
                "wrote {} ({what}; {})",
                path.display(),
                muse_core::AI_GENERATED_NOTICE
            );
            Ok(())
        }
        SamplePlan::Text(session) => stream_text(&session, watermark),
    }
}

/// Streams each sample to stdout, or a table of candidates with `--show-probs`.
fn stream_text(s: &TextSession, watermark: Option<Watermark>) -> anyhow::Result<()> {
    if s.beam.is_some() {
        if watermark.is_some() {
            anyhow::bail!(muse_core::Error::usage(
                "--beam decodes deterministically, so it carries no watermark: drop \
                 --watermark-key or --beam"
            ));
        }
        let text = muse_core::run::sample::beam_text(s)?;
        println!("[{}]", muse_core::AI_GENERATED_NOTICE);
        println!("{}{text}", s.prompt);
        return Ok(());
    }
    let show_probs = s.options.candidates > 0;
    if watermark.is_some() {
        eprintln!("note: watermarked; `muse detect --key ... --tokenizer MODEL` finds it");
    }
    let mut sampler = Sampler::new(s.params.clone(), s.seed).with_watermark(watermark);
    // The label goes to stdout too, so a saved or piped sample carries it.
    println!("[{}]", muse_core::AI_GENERATED_NOTICE);
    for i in 0..s.num_samples {
        if s.num_samples > 1 {
            println!("--- sample {} ---", i + 1);
        }
        let mut out = std::io::stdout().lock();
        if show_probs {
            writeln!(
                out,
                "prompt {:?}\nstep  chosen      <- 5 likeliest candidates",
                s.prompt
            )?;
        } else {
            write!(out, "{}", s.prompt)?;
        }
        let tokenizer = &s.model.tokenizer;
        let mut step = 0;
        let g = generate(
            s.model.model.as_ref(),
            tokenizer,
            &s.prompt_ids,
            &s.options,
            &mut sampler,
            &mut |ev| {
                let io = muse_core::Error::io("stdout");
                if show_probs {
                    step += 1;
                    let chosen = format!("{:?}", tokenizer.decode(&[ev.id])?);
                    let cands: Vec<String> = ev
                        .candidates
                        .iter()
                        .map(|(t, p)| format!("{t:?} {:.1}%", p * 100.0))
                        .collect();
                    writeln!(out, "{step:>4}  {chosen:<10}  <- {}", cands.join("  ")).map_err(io)
                } else {
                    write!(out, "{}", ev.text)
                        .and_then(|()| out.flush())
                        .map_err(io)
                }
            },
        )?;
        writeln!(out)?;
        let why = match g.reason {
            StopReason::MaxTokens => "max tokens",
            StopReason::EndOfText => "end of text",
            StopReason::StopString => "stop string",
        };
        eprintln!(
            "[{} tokens in {:.2} s, {:.1} tokens/s, stopped at {why}]",
            g.ids.len(),
            g.seconds,
            g.ids.len() as f64 / g.seconds.max(1e-9)
        );
    }
    Ok(())
}
