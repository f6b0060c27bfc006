//! The dataset registry against the shared data folder, lookup, text reading, and downloads
//! from a local HTTP server (never the network).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use muse_core::Error;
use muse_core::data::{
    self, DatasetKind, DatasetSpec, FileStatus, Origin, Presence, RemoteFile, SearchDir,
};

use crate::common::{dataset, shared_data_dir};

/// The folder that holds the test datasets (`$MUSE_DATA_DIR`, or the cache they were fetched to).
fn data_root() -> PathBuf {
    let dir = dataset("tinyshakespeare");
    dir.parent()
        .expect("a dataset folder has a parent")
        .to_path_buf()
}

fn shared_dirs() -> Vec<SearchDir> {
    vec![SearchDir {
        root: data_root(),
        origin: Origin::DataDir,
    }]
}

/// The shared folder whose every file the registry must describe; these checks need
/// `MUSE_DATA_DIR` (CI sets it) and have nothing to check on a machine with only the cache.
fn shared_root(test: &str) -> Option<PathBuf> {
    let root = shared_data_dir();
    if root.is_none() {
        eprintln!("{test}: MUSE_DATA_DIR is not set, no shared folder to check");
    }
    root
}

#[test]
fn registry_lists_every_shared_dataset_with_well_formed_entries() {
    let names: Vec<&str> = data::registry().iter().map(|s| s.name).collect();
    for want in [
        "tinyshakespeare",
        "mnist",
        "fashion-mnist",
        "gpt2-bpe",
        "eng-fra",
        "hh-rlhf",
        "instructions",
        "tinystories",
        "llama2c",
        "all-minilm-l6-v2",
    ] {
        assert!(names.contains(&want), "{want} is not registered: {names:?}");
    }
    for spec in data::registry() {
        assert!(!spec.files.is_empty(), "{} has no files", spec.name);
        assert!(!spec.description.contains('\n') && !spec.license.is_empty());
        assert_eq!(
            data::spec(spec.name).map(|s| s.name),
            Some(spec.name),
            "duplicate name"
        );
        for f in spec.files {
            assert!(
                f.sha256.len() == 64
                    && f.sha256
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{}/{}: bad sha256 {}",
                spec.name,
                f.path,
                f.sha256
            );
            assert!(f.size > 0);
            match f.url {
                Some(url) => assert!(url.starts_with("https://") || url.starts_with("http://")),
                None => assert!(
                    f.note.is_some(),
                    "{}/{} has neither URL nor note",
                    spec.name,
                    f.path
                ),
            }
        }
        if spec.kind == DatasetKind::Text {
            assert!(spec.main_file().path.ends_with(".txt"), "{}", spec.name);
        }
    }
    assert!(data::spec("nosuch").is_none());
}

#[test]
fn registry_sizes_and_sha256_match_the_shared_files() {
    let Some(root) = shared_root("registry_sizes_and_sha256_match_the_shared_files") else {
        return;
    };
    let mut bad = Vec::new();
    for spec in data::registry() {
        for check in data::verify_dir(spec, &root.join(spec.name)).expect("files readable") {
            if check.status != FileStatus::Ok {
                bad.push(format!(
                    "{}/{}: {:?}",
                    spec.name, check.file.path, check.status
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "registry disagrees with the shared data:\n{}",
        bad.join("\n")
    );
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_shared_file_is_registered() {
    let Some(root) = shared_root("every_shared_file_is_registered") else {
        return;
    };
    let mut files = Vec::new();
    walk(&root, &mut files);
    for path in files {
        let rel = path.strip_prefix(&root).expect("under root");
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel == "README.md" {
            continue;
        }
        let (name, file) = rel.split_once('/').expect("inside a dataset folder");
        let spec = data::spec(name).unwrap_or_else(|| panic!("{name} is not registered"));
        assert!(
            spec.files.iter().any(|f| f.path == file),
            "{rel} is not registered under {name}"
        );
    }
}

#[test]
fn locate_finds_every_dataset_in_the_data_dir() {
    let Some(root) = shared_root("locate_finds_every_dataset_in_the_data_dir") else {
        return;
    };
    let dirs = vec![SearchDir {
        root: root.clone(),
        origin: Origin::DataDir,
    }];
    for spec in data::registry() {
        match data::locate_in(spec, &dirs) {
            Presence::Present { dir, origin } => {
                assert_eq!(dir, root.join(spec.name));
                assert_eq!(origin, Origin::DataDir);
            }
            Presence::Missing { searched } => panic!("{} missing in {searched:?}", spec.name),
        }
    }
    let dir = data::dataset_dir_in(data::require_spec("mnist").unwrap(), &dirs).unwrap();
    assert_eq!(dir, dataset("mnist"));
}

#[test]
fn locate_falls_back_to_the_cache_and_reports_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = SearchDir {
        root: tmp.path().to_path_buf(),
        origin: Origin::DataDir,
    };
    let cache = SearchDir {
        root: data_root(),
        origin: Origin::Cache,
    };
    let spec = data::require_spec("tinystories").unwrap();
    let found = data::locate_in(spec, &[empty.clone(), cache]);
    assert_eq!(found.dir(), Some(dataset("tinystories").as_path()));
    assert!(matches!(
        found,
        Presence::Present {
            origin: Origin::Cache,
            ..
        }
    ));

    // A truncated copy does not count, and the message names the file and what to do.
    std::fs::create_dir(tmp.path().join("tinystories")).unwrap();
    std::fs::write(
        tmp.path().join("tinystories/tinystories_sample.txt"),
        "Once",
    )
    .unwrap();
    let Presence::Missing { searched } = data::locate_in(spec, &[empty]) else {
        panic!("a truncated file must not count as present");
    };
    assert_eq!(searched, vec![tmp.path().join("tinystories")]);
    let msg = data::missing_message(spec, &searched);
    let expected = format!("no dataset 'tinystories' in {}", tmp.path().display());
    assert!(msg.starts_with(&expected), "{msg}");
    assert!(msg.contains("has 4 bytes, expected 3794"), "{msg}");
    assert!(
        msg.contains("run `muse data fetch tinystories` or set MUSE_DATA_DIR"),
        "{msg}"
    );
}

#[test]
fn unknown_names_are_usage_errors_listing_the_registry() {
    let err = data::locate("nosuch").unwrap_err();
    assert!(err.is_usage());
    let msg = err.to_string();
    assert!(
        msg.contains("'nosuch'") && msg.contains("tinyshakespeare, mnist"),
        "{msg}"
    );
    assert!(data::fetch("nosuch").unwrap_err().is_usage());
    assert!(data::dataset_dir("nosuch").unwrap_err().is_usage());
}

#[test]
fn resolve_text_corpus_accepts_a_name_or_a_path() {
    let dirs = shared_dirs();
    let by_name = data::resolve_text_corpus_in("tinyshakespeare", &dirs).unwrap();
    assert_eq!(by_name.path, dataset("tinyshakespeare").join("input.txt"));
    assert_eq!(by_name.name, "tinyshakespeare");

    let file = dataset("tinystories").join("tinystories_sample.txt");
    let by_path = data::resolve_text_corpus_in(file.to_str().unwrap(), &dirs).unwrap();
    assert_eq!(by_path.path, file);
    assert_eq!(by_path.name, "tinystories_sample");

    let err = data::resolve_text_corpus_in("no-such-corpus.txt", &dirs).unwrap_err();
    assert!(err.is_usage());
    assert_eq!(
        err.to_string(),
        "no dataset or file named no-such-corpus.txt; run `muse data list`, or pass a path to a \
         UTF-8 text file"
    );
    let err = data::resolve_text_corpus_in("mnist", &dirs).unwrap_err();
    assert!(
        err.to_string().contains("holds images, not plain text"),
        "{err}"
    );
    let err = data::resolve_text_corpus_in(data_root().to_str().unwrap(), &dirs).unwrap_err();
    assert!(err.to_string().contains("is a folder"), "{err}");
}

#[test]
fn read_text_reads_utf8_and_rejects_empty_or_invalid_files() {
    let text = data::read_text(&dataset("tinyshakespeare").join("input.txt")).unwrap();
    assert!(text.starts_with("First Citizen:"));
    assert_eq!(text.len(), 1_115_394);

    let tmp = tempfile::tempdir().unwrap();
    let bom = tmp.path().join("bom.txt");
    std::fs::write(&bom, "\u{feff}héllo").unwrap();
    assert_eq!(data::read_text(&bom).unwrap(), "héllo");

    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err = data::read_text(&empty).unwrap_err();
    assert!(
        matches!(err, Error::Input(_)) && err.to_string().contains("is empty"),
        "{err}"
    );

    let blank = tmp.path().join("blank.txt");
    std::fs::write(&blank, " \n\t\n").unwrap();
    let err = data::read_text(&blank).unwrap_err();
    assert!(err.to_string().contains("only whitespace"), "{err}");

    // Latin-1 "été" on line 3, first bad byte at offset 12.
    let latin1 = tmp.path().join("latin1.txt");
    std::fs::write(&latin1, b"hello\nworld\n\xe9t\xe9\n").unwrap();
    let err = data::read_text(&latin1).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Input(_)), "{msg}");
    assert!(msg.contains(&latin1.display().to_string()), "{msg}");
    assert!(msg.contains("0xe9 at byte offset 12 (line 3)"), "{msg}");
    assert!(msg.contains("iconv"), "{msg}");

    let err = data::read_text(&tmp.path().join("absent.txt")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn sha256_file_matches_known_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("abc");
    std::fs::write(&path, "abc").unwrap();
    assert_eq!(
        data::sha256_file(&path).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Serves `files` (URL path -> body) over HTTP/1.1 on localhost; counts requests.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match files.get(&path) {
                Some(body) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, hits)
}

fn leak_spec(files: Vec<RemoteFile>) -> &'static DatasetSpec {
    Box::leak(Box::new(DatasetSpec {
        name: "local-test",
        description: "served from localhost",
        license: "MIT",
        kind: DatasetKind::Text,
        files: Box::leak(files.into_boxed_slice()),
    }))
}

fn sha(bytes: &[u8]) -> &'static str {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    data::sha256_file(tmp.path()).unwrap().leak()
}

fn remote(base: &str, path: &'static str, body: &[u8]) -> RemoteFile {
    RemoteFile::remote(
        path,
        format!("{base}/{path}").leak(),
        sha(body),
        body.len() as u64,
    )
}

#[test]
fn fetch_into_downloads_verifies_and_skips_present_files() {
    let a = b"first file\n".repeat(1000);
    let b = b"second, in a subfolder\n".to_vec();
    let files = HashMap::from([
        ("/a.txt".to_string(), a.clone()),
        ("/sub/b.txt".to_string(), b.clone()),
    ]);
    let (base, hits) = serve(files);
    let spec = leak_spec(vec![
        remote(&base, "a.txt", &a),
        remote(&base, "sub/b.txt", &b),
    ]);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("local-test");
    data::fetch_into(spec, &dir).unwrap();
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), a);
    assert_eq!(std::fs::read(dir.join("sub/b.txt")).unwrap(), b);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let roots = [SearchDir {
        root: tmp.path().to_path_buf(),
        origin: Origin::Cache,
    }];
    assert!(matches!(
        data::locate_in(spec, &roots),
        Presence::Present { .. }
    ));

    // Present files are not downloaded again; a removed one is.
    data::fetch_into(spec, &dir).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    std::fs::remove_file(dir.join("sub/b.txt")).unwrap();
    data::fetch_into(spec, &dir).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(
        std::fs::read_dir(dir.join("sub")).unwrap().count(),
        1,
        "no temp files left"
    );
}

#[test]
fn fetch_into_deletes_a_download_with_the_wrong_sha256() {
    let body = b"the server changed this file".to_vec();
    let (base, _) = serve(HashMap::from([("/c.txt".to_string(), body.clone())]));
    let mut file = remote(&base, "c.txt", &body);
    file.sha256 = sha(b"what the registry expected");
    let spec = leak_spec(vec![file]);

    let tmp = tempfile::tempdir().unwrap();
    let err = data::fetch_into(spec, tmp.path()).unwrap_err();
    assert!(matches!(err, Error::Network(_)), "{err}");
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing kept"
    );

    let missing = leak_spec(vec![RemoteFile::remote(
        "gone.txt",
        format!("{base}/gone.txt").leak(),
        sha(b"x"),
        1,
    )]);
    let err = data::fetch_into(missing, tmp.path()).unwrap_err();
    assert!(
        matches!(err, Error::Network(_)) && err.to_string().contains("404"),
        "{err}"
    );
}

#[test]
fn fetch_into_explains_files_that_cannot_be_downloaded() {
    let spec = data::require_spec("eng-fra").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = data::fetch_into(spec, tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Input(_)), "{msg}");
    assert!(msg.contains("cannot be downloaded automatically"), "{msg}");
    assert!(
        msg.contains("fra.txt.gz") && msg.contains("gzip -9 -n"),
        "{msg}"
    );
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
}
