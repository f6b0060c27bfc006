//! Flags and printing several subcommands share.

use muse_core::run::TrainOutcome;

/// `--device`.
#[derive(clap::Args, Clone)]
pub struct DeviceArgs {
    /// Where to run: cpu, cuda, cuda:N, or auto (CUDA when built with it and present).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl DeviceArgs {
    pub fn device(&self) -> muse_core::Result<muse_core::device::Device> {
        muse_core::device::parse_device(&self.device)
    }
}

/// Prints what a training command did: the config for `--print-config`; else the summary to
/// stderr, the result (a sample, a figure) to stdout, and what to run next.
pub fn print_outcome(outcome: TrainOutcome) {
    match outcome {
        TrainOutcome::Config(toml) => print!("{toml}"),
        TrainOutcome::Trained(s) => {
            eprintln!("{}", s.done);
            for line in &s.output {
                println!("{line}");
            }
            eprintln!("next: {}", s.next);
        }
    }
}
