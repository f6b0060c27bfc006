//! The cross-attention of a translation as a picture (the alignment figures of Bahdanau et al.
//! 2015, "Neural Machine Translation by Jointly Learning to Align and Translate"): one row per
//! output token, one column per source token, darker where the last decoder layer looked,
//! averaged over heads.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::models::seq2seq::Seq2Seq;
use crate::tokenizer::TextTokenizer;

/// The weights behind the picture, with the tokens of both axes.
#[derive(Clone, Debug)]
pub struct AttentionMap {
    /// Source tokens as text, `</s>` last.
    pub source: Vec<String>,
    /// Output tokens as text, `</s>` last.
    pub output: Vec<String>,
    /// `weights[i][j]`: attention of output token `i` on source token `j`; each row sums to 1.
    pub weights: Vec<Vec<f32>>,
}

/// Feeds `<s>` and `output` (ids without BOS/EOS) to the decoder after encoding `source` (ids
/// ending in EOS), and collects the cross-attention of each prediction, `</s>` included.
pub fn attention_map(
    model: &Seq2Seq,
    tokenizer: &TextTokenizer,
    source: &[u32],
    output: &[u32],
) -> Result<AttentionMap> {
    let cfg = model.config();
    let dev = model.device();
    let src = Tensor::from_slice(source, (1, source.len()), dev)?;
    let memory = model.encode(&src)?;
    let mut cache = model.new_cache(1, output.len() + 1)?;
    let mut weights = Vec::with_capacity(output.len() + 1);
    let inputs = std::iter::once(cfg.bos_token_id).chain(output.iter().copied());
    for id in inputs {
        let ids = Tensor::from_slice(&[id], (1, 1), dev)?;
        let (_, att) = model.decode_step_attention(&ids, &memory, &mut cache)?; // (1, Ts)
        weights.push(att.squeeze(0)?.to_vec1::<f32>()?);
    }
    let label = |id: u32| -> Result<String> {
        if id == cfg.eos_token_id {
            return Ok("</s>".into());
        }
        Ok(tokenizer.decode(&[id])?.trim().to_string())
    };
    let out_ids = output.iter().copied().chain([cfg.eos_token_id]);
    Ok(AttentionMap {
        source: source.iter().map(|&i| label(i)).collect::<Result<_>>()?,
        output: out_ids.map(label).collect::<Result<_>>()?,
        weights,
    })
}

/// Pixels per cell of the PNG.
const CELL: u32 = 24;

impl AttentionMap {
    /// A greyscale PNG, white 0 to black 1, `CELL` pixels a cell, no labels (the SVG has them).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let (w, h) = (self.source.len() as u32, self.output.len() as u32);
        let img = image::GrayImage::from_fn(w * CELL, h * CELL, |x, y| {
            let a = self.weights[(y / CELL) as usize][(x / CELL) as usize].clamp(0.0, 1.0);
            image::Luma([(255.0 * (1.0 - a)).round() as u8])
        });
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::input(format!("cannot encode the attention map: {e}")))?;
        Ok(bytes)
    }

    /// An SVG with the source tokens along the top and the output tokens down the left.
    pub fn to_svg(&self) -> String {
        let (left, top, cell) = (120usize, 90usize, 28usize);
        let (w, h) = (
            left + cell * self.source.len() + 10,
            top + cell * self.output.len() + 10,
        );
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
             fill=\"white\"/>\n"
        );
        for (j, s) in self.source.iter().enumerate() {
            let x = left + j * cell + cell / 2;
            svg.push_str(&format!(
                "<text transform=\"translate({x},{}) rotate(-60)\">{}</text>\n",
                top - 6,
                esc(s)
            ));
        }
        for (i, row) in self.weights.iter().enumerate() {
            let y = top + i * cell;
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                left - 6,
                y + cell / 2 + 4,
                esc(&self.output[i])
            ));
            for (j, &a) in row.iter().enumerate() {
                let g = (255.0 * (1.0 - a.clamp(0.0, 1.0))).round() as u8;
                svg.push_str(&format!(
                    "<rect x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
                     fill=\"rgb({g},{g},{g})\"><title>{a:.3}</title></rect>\n",
                    left + j * cell
                ));
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}
