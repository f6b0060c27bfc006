//! Provenance of a generated image as XMP (Adobe's Extensible Metadata Platform, ISO 16684-1),
//! the packet every PNG Muse writes carries in an `iTXt` chunk: the IPTC digital source type
//! `trainedAlgorithmicMedia` (IPTC Photo Metadata Standard 2023), an AI-generated description
//! and credit line, and the generation parameters in a Muse namespace, so ExifTool and other
//! standard readers see what made the picture.

use serde::Serialize;

/// IPTC NewsCodes digital source type for media made by a model trained on sampled content.
pub const DIGITAL_SOURCE_TYPE: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// The namespace of Muse's own XMP properties (`muse:Seed`, ...).
pub const MUSE_XMP_NS: &str = "https://example.invalid/muse/ns/xmp/1.0/";
/// The `iTXt` keyword of an XMP packet in PNG (XMP Specification Part 3, 1.1.5).
pub const XMP_KEYWORD: &str = "XML:com.adobe.xmp";
/// The Muse version written into every image.
pub const MUSE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What made an image; `None` where the writer does not know (or the setting does not apply).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Provenance {
    /// The run or model (its folder or file name).
    pub model: Option<String>,
    /// `gan`, `vae`, `diffusion`, `text-to-image`.
    pub family: Option<String>,
    pub seed: Option<u64>,
    /// The text prompt of a text-to-image model.
    pub prompt: Option<String>,
    /// The class label of a class-conditional model.
    pub label: Option<usize>,
    /// `ddim`, `ddim eta 0.5`, `ddpm`.
    pub sampler: Option<String>,
    /// Denoising steps.
    pub steps: Option<usize>,
    /// Classifier-free guidance weight.
    pub guidance: Option<f64>,
    /// The training step of a progress grid.
    pub training_step: Option<u64>,
    /// What the picture shows, in words (also the PNG `Comment`).
    pub caption: Option<String>,
}

impl Provenance {
    /// Images of the run or model at `path` (named by its last path component).
    pub fn of(path: &std::path::Path, family: &str) -> Self {
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned();
        Provenance {
            model: Some(name),
            family: Some(family.to_string()),
            ..Default::default()
        }
    }

    /// The same, with a caption.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// The generation parameters as (XMP property name, value) pairs, in the packet's order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::new();
        let mut put = |name, v: Option<String>| {
            if let Some(v) = v {
                f.push((name, v));
            }
        };
        put("Model", self.model.clone());
        put("Family", self.family.clone());
        put("Seed", self.seed.map(|s| s.to_string()));
        put("Prompt", self.prompt.clone());
        put("Label", self.label.map(|l| l.to_string()));
        put("Sampler", self.sampler.clone());
        put("Steps", self.steps.map(|s| s.to_string()));
        put("Guidance", self.guidance.map(|g| g.to_string()));
        put("TrainingStep", self.training_step.map(|s| s.to_string()));
        put("Caption", self.caption.clone());
        f
    }

    /// The notice of the PNG `Comment` and the XMP description: the AI-generated label and
    /// the caption.
    pub fn notice(&self) -> String {
        match &self.caption {
            Some(c) => format!("{} ({c})", crate::AI_GENERATED_NOTICE),
            None => crate::AI_GENERATED_NOTICE.to_string(),
        }
    }

    /// The XMP packet, created at `date` (ISO 8601, UTC).
    pub fn xmp_packet(&self, date: &str) -> String {
        let mut props = vec![
            prop("Iptc4xmpExt:DigitalSourceType", DIGITAL_SOURCE_TYPE),
            format!(
                "   <dc:description>\n    <rdf:Alt>\n     <rdf:li xml:lang=\"x-default\">{}</rdf:li>\n    \
                 </rdf:Alt>\n   </dc:description>\n",
                escape_xml(&self.notice())
            ),
            prop(
                "photoshop:Credit",
                &format!("{} (trained algorithmic media)", crate::AI_GENERATED_NOTICE),
            ),
            prop("xmp:CreatorTool", &format!("Muse {MUSE_VERSION}")),
            prop("xmp:CreateDate", date),
        ];
        props.extend(
            self.fields()
                .into_iter()
                .map(|(name, v)| prop(&format!("muse:{name}"), &v)),
        );
        props.push(prop("muse:Version", MUSE_VERSION));
        props.push(prop("muse:Date", date));
        format!(
            "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
             <x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"Muse {MUSE_VERSION}\">\n \
             <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  \
             <rdf:Description rdf:about=\"\"\n    \
             xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n    \
             xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\"\n    \
             xmlns:photoshop=\"http://ns.adobe.com/photoshop/1.0/\"\n    \
             xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n    \
             xmlns:muse=\"{MUSE_XMP_NS}\">\n{}  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n\
             <?xpacket end=\"w\"?>",
            props.concat()
        )
    }
}

fn prop(name: &str, value: &str) -> String {
    format!("   <{name}>{}</{name}>\n", escape_xml(value))
}

/// Text as XML character data or attribute value: markup characters as entities; control
/// characters XML 1.0 cannot carry (all below U+0020 but tab, newline, return) dropped.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Now in UTC as `YYYY-MM-DDThh:mm:ssZ`; `SOURCE_DATE_EPOCH` (seconds), when set, stands for
/// now, so that the same seed can give byte-identical files.
pub fn utc_now() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    utc_date(secs)
}

/// Seconds since 1970-01-01 as an ISO 8601 UTC timestamp (proleptic Gregorian calendar).
pub fn utc_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (H. Hinnant's algorithm, eras of 400 years from 0000-03-01).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_timestamps() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400`: the leap day of 2000.
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_date(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(
            escape_xml("a <b> & \"c\" 'd'\u{1}\r"),
            "a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;&#13;"
        );
        let p = Provenance {
            prompt: Some("</muse:Prompt><evil x=\"1\"/>&amp;".into()),
            ..Provenance::of(std::path::Path::new("runs/t2i"), "text-to-image")
        };
        let xmp = p.xmp_packet("2026-01-02T03:04:05Z");
        assert!(xmp.contains(
            "<muse:Prompt>&lt;/muse:Prompt&gt;&lt;evil x=&quot;1&quot;/&gt;&amp;amp;</muse:Prompt>"
        ));
        assert_eq!(xmp.matches("<muse:Prompt>").count(), 1);
        assert!(!xmp.contains("<evil"));
    }

    #[test]
    fn packet_holds_the_source_type_and_every_given_field() {
        let p = Provenance {
            seed: Some(7),
            label: Some(3),
            sampler: Some("ddim".into()),
            steps: Some(50),
            guidance: Some(2.5),
            ..Provenance::of(std::path::Path::new("/x/runs/ddpm"), "diffusion")
        }
        .caption("8 samples");
        let xmp = p.xmp_packet("2026-01-02T03:04:05Z");
        assert!(xmp.starts_with("<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>"));
        assert!(xmp.ends_with("<?xpacket end=\"w\"?>"));
        for want in [
            "<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/\
             trainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType>",
            "<muse:Model>ddpm</muse:Model>",
            "<muse:Family>diffusion</muse:Family>",
            "<muse:Seed>7</muse:Seed>",
            "<muse:Label>3</muse:Label>",
            "<muse:Sampler>ddim</muse:Sampler>",
            "<muse:Steps>50</muse:Steps>",
            "<muse:Guidance>2.5</muse:Guidance>",
            "<muse:Date>2026-01-02T03:04:05Z</muse:Date>",
            "<xmp:CreateDate>2026-01-02T03:04:05Z</xmp:CreateDate>",
            "AI-generated by Muse (8 samples)</rdf:li>",
        ] {
            assert!(xmp.contains(want), "{want} missing from\n{xmp}");
        }
        assert!(!xmp.contains("muse:Prompt"), "unknown fields are left out");
    }
}
