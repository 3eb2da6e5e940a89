//! `cargo xtask test | bench | fuzz [target] [seconds] | interop-env`
//!
//! test: fmt check, clippy (-D warnings), the workspace tests, with the pinned
//! Python peers (aioquic, h2) installed first in a venv under target/.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// Pinned independent peers for interop tests.
const PY_PEERS: &[&str] = &["aioquic==1.7.2", "h2==4.4.1"];
const FUZZ_TARGETS_DEFAULT_SECS: u64 = 60;

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root()?;
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("interop-env") => interop_env(&root).map(|p| println!("{}", p.display())),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\
                 \n  test                     fmt, clippy, all tests incl. interop with aioquic/h2\
                 \n  bench                    benchmarks; prints ratios, writes target/bench/*.json\
                 \n  fuzz [target] [seconds]  build and run fuzz targets (default: all, {FUZZ_TARGETS_DEFAULT_SECS} s each)\
                 \n  interop-env              create the Python venv with the pinned peers, print its python"
            );
            bail!("unknown or missing command");
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask has a parent dir")?
        .to_path_buf())
}

fn run(cmd: &mut Command) -> Result<()> {
    println!("xtask> {cmd:?}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    println!(
        "xtask> done in {:.1}s: {status}",
        start.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("command failed: {cmd:?}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(root: &Path) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The interop tests need the independent peers: install them first, loudly.
    let python = interop_env(root)?;
    // Benchmarks are compiled (clippy above) but not run here: figures belong to
    // `cargo xtask bench`, never to the test run.
    run(cargo()
        .args(["test", "--workspace", "--lib", "--bins", "--tests"])
        .env("MASQUE_INTEROP_PYTHON", &python))?;
    run(cargo().args(["test", "--workspace", "--doc"]))?;
    println!("xtask> all checks passed");
    Ok(())
}

/// Creates (once) target/interop-venv with the pinned peers; returns its python.
fn interop_env(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("interop-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("masque-peers.txt");
    let wanted = PY_PEERS.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    let host_python = env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&host_python).args(["-m", "venv"]).arg(&venv))
        .context("creating the interop venv (needs python3 with venv)")?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PY_PEERS))
    .context("installing the pinned interop peers (aioquic, h2) from PyPI")?;
    run(Command::new(&python).args([
        "-c",
        "import aioquic, h2; print('peers ok', aioquic.__version__)",
    ]))?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn bench(args: &[String]) -> Result<()> {
    std::fs::create_dir_all("target/bench")?;
    // In sequence, never in parallel: both measure the same 2 cores.
    for name in ["h3_datagram_echo", "node_udp_echo"] {
        run(cargo()
            .args(["bench", "-p", "masque-tests", "--bench", name, "--"])
            .args(args))?;
    }
    Ok(())
}

fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let secs: u64 = match args.get(1) {
        Some(s) => s.parse().context("seconds must be a number")?,
        None => FUZZ_TARGETS_DEFAULT_SECS,
    };
    let have_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_fuzz {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root.join("fuzz");
    let targets: Vec<String> = match args.first() {
        Some(t) if t != "all" => vec![t.clone()],
        _ => {
            let out = Command::new("cargo")
                .args(["fuzz", "list"])
                .current_dir(&fuzz_dir)
                .env("RUSTC_BOOTSTRAP", "1")
                .output()?;
            String::from_utf8(out.stdout)?
                .lines()
                .map(str::to_owned)
                .collect()
        }
    };
    if targets.is_empty() {
        bail!("no fuzz targets found");
    }
    for t in &targets {
        // cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
        // (the only one on our machines) accept them.
        run(Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "fuzz",
                "run",
                t,
                "--",
                &format!("-max_total_time={secs}"),
                "-rss_limit_mb=2048",
            ]))?;
    }
    println!(
        "xtask> fuzzed {} target(s) for {secs}s each without a crash",
        targets.len()
    );
    Ok(())
}
