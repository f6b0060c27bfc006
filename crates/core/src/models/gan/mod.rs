//! The GAN family: a DCGAN generator and discriminator (optionally class-conditional, or a
//! WGAN-GP critic without batch norm), their configuration, and loading from a run folder.

mod config;
mod load;
mod model;

pub use config::{DNorm, GanConfig};
pub use load::{Gan, load_gan, read_config, save_config};
pub use model::{
    DTYPE, Discriminator, Generator, LEAKY_SLOPE, dcgan_init, mean_probability, one_hot,
    parameter_counts,
};
