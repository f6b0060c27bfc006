//! `MODEL_CARD.md`: one builder for every family's card, so each states the same things
//! (Mitchell et al., "Model Cards for Model Reporting", 2019): what the model is, its data
//! (name, sha256, licence), its configuration, the measured figures, intended use and limits,
//! and how its outputs are labelled. Families add their own sections (model, training,
//! metrics); `muse audit` later sets a "Memorisation audit" section in place.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::run_dir::{DatasetRecord, RunDir};

/// What a model's outputs are, which decides its use and labelling paragraphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Generated text.
    Text,
    /// Generated images.
    Images,
    /// Judgements about images (the reference classifier): it generates nothing.
    Judge,
}

/// A card being put together; [`ModelCard::write`] renders it into the run.
pub struct ModelCard {
    title: String,
    summary: String,
    outputs: Outputs,
    preset: String,
    data: Vec<String>,
    config: Option<String>,
    sections: Vec<(String, String)>,
    limits: String,
}

/// The licence of a dataset by its registry name; a file that is not registered has none on
/// record.
pub fn licence_of(dataset: &str) -> String {
    match crate::data::spec(dataset) {
        Some(s) => s.license.to_string(),
        None => format!(
            "not recorded (`{dataset}` is not a registered dataset): check the licence of the \
             text or images before sharing this model or its outputs"
        ),
    }
}

impl ModelCard {
    /// A card titled after the run folder, opening with `summary`.
    pub fn new(run: &RunDir, summary: impl Into<String>, outputs: Outputs, preset: &str) -> Self {
        let title = run
            .root()
            .file_name()
            .map_or("muse run".into(), |n| n.to_string_lossy().into_owned());
        Self {
            title,
            summary: summary.into(),
            outputs,
            preset: preset.to_string(),
            data: Vec::new(),
            config: None,
            sections: Vec::new(),
            limits: String::new(),
        }
    }

    /// The dataset the model learned from, with `detail` (sizes, splits) after it.
    pub fn data(mut self, record: &DatasetRecord, detail: &str) -> Self {
        self.data.push(format!(
            "- `{}` ({}), sha256 `{}`\n- licence: {}",
            record.name,
            record.path,
            record.sha256,
            licence_of(&record.name)
        ));
        if !detail.is_empty() {
            self.data.push(format!("- {detail}"));
        }
        self
    }

    /// A line about data that is not one registered file (fine-tuning sets, base models).
    pub fn data_line(mut self, line: impl Into<String>) -> Self {
        self.data.push(line.into());
        self
    }

    /// The resolved configuration, as `training.json` records it.
    pub fn config<C: Serialize>(mut self, config: &C) -> Self {
        self.config = serde_json::to_string_pretty(config).ok();
        self
    }

    /// A family's own section (model, training, metrics), in the order added; the first one
    /// (the model) comes before the data and configuration.
    pub fn section(mut self, heading: &str, body: impl Into<String>) -> Self {
        self.sections.push((heading.to_string(), body.into()));
        self
    }

    /// What the model cannot do.
    pub fn limits(mut self, text: impl Into<String>) -> Self {
        self.limits = text.into();
        self
    }

    /// The Markdown text.
    pub fn render(&self) -> String {
        let mut out = format!("# {}\n\n{}\n\n", self.title, self.summary);
        let mut push = |heading: &str, body: &str| {
            out += &format!("## {heading}\n\n{}\n\n", body.trim_end());
        };
        let (model, rest) = self.sections.split_at(self.sections.len().min(1));
        for (h, b) in model {
            push(h, b);
        }
        push("Data", &self.data.join("\n"));
        let config = match &self.config {
            Some(json) => format!(
                "Preset `{}`, resolved as `training.json` records it:\n\n```json\n{json}\n```",
                self.preset
            ),
            None => format!("Preset `{}`.", self.preset),
        };
        push("Configuration", &config);
        for (h, b) in rest {
            push(h, b);
        }
        push("Intended use", intended_use(self.outputs));
        push("Limits", &self.limits);
        push("Outputs and labelling", labelling(self.outputs));
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    }

    /// Writes the card into the run atomically.
    pub fn write(&self, run: &RunDir) -> Result<()> {
        crate::io::write_atomic(&run.model_card(), self.render().as_bytes())
    }
}

fn intended_use(outputs: Outputs) -> &'static str {
    match outputs {
        Outputs::Text => {
            "Learning how language models work and experimenting with them: watching a model \
             pick up the style of its corpus, comparing training and sampling settings. Not for \
             producing text that is presented as human-written, for facts, or for advice."
        }
        Outputs::Images => {
            "Learning how image generators work and experimenting with them: sampling, comparing \
             training settings, looking at what the model learned. Not for producing images \
             presented as real or as made by a person."
        }
        Outputs::Judge => {
            "A yardstick for images generated from models trained on the same dataset (FID, \
             class coverage, label accuracy, the memorisation audit's feature distances). Not a \
             general-purpose classifier."
        }
    }
}

fn labelling(outputs: Outputs) -> &'static str {
    match outputs {
        Outputs::Text => {
            "Everything this model writes is AI-generated. `muse sample` and `muse chat` say \
             so on the terminal and the samples saved during training carry an \"AI-generated \
             by Muse\" line, but the text itself is watermarked only when sampled with \
             `--watermark-key` (or `MUSE_WATERMARK_KEY`) in `muse sample`, `muse chat` or `muse \
             serve`; `muse detect --key KEY --tokenizer RUN` then finds the watermark. Text \
             sampled without a key carries no mark once copied."
        }
        Outputs::Images => {
            "Every image this model produces is AI-generated. The PNG files Muse writes carry \
             the label in their metadata: a `Comment` text chunk \"AI-generated by Muse (...)\", \
             and an XMP packet with the IPTC digital source type `trainedAlgorithmicMedia` and \
             the generation parameters (model, seed, label or prompt, sampler, steps), which \
             ExifTool and `muse inspect` read; the pixels carry no watermark, so a copy \
             saved without its metadata (a screenshot, a re-encode) is unlabelled."
        }
        Outputs::Judge => {
            "It generates nothing; the figures it produces about generated images describe \
             AI-generated content."
        }
    }
}

/// Sets section `## heading` of the Markdown file at `path` to `body`: replaces it when there
/// (up to the next `## ` heading), else appends it. The rest of the card is kept.
pub fn set_section(path: &Path, heading: &str, body: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path)(e)),
    };
    crate::io::write_atomic(path, with_section(&old, heading, body).as_bytes())
}

/// [`set_section`] on text.
pub fn with_section(card: &str, heading: &str, body: &str) -> String {
    let head = format!("## {heading}");
    let section = format!("{head}\n\n{}\n", body.trim_end());
    let mut lines: Vec<&str> = card.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == head);
    let mut out = match start {
        Some(s) => {
            let end = lines[s + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map_or(lines.len(), |e| s + 1 + e);
            let tail = lines.split_off(end);
            lines.truncate(s);
            let mut out = lines.join("\n");
            out += if out.is_empty() { "" } else { "\n" };
            out += &section;
            if !tail.is_empty() {
                out += "\n";
                out += &tail.join("\n");
                out += "\n";
            }
            out
        }
        None => {
            let mut out = card.trim_end().to_string();
            if !out.is_empty() {
                out += "\n\n";
            }
            out + &section
        }
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_appended_then_replaced_and_the_rest_kept() {
        let card = "# run\n\nintro\n\n## Limits\n\nsmall\n";
        let once = with_section(card, "Memorisation audit", "share 1%");
        assert_eq!(
            once,
            "# run\n\nintro\n\n## Limits\n\nsmall\n\n## Memorisation audit\n\nshare 1%\n"
        );
        let twice = with_section(&once, "Memorisation audit", "share 2%\n");
        assert_eq!(twice, once.replace("1%", "2%"));
        let middle = with_section("# r\n\n## A\n\na\n\n## B\n\nb\n", "A", "new a");
        assert_eq!(middle, "# r\n\n## A\n\nnew a\n\n## B\n\nb\n");
    }

    #[test]
    fn licences_come_from_the_registry() {
        assert_eq!(licence_of("mnist"), "CC BY-SA 3.0");
        assert!(licence_of("my-notes").starts_with("not recorded"));
    }
}
