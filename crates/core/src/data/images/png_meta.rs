//! Reading back what a PNG says about itself: its text chunks (`tEXt`, `zTXt`, `iTXt`, PNG
//! specification 11.3.4) and the properties of an XMP packet, enough to show the provenance
//! any writer (Muse, ExifTool, an editor) left in a file. Writing is in [`super::grid`].

use std::io::Read;

use super::provenance::XMP_KEYWORD;
use crate::error::{Error, Result};

/// The eight bytes every PNG starts with.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The text a PNG carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PngMetadata {
    /// Text chunks other than XMP, as (keyword, text), in file order.
    pub texts: Vec<(String, String)>,
    /// The XMP packet (`iTXt` keyword `XML:com.adobe.xmp`), if any.
    pub xmp: Option<String>,
}

/// True when `bytes` start with the PNG signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

/// The text chunks of PNG bytes. Errors when the bytes are not a PNG or a chunk is cut short.
pub fn read_png_metadata(png: &[u8]) -> Result<PngMetadata> {
    if !is_png(png) {
        return Err(Error::input("not a PNG file (no PNG signature)"));
    }
    let mut meta = PngMetadata::default();
    let mut at = PNG_SIGNATURE.len();
    while at < png.len() {
        let Some(head) = png.get(at..at + 8) else {
            return Err(truncated(at));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        let Some(data) = png.get(at + 8..at + 8 + len) else {
            return Err(truncated(at));
        };
        match &kind {
            b"tEXt" => {
                if let Some((key, text)) = split_keyword(data) {
                    meta.texts.push((key, latin1(text)));
                }
            }
            b"zTXt" => {
                if let Some((key, rest)) = split_keyword(data)
                    && let Some(text) = rest.get(1..).and_then(inflate)
                {
                    meta.texts.push((key, latin1(&text)));
                }
            }
            b"iTXt" => {
                if let Some((key, text)) = international_text(data) {
                    if key == XMP_KEYWORD {
                        meta.xmp = Some(text);
                    } else {
                        meta.texts.push((key, text));
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    Ok(meta)
}

fn truncated(at: usize) -> Error {
    Error::input(format!(
        "the PNG is cut short: a chunk at byte {at} runs past the end of the file"
    ))
}

/// A keyword (1-79 bytes, NUL-terminated) and the bytes after it.
fn split_keyword(data: &[u8]) -> Option<(String, &[u8])> {
    let z = data.iter().position(|&b| b == 0)?;
    Some((latin1(&data[..z]), &data[z + 1..]))
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn inflate(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(64 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// `iTXt`: keyword, NUL, compression flag, method, language tag, NUL, translated keyword, NUL,
/// UTF-8 text (zlib-compressed when the flag is 1).
fn international_text(data: &[u8]) -> Option<(String, String)> {
    let (key, rest) = split_keyword(data)?;
    let (&flag, rest) = rest.split_first()?;
    let rest = rest.get(1..)?;
    let lang_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang_end + 1..];
    let tr_end = rest.iter().position(|&b| b == 0)?;
    let text = &rest[tr_end + 1..];
    let text = if flag == 1 {
        inflate(text)?
    } else {
        text.to_vec()
    };
    Some((key, String::from_utf8_lossy(&text).into_owned()))
}

/// The simple properties of an XMP packet as (qualified name, value): elements holding text,
/// the items of an `rdf:Alt`/`rdf:Bag`/`rdf:Seq` under their property's name, attributes of
/// `rdf:Description`, and `rdf:resource` references. Not a full RDF parser: enough for the
/// flat packets image tools write.
pub fn xmp_properties(xmp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Open elements: (name, has a child element).
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut text = String::new();
    let mut rest = xmp;
    while let Some(lt) = rest.find('<') {
        text.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let (skip_to, end) = if rest.starts_with("<?") {
            ("?>", true)
        } else if rest.starts_with("<!--") {
            ("-->", true)
        } else {
            (">", false)
        };
        let Some(close) = rest.find(skip_to) else {
            break;
        };
        let tag = &rest[1..close];
        rest = &rest[close + skip_to.len()..];
        if end {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            if let Some(i) = stack.iter().rposition(|(n, _)| n == name) {
                let (_, has_child) = stack[i].clone();
                stack.truncate(i);
                let value = unescape_xml(text.trim());
                if !has_child && !value.is_empty() {
                    out.push((property_name(name, &stack), value));
                }
            }
            text.clear();
            continue;
        }
        text.clear();
        let empty = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().unwrap_or("").to_string();
        if let Some(parent) = stack.last_mut() {
            parent.1 = true;
        }
        let attrs = attributes(tag);
        if name == "rdf:Description" {
            out.extend(attrs.iter().filter(|(k, _)| is_property(k)).cloned());
        } else if let Some((_, v)) = attrs.iter().find(|(k, _)| k == "rdf:resource") {
            out.push((property_name(&name, &stack), v.clone()));
        }
        if !empty {
            stack.push((name, false));
        }
    }
    out
}

/// An item of an `rdf:` container is named after the property that holds it.
fn property_name(name: &str, open: &[(String, bool)]) -> String {
    if !name.starts_with("rdf:") {
        return name.to_string();
    }
    open.iter()
        .rev()
        .find(|(n, _)| !n.starts_with("rdf:"))
        .map_or(name.to_string(), |(n, _)| n.clone())
}

fn is_property(attr: &str) -> bool {
    !(attr == "xmlns"
        || attr.starts_with("xmlns:")
        || attr.starts_with("rdf:")
        || attr.starts_with("xml:"))
}

/// `name="value"` pairs of a start tag (after its name), values unescaped.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag.split_once(char::is_whitespace).map_or("", |(_, r)| r);
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some(end) = after[1..].find(quote) else {
            break;
        };
        out.push((name, unescape_xml(&after[1..1 + end])));
        rest = &after[end + 2..];
    }
    out
}

/// The five named entities and numeric character references, decoded; anything else as is.
pub fn unescape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| e.strip_prefix('#').map(str::parse))
                .and_then(|n| n.ok())
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::provenance::Provenance;

    #[test]
    fn a_packet_reads_back_to_its_fields() {
        let p = Provenance {
            seed: Some(42),
            prompt: Some("a \"red\" <shoe> & 'lace'\nline two".into()),
            guidance: Some(3.0),
            ..Provenance::of(std::path::Path::new("runs/t2i"), "text-to-image")
        }
        .caption("2 samples");
        let props = xmp_properties(&p.xmp_packet("2026-01-02T03:04:05Z"));
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("Iptc4xmpExt:DigitalSourceType"),
            Some(super::super::provenance::DIGITAL_SOURCE_TYPE)
        );
        assert_eq!(get("muse:Prompt"), p.prompt.as_deref());
        assert_eq!(get("muse:Seed"), Some("42"));
        assert_eq!(get("muse:Guidance"), Some("3"));
        assert_eq!(get("muse:Model"), Some("t2i"));
        assert_eq!(
            get("dc:description"),
            Some("AI-generated by Muse (2 samples)")
        );
        assert_eq!(get("rdf:Description"), None);
    }

    #[test]
    fn attributes_resources_and_entities_are_read() {
        let xmp = "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description rdf:about='' \
                   xmlns:a='u' a:One='1 &lt; 2' a:Two=\"&#x41;&#66;\"><a:Three \
                   rdf:resource='http://r'/><a:Four>&bogus; &amp</a:Four><!-- <a:Five>5</a:Five> \
                   --></rdf:Description></rdf:RDF></x:xmpmeta>";
        assert_eq!(
            xmp_properties(xmp),
            vec![
                ("a:One".to_string(), "1 < 2".to_string()),
                ("a:Two".into(), "AB".into()),
                ("a:Three".into(), "http://r".into()),
                ("a:Four".into(), "&bogus; &amp".into()),
            ]
        );
        assert!(xmp_properties("<<>><a:b").is_empty());
    }

    #[test]
    fn text_chunks_are_read_and_bad_bytes_refused() {
        let grid = crate::data::images::grid::GridImage {
            channels: 1,
            width: 2,
            height: 1,
            pixels: vec![0, 255],
        };
        let p = Provenance::of(std::path::Path::new("g"), "gan").caption("é");
        let png = crate::data::images::grid::encode_png(&grid, &p).unwrap();
        let meta = read_png_metadata(&png).unwrap();
        assert!(
            meta.xmp
                .as_deref()
                .unwrap()
                .contains("<muse:Caption>é</muse:Caption>")
        );
        assert!(meta.texts.contains(&("Software".into(), "Muse".into())));
        assert!(read_png_metadata(b"GIF89a").is_err());
        let cut = read_png_metadata(&png[..png.len() - 20]).unwrap_err();
        assert!(cut.to_string().contains("cut short"), "{cut}");
    }
}
