//! The eight named colours of the tinted datasets, and how the colour of a generated image is
//! judged: the chroma-weighted circular mean hue of its pixels, matched to the nearest
//! palette hue.

use candle_core::Tensor;

use crate::error::Result;

/// A named tint. `rgb` has a largest channel of exactly 1, so tinting keeps the grey
/// intensity recoverable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Colour {
    pub name: &'static str,
    pub rgb: [f32; 3],
    /// Synonyms in captions; the last one is held out of training.
    pub synonyms: [&'static str; 3],
}

/// The palette: hues about 30 to 60 degrees apart (red 0, orange 30, yellow 60, green 120,
/// cyan 180, blue 225, purple 273, pink 328).
pub const COLOURS: [Colour; 8] = [
    Colour {
        name: "red",
        rgb: [1.0, 0.0, 0.0],
        synonyms: ["red", "scarlet", "crimson"],
    },
    Colour {
        name: "orange",
        rgb: [1.0, 0.5, 0.0],
        synonyms: ["orange", "amber", "tangerine"],
    },
    Colour {
        name: "yellow",
        rgb: [1.0, 1.0, 0.0],
        synonyms: ["yellow", "lemon", "golden"],
    },
    Colour {
        name: "green",
        rgb: [0.0, 1.0, 0.0],
        synonyms: ["green", "lime", "emerald"],
    },
    Colour {
        name: "cyan",
        rgb: [0.0, 1.0, 1.0],
        synonyms: ["cyan", "aqua", "turquoise"],
    },
    Colour {
        name: "blue",
        rgb: [0.0, 0.25, 1.0],
        synonyms: ["blue", "cobalt", "azure"],
    },
    Colour {
        name: "purple",
        rgb: [0.55, 0.0, 1.0],
        synonyms: ["purple", "violet", "indigo"],
    },
    Colour {
        name: "pink",
        rgb: [1.0, 0.35, 0.7],
        synonyms: ["pink", "rose", "magenta"],
    },
];

/// Hue in degrees [0, 360) and chroma (max - min) of an RGB triple.
pub fn hue_of([r, g, b]: [f32; 3]) -> (f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if chroma <= 0.0 {
        return (0.0, 0.0);
    }
    let h = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    };
    (h * 60.0, chroma)
}

/// The palette colour nearest to the dominant hue of each image, or `None` for an image
/// with no coloured pixels (all grey or black).
///
/// The dominant hue is the circular mean of the pixels' hues weighted by their chroma, so the
/// black background and grey pixels do not count.
///
/// # Shapes
/// `images`: (N, 3, H, W) in [0, 1].
pub fn dominant_colour(images: &Tensor) -> Result<Vec<Option<usize>>> {
    let (n, c, h, w) = images.dims4()?;
    if c != 3 {
        return Err(crate::Error::input(format!(
            "colour needs RGB images, these have {c} channels"
        )));
    }
    let px = images.flatten_all()?.to_vec1::<f32>()?;
    let hw = h * w;
    let palette: Vec<f32> = COLOURS.iter().map(|c| hue_of(c.rgb).0).collect();
    Ok((0..n)
        .map(|i| {
            let img = &px[i * 3 * hw..(i + 1) * 3 * hw];
            let (mut sx, mut sy) = (0f64, 0f64);
            for p in 0..hw {
                let (hue, chroma) = hue_of([img[p], img[hw + p], img[2 * hw + p]]);
                let a = (hue as f64).to_radians();
                sx += chroma as f64 * a.cos();
                sy += chroma as f64 * a.sin();
            }
            if sx.hypot(sy) < 1e-3 * hw as f64 {
                return None;
            }
            let mean = sy.atan2(sx).to_degrees().rem_euclid(360.0) as f32;
            let gap = |p: f32| {
                let d = (mean - p).abs();
                d.min(360.0 - d)
            };
            (0..palette.len()).min_by(|&a, &b| gap(palette[a]).total_cmp(&gap(palette[b])))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_colours_keep_grey_recoverable_and_are_judged_as_themselves() {
        let dev = candle_core::Device::Cpu;
        for (k, c) in COLOURS.iter().enumerate() {
            assert_eq!(c.rgb.iter().cloned().fold(0.0, f32::max), 1.0, "{}", c.name);
            // A tinted blob on black: half the pixels at intensity 0.8, the rest background.
            let mut px = vec![0f32; 3 * 16];
            for ch in 0..3 {
                for p in 0..8 {
                    px[ch * 16 + p] = 0.8 * c.rgb[ch];
                }
            }
            let img = Tensor::from_vec(px, (1, 3, 4, 4), &dev).unwrap();
            assert_eq!(dominant_colour(&img).unwrap(), vec![Some(k)], "{}", c.name);
        }
        let black = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(dominant_colour(&black).unwrap(), vec![None]);
    }

    #[test]
    fn hue_of_primaries() {
        assert_eq!(hue_of([1.0, 0.0, 0.0]).0, 0.0);
        assert_eq!(hue_of([0.0, 1.0, 0.0]).0, 120.0);
        assert_eq!(hue_of([0.0, 0.0, 1.0]).0, 240.0);
        assert_eq!(hue_of([0.5, 0.5, 0.5]), (0.0, 0.0));
    }
}
