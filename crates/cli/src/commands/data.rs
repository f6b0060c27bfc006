//! `muse data`: list the dataset registry, download, locate and verify datasets; split
//! sentence pairs for translation.

use anyhow::{Context, bail};
use clap::Subcommand;
use muse_core::run::data::{self, DatasetSpec, FileStatus, Presence};
use serde_json::json;

/// List, locate, download and verify datasets.
///
/// Lookup order for a dataset NAME: `$MUSE_DATA_DIR/NAME/`, then the user cache dir
/// (`$MUSE_CACHE_DIR/datasets/NAME/`, default `~/.cache/muse/datasets/NAME/`), then a download.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Show every registered dataset: kind, size, license, where it is (or that it is missing).
    List {
        /// Print machine-readable JSON (an array of datasets with their files) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download datasets into the cache dir and verify their sha256 (present ones are skipped).
    Fetch {
        /// Dataset names, as shown by `muse data list`.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print the folder a dataset resolves to (for scripts).
    Path {
        /// Dataset name, as shown by `muse data list`.
        name: String,
        /// Download the dataset first if it is missing (default: fail instead).
        #[arg(long)]
        fetch: bool,
    },
    /// Deal sentence pairs (eng-fra, or a TSV / JSONL file) into the fixed train / valid / test
    /// split: print the sizes, and with --out write train.tsv, valid.tsv and test.tsv.
    Split {
        /// eng-fra, or a file of pairs: TSV (source TAB target) or JSONL ({"source": ...,
        /// "target": ...}, named .jsonl).
        data: String,
        /// Swap source and target (French to English for eng-fra); the split stays the same.
        #[arg(long)]
        reverse: bool,
        /// Seed of the split; 13 is the documented one.
        #[arg(long, default_value_t = muse_core::run::pairs::DEFAULT_SEED)]
        seed: u64,
        /// Folder to write train.tsv, valid.tsv and test.tsv into (source TAB target).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Print the sizes as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the sha256 of every file of the datasets and compare with the registry.
    Verify {
        /// Dataset names, as shown by `muse data list`.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::List { json } => list(json),
        DataCommand::Fetch { names } => fetch(&names),
        DataCommand::Path { name, fetch } => path(&name, fetch),
        DataCommand::Verify { names } => verify(&names),
        DataCommand::Split {
            data,
            reverse,
            seed,
            out,
            json,
        } => {
            let req = muse_core::run::SplitRequest {
                data,
                reverse,
                seed,
                out,
            };
            let report = muse_core::run::split_corpus(&req)?;
            if json {
                println!("{}", report.json);
            } else {
                for line in &report.lines {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}

/// Where a dataset is, as shown in the table.
fn where_label(spec: &DatasetSpec, presence: &Presence) -> &'static str {
    match presence {
        Presence::Present { origin, .. } => origin.label(),
        Presence::Missing { .. } if spec.downloadable() => "missing",
        Presence::Missing { .. } => "missing (manual)",
    }
}

fn list(as_json: bool) -> anyhow::Result<()> {
    let dirs = data::search_dirs();
    let rows: Vec<(&DatasetSpec, Presence)> = data::registry()
        .iter()
        .map(|s| (s, data::locate_in(s, &dirs)))
        .collect();
    if as_json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(spec, presence)| {
                let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("size".into(), json!(spec.total_size()));
                    obj.insert("downloadable".into(), json!(spec.downloadable()));
                    obj.insert("present".into(), json!(presence.dir().is_some()));
                    let (dir, origin) = match presence {
                        Presence::Present { dir, origin } => (json!(dir), json!(origin)),
                        Presence::Missing { .. } => (json!(null), json!(null)),
                    };
                    obj.insert("dir".into(), dir);
                    obj.insert("origin".into(), origin);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }

    let headers = ["NAME", "KIND", "SIZE MB", "LICENSE", "WHERE", "DESCRIPTION"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|(spec, presence)| {
            [
                spec.name.to_string(),
                spec.kind.to_string(),
                megabytes(spec.total_size()),
                spec.license.to_string(),
                where_label(spec, presence).to_string(),
                spec.description.to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else if i == 2 {
                out.push_str(&format!("{cell:>w$}  "));
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out
    };
    println!("{}", line(headers));
    for row in &cells {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    println!();
    let data_dir = std::env::var("MUSE_DATA_DIR").unwrap_or_else(|_| "(not set)".into());
    println!("MUSE_DATA_DIR: {data_dir}");
    match data::cache_root() {
        Ok(root) => println!("cache:         {}", root.display()),
        Err(e) => println!("cache:         unavailable ({e})"),
    }
    println!(
        "`muse data fetch NAME` downloads a missing dataset; \"manual\" ones list where to get them."
    );
    Ok(())
}

/// Size in MB, with enough digits that small datasets do not show as 0.0.
fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb < 0.05 {
        format!("{mb:.3}")
    } else {
        format!("{mb:.1}")
    }
}

/// Checks every name before doing anything, so a typo fails fast (exit 2) with the known names.
fn specs(names: &[String]) -> anyhow::Result<Vec<&'static DatasetSpec>> {
    names
        .iter()
        .map(|n| data::require_spec(n).map_err(anyhow::Error::from))
        .collect()
}

fn fetch(names: &[String]) -> anyhow::Result<()> {
    for spec in specs(names)? {
        let name = spec.name;
        if let Presence::Present { dir, origin } = data::locate(name)? {
            println!(
                "{name}: already present in {} ({}); nothing to download",
                dir.display(),
                origin.label()
            );
            continue;
        }
        if spec.files.iter().any(|f| f.url.is_some()) {
            eprintln!(
                "{name}: downloading {:.1} MB ({} files)",
                spec.total_size() as f64 / 1e6,
                spec.files.len()
            );
        }
        let dir = data::fetch(name).with_context(|| format!("fetching dataset '{name}' failed"))?;
        println!(
            "{name}: {} files verified (sha256) in {}",
            spec.files.len(),
            dir.display()
        );
    }
    Ok(())
}

fn path(name: &str, fetch: bool) -> anyhow::Result<()> {
    let spec = data::require_spec(name)?;
    let dir = match data::locate(name)? {
        Presence::Present { dir, .. } => dir,
        Presence::Missing { .. } if fetch => data::dataset_dir(name)?,
        Presence::Missing { searched } => bail!("{}", data::missing_message(spec, &searched)),
    };
    println!("{}", dir.display());
    Ok(())
}

fn verify(names: &[String]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for spec in specs(names)? {
        let report = data::verify(spec.name)?;
        println!(
            "{} ({}): {}",
            spec.name,
            report.origin.label(),
            report.dir.display()
        );
        for check in &report.checks {
            let f = check.file;
            let status = match &check.status {
                FileStatus::Ok => "ok".to_string(),
                FileStatus::Missing => "MISSING".to_string(),
                FileStatus::WrongSize { actual } => {
                    format!("WRONG SIZE: {actual} bytes, expected {}", f.size)
                }
                FileStatus::WrongSha256 { actual } => {
                    format!("WRONG SHA256: {actual}, expected {}", f.sha256)
                }
            };
            println!("  {:<40} {status}", f.path);
        }
        if !report.ok() {
            failed.push(spec.name);
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} did not verify: delete the bad files and run `muse data fetch {}`",
            failed.join(", "),
            failed.join(" ")
        );
    }
    Ok(())
}
