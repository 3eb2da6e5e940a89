//! `cargo xtask test | bench | fuzz [target] [seconds] | interop-env`
//!
//! test: fmt check, clippy (-D warnings), the workspace tests, with the pinned
//! Python peers (aioquic, h2) installed first in a venv under target/; then the
//! fuzz crate on stable: every target built and replayed over fuzz/seeds/.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Pinned independent peers for interop tests.
const PY_PEERS: &[&str] = &["aioquic==1.7.2", "h2==4.4.1"];
const FUZZ_TARGETS_DEFAULT_SECS: u64 = 60;
/// Wall-clock limit for one test command (build included), so that a test
/// that hangs fails CI in minutes instead of running into CI's own limit.
/// Override with MASQUE_TEST_TIME_LIMIT_SECS.
const TEST_TIME_LIMIT_DEFAULT_SECS: u64 = 15 * 60;

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root()?;
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("interop-env") => interop_env(&root).map(|p| println!("{}", p.display())),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\
                 \n  test                     fmt, clippy, all tests incl. interop with aioquic/h2, fuzz corpus replay\
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
    run_within(cmd, None)
}

/// Runs `cmd` to its end; with a `limit`, once that has passed kills it and
/// every process it started (cargo, the test binaries, the peers they spawned).
fn run_within(cmd: &mut Command, limit: Option<Duration>) -> Result<()> {
    match limit {
        Some(limit) => println!("xtask> {cmd:?} (time limit {}s)", limit.as_secs()),
        None => println!("xtask> {cmd:?}"),
    }
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(limit) = limit
            && start.elapsed() >= limit
        {
            let mut doomed = descendants(child.id());
            doomed.push(child.id());
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(doomed.iter().map(u32::to_string))
                .status();
            let _ = child.wait();
            bail!(
                "{cmd:?} still running after {}s: killed with {} process(es) it started \
                 (the log above names any test that ran for over 60 seconds)",
                limit.as_secs(),
                doomed.len() - 1
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    println!(
        "xtask> done in {:.1}s: {status}",
        start.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("command failed: {cmd:?}");
    }
    Ok(())
}

/// Every process below `root`, from the parent ids in /proc/*/stat.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn test_time_limit() -> Result<Duration> {
    let secs = match env::var("MASQUE_TEST_TIME_LIMIT_SECS") {
        Ok(s) => s
            .parse()
            .context("MASQUE_TEST_TIME_LIMIT_SECS must be a number of seconds")?,
        Err(_) => TEST_TIME_LIMIT_DEFAULT_SECS,
    };
    Ok(Duration::from_secs(secs))
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
    let limit = test_time_limit()?;
    run_within(
        cargo()
            .args(["test", "--workspace", "--lib", "--bins", "--tests"])
            .env("MASQUE_INTEROP_PYTHON", &python),
        Some(limit),
    )?;
    run_within(cargo().args(["test", "--workspace", "--doc"]), Some(limit))?;
    fuzz_replay(root, limit)?;
    println!("xtask> all checks passed");
    Ok(())
}

/// The fuzz crate on stable, without cargo-fuzz: fmt, clippy, then its tests,
/// which build every libFuzzer binary (so no target rots) and replay each
/// target's body over its seed corpus `fuzz/seeds/<target>/`. It has its own
/// lockfile (same versions as the workspace's); it builds in the workspace
/// target dir so that a dependency whose features also agree is built once.
/// Cost on a cold target dir: about 1.5 minutes on 2 cores; warm: seconds.
fn fuzz_replay(root: &Path, limit: Duration) -> Result<()> {
    let manifest = root.join("fuzz").join("Cargo.toml");
    let target_dir = root.join("target");
    run(cargo()
        .args(["fmt", "--check", "--manifest-path"])
        .arg(&manifest))?;
    run(cargo()
        .args(["clippy", "--all-targets", "--manifest-path"])
        .arg(&manifest)
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", &target_dir))?;
    // Never `--all-targets` here: a fuzz binary built as a test would start
    // libFuzzer and fuzz until killed.
    run_within(
        cargo()
            .args(["test", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir),
        Some(limit),
    )
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
    for name in [
        "h3_datagram_echo",
        "node_udp_echo",
        "transport_echo",
        "tcp_bulk",
        "ip_throughput",
        "relay_throughput",
        "racer_fallback",
        "pool_first_tunnel",
    ] {
        run(cargo()
            .args(["bench", "-p", "masque-tests", "--bench", name, "--"])
            .args(args))?;
    }
    run(cargo()
        .args([
            "bench",
            "-p",
            "masque-registry",
            "--bench",
            "ip_lookup",
            "--",
        ])
        .args(args))?;
    Ok(())
}

/// `cargo xtask soak [minutes]`: the churn soak (tests/benches/soak.rs),
/// optimised like the benchmarks.
fn soak(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "-p",
        "masque-tests",
        "--bench",
        "soak",
        "--",
        "--bench",
    ]);
    if let Some(m) = args.first() {
        m.parse::<f64>()
            .context("minutes must be a number (e.g. 1 or 0.5)")?;
        cmd.args(["--minutes", m]);
    }
    run(&mut cmd)
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
        // New inputs go to fuzz/corpus/<t> (git-ignored); the seeds kept in git,
        // fuzz/seeds/<t>, are read as a second corpus.
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        // cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
        // (the only one on our machines) accept them.
        run(Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", t])
            .arg(&corpus)
            .arg(fuzz_dir.join("seeds").join(t))
            .args([
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
