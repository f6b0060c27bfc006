//! Resolving a run configuration: preset, then `--config file.toml`, then `--set key=value`.
//!
//! Every config is a plain serde struct. To layer overrides on it we go through its JSON form:
//! the preset is serialised, each override must name a key that already exists there (so a
//! typo is an error, not a silently ignored field), and the result is deserialised back, which
//! checks the types.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Applies a TOML file and `key=value` overrides on top of `preset` and returns the result.
///
/// Keys may be dotted (`train.lr=3e-4`) or bare (`lr=3e-4`) when the bare name occurs in
/// exactly one section.
pub fn resolve<T: Serialize + DeserializeOwned>(
    preset: &T,
    file: Option<&Path>,
    sets: &[String],
) -> Result<T> {
    let mut value = serde_json::to_value(preset)
        .map_err(|e| Error::usage(format!("cannot represent config: {e}")))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| Error::usage(format!("{} is not valid TOML: {e}", path.display())))?;
        let overlay = serde_json::to_value(table)
            .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        merge(&mut value, &overlay, "", &path.display().to_string())?;
    }
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| Error::usage(format!("--set expects key=value, got '{set}'")))?;
        let path = find_key(&value, key.trim())?;
        let slot = pointer_mut(&mut value, &path).expect("find_key returned an existing path");
        *slot = parse_scalar(raw.trim(), slot);
    }
    serde_json::from_value(value).map_err(|e| Error::usage(format!("invalid config value: {e}")))
}

/// Every settable key of a config, dotted, for help texts and error messages.
pub fn keys<T: Serialize>(config: &T) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(config) {
        collect_keys(&v, "", &mut out);
    }
    out
}

fn collect_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_keys(child, &key, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Finds the dotted path of `key` in `value`: exact dotted match, or a unique leaf name.
fn find_key(value: &Value, key: &str) -> Result<Vec<String>> {
    let all = {
        let mut v = Vec::new();
        collect_keys(value, "", &mut v);
        v
    };
    if all.iter().any(|k| k == key) {
        return Ok(key.split('.').map(str::to_string).collect());
    }
    let matches: Vec<&String> = all
        .iter()
        .filter(|k| k.rsplit('.').next() == Some(key))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.split('.').map(str::to_string).collect()),
        [] => Err(Error::usage(format!(
            "unknown config key '{key}'; valid keys: {}",
            all.join(", ")
        ))),
        many => Err(Error::usage(format!(
            "config key '{key}' is ambiguous: write one of {}",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, k| v.get_mut(k))
}

/// Parses an override in the type of the value it replaces, so `n_layer=6` stays a number
/// and `dataset=1984` stays a string.
fn parse_scalar(raw: &str, old: &Value) -> Value {
    if old.is_string() {
        return Value::String(raw.trim_matches('"').to_string());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Merges `overlay` into `base`; every key of the overlay must exist in the base.
fn merge(base: &mut Value, overlay: &Value, prefix: &str, source: &str) -> Result<()> {
    let (Value::Object(b), Value::Object(o)) = (&mut *base, overlay) else {
        *base = overlay.clone();
        return Ok(());
    };
    for (k, v) in o {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match b.get_mut(k) {
            Some(slot) if slot.is_object() && v.is_object() => merge(slot, v, &key, source)?,
            Some(slot) => *slot = v.clone(),
            None => {
                return Err(Error::usage(format!(
                    "{source}: unknown config key '{key}'; valid keys here: {}",
                    keys_of(b).join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn keys_of(map: &Map<String, Value>) -> Vec<String> {
    map.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        lr: f64,
        name: String,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        n_layer: usize,
        train: Inner,
    }

    fn preset() -> Outer {
        Outer {
            n_layer: 4,
            train: Inner {
                lr: 1e-3,
                name: "x".into(),
            },
        }
    }

    #[test]
    fn sets_dotted_and_bare_keys_with_types() {
        let sets = vec![
            "train.lr=3e-4".to_string(),
            "n_layer=6".into(),
            "name=1984".into(),
        ];
        let out = resolve(&preset(), None, &sets).unwrap();
        assert_eq!(
            out,
            Outer {
                n_layer: 6,
                train: Inner {
                    lr: 3e-4,
                    name: "1984".into()
                }
            }
        );
    }

    #[test]
    fn unknown_key_and_bad_type_are_usage_errors() {
        let err = resolve(&preset(), None, &["n_layers=6".to_string()]).unwrap_err();
        assert!(err.is_usage() && err.to_string().contains("unknown config key 'n_layers'"));
        let err = resolve(&preset(), None, &["n_layer=six".to_string()]).unwrap_err();
        assert!(err.is_usage(), "{err}");
        let err = resolve(&preset(), None, &["n_layer".to_string()]).unwrap_err();
        assert!(err.to_string().contains("key=value"));
    }

    #[test]
    fn toml_file_overrides_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "n_layer = 2\n[train]\nlr = 0.5\n").unwrap();
        let out = resolve(&preset(), Some(&good), &[]).unwrap();
        assert_eq!((out.n_layer, out.train.lr), (2, 0.5));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[train]\nlrr = 0.5\n").unwrap();
        let err = resolve(&preset(), Some(&bad), &[]).unwrap_err();
        assert!(err.to_string().contains("train.lrr"), "{err}");
    }
}
