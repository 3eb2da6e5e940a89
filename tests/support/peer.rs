//! Running the Python peers of tests/interop/ against a node's TLS/TCP
//! listener: the interop Python (created when missing), the arguments every
//! peer takes, the node's certificate in a file for them, and reading the
//! flat JSON lines they print.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::{
    interop_python, interop_script,
    node::{TestNode, udp_echo},
};

/// Upper bound for creating the venv when it is missing.
const VENV_LIMIT: Duration = Duration::from_secs(600);

/// The interop Python, creating the venv (`cargo xtask interop-env`) if it is
/// missing; `None`, after printing why, only when it cannot be created.
pub async fn python_or_skip() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if let Some(p) = PYTHON.get() {
        return report(p);
    }
    let made = tokio::task::spawn_blocking(find_or_create_python)
        .await
        .unwrap_or_else(|e| Err(format!("venv setup panicked: {e}")));
    report(PYTHON.get_or_init(|| made))
}

fn report(p: &Result<PathBuf, String>) -> Option<PathBuf> {
    match p {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            println!("SKIPPED: the interop venv cannot be created here: {why}");
            None
        }
    }
}

fn find_or_create_python() -> Result<PathBuf, String> {
    if let Ok(p) = interop_python() {
        return Ok(p);
    }
    // The same command CI runs, with its own target dir so that it does not
    // wait for the build lock of the `cargo test` that runs us.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut child = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "interop-env"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target/interop-xtask"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `cargo xtask interop-env`: {e}"))?;
    let deadline = std::time::Instant::now() + VENV_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`cargo xtask interop-env` took over {VENV_LIMIT:?}"
                ));
            }
            Err(e) => return Err(format!("waiting for `cargo xtask interop-env`: {e}")),
        }
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!(
            "`cargo xtask interop-env` failed ({status}): {err}"
        ));
    }
    interop_python().map_err(|e| e.to_string())
}

/// A file removed on drop.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `node`'s certificate (PEM) in a temp file of its own, for a client to
/// trust.
pub fn node_ca_file(node: &TestNode) -> Result<TempFile> {
    let path = std::env::temp_dir().join(format!(
        "masque-node-ca-{}-{}.pem",
        std::process::id(),
        crate::unique()
    ));
    std::fs::write(&path, node.cert.cert_pem())?;
    Ok(TempFile(path))
}

/// What every peer is told: the node's TLS/TCP port, the port of a UDP echo
/// target on 127.0.0.1, and the node's certificate.
pub struct PeerArgs {
    pub tcp_port: u16,
    pub target_port: u16,
    pub ca: TempFile,
}

impl PeerArgs {
    /// For `node`, with a UDP echo target of its own.
    pub async fn start(node: &TestNode) -> Result<Self> {
        let tcp = node
            .node
            .tcp_addr()
            .context("the node started without its TLS/TCP listener")?;
        let target = udp_echo().await?;
        Ok(Self {
            tcp_port: tcp.port(),
            target_port: target.port(),
            ca: node_ca_file(node)?,
        })
    }

    /// `python` running tests/interop/`script` with `--port`,
    /// `--target-port` and `--ca`; the caller adds the rest.
    pub fn command(&self, python: &Path, script: &str) -> Command {
        let mut c = Command::new(python);
        c.arg(interop_script(script))
            .args(["--port", &self.tcp_port.to_string()])
            .args(["--target-port", &self.target_port.to_string()])
            .arg("--ca")
            .arg(self.ca.path());
        c
    }
}

/// The raw text of `key`'s value in a flat one-line JSON object printed by
/// Python's `json.dumps` (`"key": value`), up to the next `,` or `}`. Only
/// for numbers, booleans, null and strings without those characters.
pub fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let start = json.find(&pat)? + pat.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// [`field`] as a number; an error names the key and the line.
pub fn number(json: &str, key: &str) -> Result<u64> {
    let v = field(json, key).with_context(|| format!("no `{key}` in {json}"))?;
    v.parse()
        .with_context(|| format!("`{key}` is {v}, not a number, in {json}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_flat_json() {
        let j = r#"{"a": 1, "ok": true, "s": "x", "n": null, "d": {"k": 2}}"#;
        assert_eq!(field(j, "a"), Some("1"));
        assert_eq!(field(j, "ok"), Some("true"));
        assert_eq!(field(j, "s"), Some("\"x\""));
        assert_eq!(field(j, "n"), Some("null"));
        assert_eq!(field(j, "k"), Some("2"));
        assert_eq!(field(j, "missing"), None);
        assert!(number(j, "s").is_err(), "a string is not a number");
        let j = r#"{"event": "ready", "stage": "tls", "connections": 20, "ok": true}"#;
        assert_eq!(field(j, "event"), Some("\"ready\""));
        assert_eq!(field(j, "connections"), Some("20"));
        assert_eq!(field(j, "ok"), Some("true"));
        assert_eq!(field(j, "missing"), None);
    }
}
