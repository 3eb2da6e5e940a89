//! `masque-node socks5`: a local SOCKS5 server (RFC 1928) whose CONNECTs
//! are TCP tunnels through the proxy (CONNECT-TCP or classic CONNECT) and
//! whose UDP ASSOCIATE relays each destination through its own CONNECT-UDP
//! tunnel. Domain names go to the proxy unresolved. Authentication: none,
//! or username/password (RFC 1929) when configured.

use std::{
    collections::HashMap, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration,
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use masque_client::{ClientError, Target};
use masque_proto::proxy_status::ProxyStatusError;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use crate::{
    client_args::{
        ClientArgs, Counted, FrontArgs, FrontCounters, FrontError, FrontSettings, FrontStats,
        Ready, SharedClient, accept_loop, announce, bind, init_logging, stop_signal,
    },
    socks5_wire::{self as wire, Addr, Credentials, WireError, cmd, method, reply},
};

/// Destinations one UDP association may have at once (each is a tunnel).
pub const MAX_UDP_DESTINATIONS: usize = 64;
/// Datagrams queued per destination while its tunnel opens or is busy.
const UDP_QUEUE: usize = 64;
/// How long a refused UDP destination keeps dropping its datagrams before
/// the next one tries again.
const UDP_REFUSED_HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct Socks5Args {
    /// Local TCP address of the SOCKS5 server (the UDP relay binds on its IP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1080")]
    pub listen: SocketAddr,
    /// Require this username (RFC 1929 username/password); needs --password-file.
    #[arg(long, value_name = "USER", requires = "password_file")]
    pub username: Option<String>,
    /// File whose first line is the password for --username.
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub front: FrontArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Everything [`serve`] needs.
#[derive(Debug, Clone)]
pub struct Socks5Config {
    pub settings: FrontSettings,
    /// Username and password required of clients; `None`: no authentication.
    pub credentials: Option<Credentials>,
    pub client: Arc<SharedClient>,
}

/// The command: build the configuration, serve until Ctrl-C / SIGTERM, log
/// the counters.
pub async fn run(args: Socks5Args) -> Result<()> {
    init_logging();
    let credentials = match (&args.username, &args.password_file) {
        (Some(user), Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let password = text.lines().next().unwrap_or_default();
            if user.is_empty() || user.len() > 255 || password.is_empty() || password.len() > 255 {
                bail!("--username and the password must each be 1-255 bytes");
            }
            Some(Credentials {
                username: user.as_bytes().to_vec(),
                password: password.as_bytes().to_vec(),
            })
        }
        _ => None,
    };
    let options = args.client.options()?;
    let transport = options.transport;
    let config = Socks5Config {
        settings: args.front.settings(args.listen),
        credentials,
        client: Arc::new(SharedClient::new(args.client.proxy.clone(), options)),
    };
    let (ready_tx, ready_rx) = oneshot::channel::<Ready>();
    let proxy = args.client.proxy.clone();
    let mode = args.front.mode.as_str();
    let banner = async move {
        if let Ok(ready) = ready_rx.await {
            println!(
                "socks5: listening on {} -> {proxy} ({transport}, {mode})",
                ready.addr
            );
            println!(
                "try it: curl --socks5-hostname {} https://example.com/",
                ready.addr
            );
        }
    };
    let (served, ()) = tokio::join!(serve(config, stop_signal(), ready_tx), banner);
    let counters = served?;
    tracing::info!(%counters, "socks5: stopped");
    Ok(())
}

/// Serves SOCKS5 on `config.settings.listen` until `shutdown`; `ready` gets
/// the bound address and the live counters. Returns the final counters.
pub async fn serve(
    config: Socks5Config,
    shutdown: impl Future<Output = ()>,
    ready: oneshot::Sender<Ready>,
) -> Result<FrontCounters, FrontError> {
    let listener = bind(&config.settings).await?;
    let addr = listener.local_addr().map_err(|source| FrontError::Bind {
        addr: config.settings.listen,
        source,
    })?;
    let stats = Arc::new(FrontStats::default());
    announce(ready, addr, &stats);
    tracing::info!(%addr, proxy = config.client.url(), "socks5: listening");
    let config = Arc::new(config);
    let counters = accept_loop(
        "socks5",
        listener,
        &config.settings,
        Arc::clone(&stats),
        shutdown,
        |stream, peer| {
            let config = Arc::clone(&config);
            let stats = Arc::clone(&stats);
            async move {
                if let Err(e) = connection(stream, &config, &stats).await {
                    tracing::debug!(%peer, error = %e, "socks5: connection ended");
                }
            }
        },
    )
    .await;
    config.client.close().await;
    Ok(counters)
}

/// Why a SOCKS5 connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("the client closed during the handshake")]
    Eof,
    #[error("no acceptable authentication method")]
    NoMethod,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("tunnel: {0}")]
    Tunnel(ClientError),
}

/// Reads from `stream` into `buf` until `parse` has a whole message (at
/// most `max` bytes); returns it and leaves what followed in `buf`.
async fn read_message<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, WireError>,
) -> Result<T, ConnError> {
    loop {
        if let Some((value, n)) = parse(buf)? {
            buf.drain(..n);
            return Ok(value);
        }
        if buf.len() >= max {
            // Cannot happen with the parsers' own bounds; bounded anyway.
            return Err(ConnError::Wire(WireError::Truncated));
        }
        let mut chunk = [0u8; 512];
        let room = (max - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(ConnError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Greeting, authentication and request, within the handshake timeout.
async fn handshake(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: &Socks5Config,
) -> Result<wire::Request, ConnError> {
    let methods = read_message(stream, buf, wire::MAX_GREETING, wire::parse_greeting).await?;
    let wanted = if config.credentials.is_some() {
        method::USER_PASS
    } else {
        method::NO_AUTH
    };
    if !methods.contains(&wanted) {
        stream
            .write_all(&wire::encode_method(method::NONE_ACCEPTABLE))
            .await?;
        return Err(ConnError::NoMethod);
    }
    stream.write_all(&wire::encode_method(wanted)).await?;
    if let Some(expected) = &config.credentials {
        let got = read_message(stream, buf, wire::MAX_USER_PASS, wire::parse_user_pass).await?;
        let ok = expected.matches(&got);
        stream.write_all(&wire::encode_user_pass_status(ok)).await?;
        if !ok {
            return Err(ConnError::BadCredentials);
        }
    }
    match read_message(stream, buf, wire::MAX_REQUEST, wire::parse_request).await {
        Err(ConnError::Wire(WireError::AddressType(t))) => {
            let r = wire::encode_reply(reply::ADDRESS_TYPE_NOT_SUPPORTED, &Addr::unspecified());
            stream.write_all(&r).await?;
            Err(ConnError::Wire(WireError::AddressType(t)))
        }
        other => other,
    }
}

async fn connection(
    mut stream: TcpStream,
    config: &Socks5Config,
    stats: &Arc<FrontStats>,
) -> Result<(), ConnError> {
    let mut buf = Vec::new();
    let timeout = config.settings.handshake_timeout;
    let request = match tokio::time::timeout(timeout, handshake(&mut stream, &mut buf, config))
        .await
        .unwrap_or(Err(ConnError::Timeout))
    {
        Ok(r) => r,
        Err(e) => {
            match e {
                ConnError::NoMethod | ConnError::BadCredentials => stats.auth_failed(),
                _ => stats.handshake_failed(),
            }
            return Err(e);
        }
    };
    match request.cmd {
        cmd::CONNECT => connect(stream, buf, request.addr, config, stats).await,
        cmd::UDP_ASSOCIATE => udp_associate(stream, request.addr, config, stats).await,
        _ => {
            stream
                .write_all(&wire::encode_reply(
                    reply::COMMAND_NOT_SUPPORTED,
                    &Addr::unspecified(),
                ))
                .await?;
            Ok(())
        }
    }
}

/// CONNECT: a TCP tunnel, then bytes both ways (half-closes passed on).
async fn connect(
    mut stream: TcpStream,
    early: Vec<u8>,
    addr: Addr,
    config: &Socks5Config,
    stats: &Arc<FrontStats>,
) -> Result<(), ConnError> {
    let target = Target::tcp(addr.host(), addr.port());
    let tunnel = match config.client.open_tcp(&target, config.settings.mode).await {
        Ok(t) => t,
        Err(e) => {
            stats.tunnel_refused();
            let code = reply_code(&e);
            tracing::info!(target = %addr, error = %e, code, "socks5: tunnel not opened");
            stream
                .write_all(&wire::encode_reply(code, &Addr::unspecified()))
                .await?;
            return Err(ConnError::Tunnel(e));
        }
    };
    stats.tunnel_opened();
    tracing::debug!(target = %addr, "socks5: tunnel open");
    stream
        .write_all(&wire::encode_reply(reply::SUCCEEDED, &Addr::unspecified()))
        .await?;
    let mut tunnel = Counted::new(tunnel, Arc::clone(stats));
    if !early.is_empty() {
        tunnel.write_all(&early).await?;
    }
    tokio::io::copy_bidirectional(&mut stream, &mut tunnel).await?;
    Ok(())
}

/// The SOCKS5 reply code for a tunnel the proxy did not open, from its
/// `Proxy-Status` error type.
pub fn reply_code(e: &ClientError) -> u8 {
    let ClientError::Refused { details, .. } = e else {
        return reply::GENERAL_FAILURE;
    };
    let Some(error) = details.iter().find_map(|d| d.error) else {
        return reply::GENERAL_FAILURE;
    };
    match error {
        ProxyStatusError::ConnectionRefused => reply::CONNECTION_REFUSED,
        ProxyStatusError::ConnectionTimeout
        | ProxyStatusError::DestinationUnavailable
        | ProxyStatusError::DestinationNotFound
        | ProxyStatusError::DnsError
        | ProxyStatusError::DnsTimeout => reply::HOST_UNREACHABLE,
        ProxyStatusError::DestinationIpUnroutable => reply::NETWORK_UNREACHABLE,
        ProxyStatusError::DestinationIpProhibited => reply::NOT_ALLOWED,
        _ => reply::GENERAL_FAILURE,
    }
}

/// UDP ASSOCIATE: a relay socket on the listener's IP; each destination
/// gets its own CONNECT-UDP tunnel. Ends when the control connection does.
async fn udp_associate(
    mut ctrl: TcpStream,
    requested: Addr,
    config: &Socks5Config,
    stats: &Arc<FrontStats>,
) -> Result<(), ConnError> {
    let local_ip = ctrl.local_addr()?.ip();
    let client_ip = ctrl.peer_addr()?.ip();
    let socket = match UdpSocket::bind((local_ip, 0)).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            ctrl.write_all(&wire::encode_reply(
                reply::GENERAL_FAILURE,
                &Addr::unspecified(),
            ))
            .await?;
            return Err(e.into());
        }
    };
    let relay = socket.local_addr()?;
    ctrl.write_all(&wire::encode_reply(reply::SUCCEEDED, &Addr::Ip(relay)))
        .await?;
    // The client named the port it sends from, or 0 (unknown yet).
    let want_port = match &requested {
        Addr::Ip(a) if a.port() != 0 => Some(a.port()),
        _ => None,
    };
    let mut client: Option<SocketAddr> = None;
    let mut dests: HashMap<Addr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks: JoinSet<Addr> = JoinSet::new();
    let mut ctrl_buf = [0u8; 64];
    let mut dgram = vec![0u8; 65536];
    loop {
        tokio::select! {
            r = ctrl.read(&mut ctrl_buf) => match r {
                // RFC 1928 §7: the association ends with the TCP connection.
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(addr) = done {
                    dests.remove(&addr);
                }
            }
            r = socket.recv_from(&mut dgram) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "socks5: UDP relay receive failed");
                        continue;
                    }
                };
                let expected = from.ip() == client_ip
                    && want_port.is_none_or(|p| p == from.port())
                    && client.is_none_or(|c| c == from);
                if !expected {
                    stats.udp_drop();
                    continue;
                }
                client = Some(from);
                let header = match wire::parse_udp(&dgram[..n]) {
                    Ok(h) => h,
                    Err(_) => {
                        stats.udp_drop();
                        continue;
                    }
                };
                if header.frag != 0 {
                    stats.udp_frag();
                    continue;
                }
                let payload = Bytes::copy_from_slice(&dgram[header.len..n]);
                let tx = match dests.get(&header.addr) {
                    Some(tx) => tx.clone(),
                    None if dests.len() >= MAX_UDP_DESTINATIONS => {
                        stats.udp_drop();
                        continue;
                    }
                    None => {
                        let (tx, rx) = mpsc::channel(UDP_QUEUE);
                        dests.insert(header.addr.clone(), tx.clone());
                        tasks.spawn(udp_destination(
                            header.addr.clone(),
                            rx,
                            Arc::clone(&socket),
                            from,
                            Arc::clone(&config.client),
                            Arc::clone(stats),
                        ));
                        tx
                    }
                };
                if tx.try_send(payload).is_err() {
                    stats.udp_drop();
                }
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One destination of an association: its CONNECT-UDP tunnel, datagrams
/// both ways. Returns its address when it ends.
async fn udp_destination(
    addr: Addr,
    mut rx: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<SharedClient>,
    stats: Arc<FrontStats>,
) -> Addr {
    let target = Target::udp(addr.host(), addr.port());
    let mut session = match shared.open_udp(&target).await {
        Ok(s) => s,
        Err(e) => {
            stats.tunnel_refused();
            tracing::info!(target = %addr, error = %e, "socks5: UDP tunnel not opened");
            // Datagrams for it are dropped for a while instead of each
            // asking the proxy again.
            let hold = tokio::time::sleep(UDP_REFUSED_HOLD);
            tokio::pin!(hold);
            loop {
                tokio::select! {
                    () = &mut hold => break,
                    d = rx.recv() => match d {
                        Some(_) => stats.udp_drop(),
                        None => break,
                    },
                }
            }
            return addr;
        }
    };
    stats.tunnel_opened();
    let sender = session.sender();
    loop {
        tokio::select! {
            d = rx.recv() => {
                let Some(payload) = d else { break };
                match sender.send(&payload).await {
                    Ok(()) => stats.udp_up(payload.len()),
                    Err(ClientError::PayloadTooLarge { .. } | ClientError::BufferFull) => {
                        stats.udp_drop();
                    }
                    Err(e) => {
                        tracing::debug!(target = %addr, error = %e, "socks5: UDP tunnel send failed");
                        break;
                    }
                }
            }
            d = session.recv() => {
                let Some(payload) = d else { break };
                let out = wire::encode_udp(&addr, &payload);
                if socket.send_to(&out, client).await.is_ok() {
                    stats.udp_down(payload.len());
                } else {
                    stats.udp_drop();
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), session.close()).await;
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, proxy_status: &str) -> ClientError {
        ClientError::Refused {
            status: http::StatusCode::from_u16(status).expect("status"),
            proxy_status: Some(proxy_status.to_owned()),
            details: masque_proto::proxy_status::parse(proxy_status.as_bytes())
                .expect("Proxy-Status"),
        }
    }

    #[test]
    fn refusals_map_to_reply_codes() {
        for (error, code) in [
            ("connection_refused", reply::CONNECTION_REFUSED),
            ("connection_timeout", reply::HOST_UNREACHABLE),
            ("destination_unavailable", reply::HOST_UNREACHABLE),
            ("dns_error", reply::HOST_UNREACHABLE),
            ("dns_timeout", reply::HOST_UNREACHABLE),
            ("destination_ip_unroutable", reply::NETWORK_UNREACHABLE),
            ("destination_ip_prohibited", reply::NOT_ALLOWED),
            ("proxy_internal_error", reply::GENERAL_FAILURE),
        ] {
            let e = refused(502, &format!("masque-node; error={error}"));
            assert_eq!(reply_code(&e), code, "{error}");
        }
        assert_eq!(
            reply_code(&refused(407, "masque-node")),
            reply::GENERAL_FAILURE
        );
        assert_eq!(reply_code(&ClientError::Closed), reply::GENERAL_FAILURE);
    }
}
