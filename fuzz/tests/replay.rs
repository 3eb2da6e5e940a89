//! Stable replay of the fuzz targets over the seed corpora: every file of
//! `seeds/<target>/` (kept in git; `corpus/` is cargo-fuzz's ignored working
//! corpus), and every prefix of it, goes through the target's body.
//! Needs neither nightly nor cargo-fuzz; `cargo xtask test` runs it, so the
//! targets compile and their seeds pass on every change. A crash found by
//! `cargo xtask fuzz` is kept by copying its input into the target's folder.

use std::{fs, panic, path::Path};

#[test]
fn every_target_over_its_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut failures = Vec::new();
    for &(name, run) in masque_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no seeds", dir.display());
        let (mut inputs, mut bytes) = (0, 0);
        for file in &files {
            let data = fs::read(file).expect("seed readable");
            bytes += data.len();
            for end in 0..=data.len() {
                inputs += 1;
                if panic::catch_unwind(|| run(&data[..end])).is_err() {
                    failures.push(format!("{name}: {} (first {end} bytes)", file.display()));
                    break;
                }
            }
        }
        println!(
            "{name}: {} seeds, {bytes} bytes, {inputs} inputs",
            files.len()
        );
    }
    assert!(
        failures.is_empty(),
        "fuzz targets panicked on:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_binary_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    for &(name, _) in masque_fuzz::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name}: no [[bin]]"
        );
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file()
        );
        assert!(root.join("seeds").join(name).is_dir(), "{name}: no seeds/");
    }
}
