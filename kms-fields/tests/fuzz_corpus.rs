//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the property
//! function its cargo-fuzz target calls (`kms_fields::fuzzing`), on stable, as an ordinary
//! test. A crash the fuzzer found is kept by adding its input to the corpus: from then on this
//! test fails until the defect is fixed.
//!
//! `KMS_FIELDS_WRITE_FUZZ_SEEDS=1 cargo test -p kms-fields --all-features --test fuzz_corpus --
//! --ignored write_seed_corpus` regenerates the seed files from the crate's
//! encoders and the Ruby vectors (`tests/data/kms_encrypted_lockbox.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kms_fields::fuzzing::{TARGETS, seeds};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn vectors() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kms_encrypted_lockbox.json"),
    )
    .unwrap()
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let dir = corpus_root().join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: no corpus files");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} broke a property",
                file.display()
            );
            replayed += 1;
        }
    }
    eprintln!(
        "replayed {replayed} corpus files through {} targets",
        TARGETS.len()
    );
}

/// The committed seeds are exactly what the generator makes (so the corpus cannot drift from
/// the encoders unnoticed), except for inputs the fuzzer added.
#[test]
fn seed_files_match_the_generator() {
    for (target, name, bytes) in seeds(&vectors()) {
        let path = corpus_root().join(target).join(format!("seed-{name}"));
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // sealed values and wraps use fresh random keys and nonces: compare only the stable ones
        if stored != bytes {
            assert!(
                ["kms_box", "blind_index_key", "providers"].contains(&target),
                "{} differs from the generator",
                path.display()
            );
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*: run with KMS_FIELDS_WRITE_FUZZ_SEEDS=1"]
fn write_seed_corpus() {
    if std::env::var_os("KMS_FIELDS_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    for (target, name, bytes) in seeds(&vectors()) {
        let dir = corpus_root().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
