//! `muse sample RUN` for image models: PNG grids and strips, labelled as AI-generated.

use std::path::{Path, PathBuf};

use muse_core::Error;
use muse_core::data::images::grid::{read_image, write_grid, write_strip};
use muse_core::device::Device;
use muse_core::sample::vae::{
    add_noise, interpolate, open_vae, pick, prior_samples, reconstruct, with_reconstruction,
};

/// Flags for image models.
#[derive(clap::Args)]
#[command(next_help_heading = "Image models (vae, gan, diffusion)")]
pub struct ImageArgs {
    /// Images to draw from the prior (or test images for --reconstruct / --denoise-test).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// The PNG to write [default: samples.png].
    #[arg(short = 'o', long = "out", value_name = "PNG")]
    pub out: Option<PathBuf>,
    /// Images per row of the grid [default: about the square root of --n].
    #[arg(long)]
    pub nrow: Option<usize>,
    /// VAE: the first --n test images (top row) above their reconstructions.
    #[arg(long)]
    pub reconstruct: bool,
    /// VAE: decode the straight latent path from test image I to test image J, as a strip.
    #[arg(long, num_args = 2, value_names = ["I", "J"])]
    pub interpolate: Option<Vec<usize>>,
    /// Points on the --interpolate path, both ends included [default: 10]; diffusion: model
    /// evaluations of the chain [default: 50 for ddim, T for ddpm].
    #[arg(long)]
    pub steps: Option<usize>,
    /// VAE: denoise this PNG/JPEG image (resized to the model's size); writes it beside the
    /// model's reconstruction.
    #[arg(long, value_name = "IMAGE")]
    pub denoise: Option<PathBuf>,
    /// VAE: corrupt --n test images with Gaussian noise of this standard deviation and denoise
    /// them; rows: clean, noisy, denoised.
    #[arg(long, value_name = "SIGMA")]
    pub denoise_test: Option<f64>,
    /// Where the test images come from (NAME[:split] or a folder) [default: the run's dataset].
    #[arg(long)]
    pub data: Option<String>,
    /// GAN, diffusion: draw every image of this class (class-conditional runs, e.g. --label 7).
    #[arg(long)]
    pub label: Option<usize>,
}

impl ImageArgs {
    /// `--out`, or `samples.png`.
    pub fn out_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("samples.png"))
    }

    /// `--nrow`, or the ceiling of the square root of `n`.
    pub fn nrow_for(&self, n: usize) -> usize {
        self.nrow
            .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
            .max(1)
    }
}

/// Samples a VAE run as the flags say.
pub fn run_vae(dir: &Path, a: ImageArgs, seed: u64, device: &Device) -> anyhow::Result<()> {
    if a.n == 0 {
        anyhow::bail!(Error::usage("--n must be at least 1"));
    }
    let modes = [
        a.reconstruct,
        a.interpolate.is_some(),
        a.denoise.is_some(),
        a.denoise_test.is_some(),
    ];
    if modes.iter().filter(|&&m| m).count() > 1 {
        anyhow::bail!(Error::usage(
            "choose one of --reconstruct, --interpolate, --denoise, --denoise-test"
        ));
    }
    let vae = open_vae(dir, device)?;
    let out = a.out_path();
    let cfg = vae.model.config();
    let what = if a.reconstruct {
        let test = vae.test_images(a.data.as_deref())?;
        let idx: Vec<usize> = (0..a.n.min(test.len())).collect();
        let x = pick(&test, &idx, device)?;
        let r = reconstruct(&vae.model, &x)?;
        write_strip(
            &out,
            &[x, r],
            Some("top: test images; bottom: VAE reconstructions"),
        )?;
        format!("{} test images and their reconstructions", idx.len())
    } else if let Some(ij) = &a.interpolate {
        let test = vae.test_images(a.data.as_deref())?;
        let (i, j) = (ij[0], ij[1]);
        let a_img = pick(&test, &[i], device)?;
        let b_img = pick(&test, &[j], device)?;
        let steps = a.steps.unwrap_or(10);
        let path = interpolate(&vae.model, &a_img, &b_img, steps)?;
        write_grid(
            &out,
            &path,
            steps,
            Some(&format!(
                "VAE latent interpolation between test images {i} and {j}"
            )),
        )?;
        format!("a {steps}-step latent walk from test image {i} to {j}")
    } else if let Some(file) = &a.denoise {
        let x = read_image(file, cfg.image_size, cfg.channels)?.to_device(device)?;
        write_grid(
            &out,
            &with_reconstruction(&vae.model, &x)?,
            2,
            Some(&format!(
                "left: {}; right: VAE reconstruction",
                file.display()
            )),
        )?;
        format!("{} and its reconstruction", file.display())
    } else if let Some(sigma) = a.denoise_test {
        if !(sigma >= 0.0 && sigma.is_finite()) {
            anyhow::bail!(Error::usage("--denoise-test SIGMA must be a number >= 0"));
        }
        let test = vae.test_images(a.data.as_deref())?;
        let idx: Vec<usize> = (0..a.n.min(test.len())).collect();
        let clean = pick(&test, &idx, device)?;
        let noisy = add_noise(&clean, sigma, seed)?;
        let denoised = reconstruct(&vae.model, &noisy)?;
        write_strip(
            &out,
            &[clean, noisy, denoised],
            Some(&format!(
                "rows: test images, with noise sigma {sigma}, VAE reconstructions"
            )),
        )?;
        format!("{} test images with noise {sigma}, denoised", idx.len())
    } else {
        let images = prior_samples(&vae.model, a.n, seed, device)?;
        write_grid(
            &out,
            &images,
            a.nrow_for(a.n),
            Some(&format!("VAE samples from the prior, seed {seed}")),
        )?;
        format!("{} samples from the prior", a.n)
    };
    println!(
        "wrote {} ({what}; {})",
        out.display(),
        muse_core::AI_GENERATED_NOTICE
    );
    Ok(())
}
