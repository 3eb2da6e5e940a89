//! curl, an independent HTTP/2 and HTTP/1.1 client, against the node's
//! TLS/TCP listener. curl cannot speak CONNECT-UDP, so these pin what a
//! general-purpose client meets there: ALPN `h2` and `http/1.1`, a plain
//! request answered as no tunnel request (405, no Proxy-Status: PS-04), and
//! classic CONNECT through the node as an HTTPS proxy to a port where
//! nothing listens, answered 502 `connection_refused` (CC-09, RFC 9931: the
//! refused CONNECT closes the connection). The working tunnel through curl
//! is in tcp_interop.rs.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, Result, ensure};
use masque_tests::{node::TestNode, peer::node_ca_file};
use tokio::process::Command;

const CURL_LIMIT: Duration = Duration::from_secs(20);

async fn curl(args: &[&str]) -> Result<(bool, String, String)> {
    let out = tokio::time::timeout(
        CURL_LIMIT,
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("curl timed out")?
    .context("running curl (install it: apt-get install curl)")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A request that is no tunnel request, over HTTP/2 and over HTTP/1.1: 405
/// without Proxy-Status, on the protocol ALPN chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_plain_get_is_405_on_h2_and_h1() -> Result<()> {
    let node = TestNode::start(true).await?;
    let tcp = node.node.tcp_addr().context("the node serves TCP")?;
    let ca = node_ca_file(&node)?;
    let url = format!("https://localhost:{}/", tcp.port());
    let resolve = format!("localhost:{}:127.0.0.1", tcp.port());
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out, err) = curl(&[
            flag,
            "--cacert",
            ca.path().to_str().context("path")?,
            "--resolve",
            &resolve,
            "--include",
            "--output",
            "-",
            "--write-out",
            "\n%{http_code} %{http_version}",
            &url,
        ])
        .await?;
        ensure!(ok, "curl {flag} failed: {err}");
        let last = out.lines().last().unwrap_or_default();
        ensure!(
            last == format!("405 {version}"),
            "curl {flag}: {last:?}\n{out}"
        );
        let head = out.to_ascii_lowercase();
        ensure!(
            !head.contains("proxy-status"),
            "405 carries no Proxy-Status: {out}"
        );
        if version == "1.1" {
            ensure!(head.contains("connection: close"), "RFC 9931 close: {out}");
        }
    }
    let t = node.node.metrics();
    let (h2, h1) = (
        t.transport(masque_transport::Transport::H2).snapshot(),
        t.transport(masque_transport::Transport::H1).snapshot(),
    );
    ensure!(h2.requests == 1 && h1.requests == 1, "{h2:?} {h1:?}");
    ensure!(h2.tunnels == 0 && h1.tunnels == 0);
    node.node.shutdown().await;
    Ok(())
}

/// curl using the node as an HTTPS proxy for plain HTTP: classic CONNECT over
/// HTTP/1.1 to a closed port, refused with 502 and a Proxy-Status naming
/// connection_refused; curl reports the refused CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_classic_connect_to_a_closed_port_is_502() -> Result<()> {
    let node = TestNode::start(true).await?;
    let tcp = node.node.tcp_addr().context("the node serves TCP")?;
    let ca = node_ca_file(&node)?;
    let proxy = format!("https://localhost:{}", tcp.port());
    let resolve = format!("localhost:{}:127.0.0.1", tcp.port());
    let (ok, _out, err) = curl(&[
        "--proxytunnel",
        "--proxy",
        &proxy,
        "--proxy-cacert",
        ca.path().to_str().context("path")?,
        "--resolve",
        &resolve,
        "--verbose",
        "http://127.0.0.1:9/",
    ])
    .await?;
    ensure!(!ok, "the tunnel must be refused");
    ensure!(
        err.contains("CONNECT 127.0.0.1:9 HTTP/1.1") && err.contains("502"),
        "curl did not see a 502 to its CONNECT:\n{err}"
    );
    ensure!(
        err.to_ascii_lowercase().contains("proxy-status:") && err.contains("connection_refused"),
        "the 502 names its cause:\n{err}"
    );
    let h1 = node
        .node
        .metrics()
        .transport(masque_transport::Transport::H1)
        .snapshot();
    ensure!(h1.requests == 1 && h1.tunnels == 0, "{h1:?}");
    node.node.shutdown().await;
    Ok(())
}
