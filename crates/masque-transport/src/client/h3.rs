//! HTTP/3 client adapter (masque-h3 on quinn): extended CONNECT after the
//! proxy's SETTINGS, QUIC DATAGRAMs when both sides enabled them, DATAGRAM
//! capsules otherwise (R9297-12, R9297-31).

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use http::uri::{Authority, PathAndQuery};
use masque_h3::{Code, RequestHead, RequestStream, message::Protocol};
use masque_proto::request::RequestForm;

use super::{
    ClientConfig, ConnectError, OpenError, Opened, ResponseHead, TunnelHead, capsule_datagrams,
};
use crate::{
    server::TunnelLimits,
    socket_buffers::{BufferSizes, DEFAULT_QUIC_SOCKET_BUFFER, bind_udp},
    tls::{ALPN_H3, quic_client_config},
    tunnel::{BodyRx, BodyTx, DatagramRx, DatagramTx, OpenTunnel, TunnelError},
};

/// Smallest QUIC MTU (RFC 9000 §14) and the largest UDP payload.
const MTU_RANGE: (u16, u16) = (1200, 65527);

/// QUIC settings of a client connection.
#[derive(Debug, Clone)]
pub struct QuicClientConfig {
    /// Initial MTU, clamped to 1200..=65527. 1452 lets 1200-byte payloads fit
    /// from the first packet on common paths; PMTUD raises it later.
    pub initial_mtu: u16,
    /// Floor of quinn's black-hole detection (clamped to 1200..=`initial_mtu`).
    pub min_mtu: u16,
    /// Idle timeout (keep-alives every 15 s keep idle tunnels up).
    pub idle_timeout: Duration,
    /// `SO_RCVBUF` / `SO_SNDBUF` asked for the endpoint's socket.
    pub socket_recv_buffer: usize,
    pub socket_send_buffer: usize,
}

impl Default for QuicClientConfig {
    fn default() -> Self {
        Self {
            initial_mtu: 1452,
            min_mtu: 1200,
            idle_timeout: Duration::from_secs(60),
            socket_recv_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
            socket_send_buffer: DEFAULT_QUIC_SOCKET_BUFFER,
        }
    }
}

#[derive(Debug)]
pub(super) struct H3Client {
    conn: masque_h3::Connection,
    /// The endpoint we bound, with its socket buffers; `None` for a wrapped
    /// connection.
    endpoint: Option<(quinn::Endpoint, BufferSizes)>,
}

impl H3Client {
    pub(super) fn wrap(
        conn: masque_h3::Connection,
        endpoint: Option<(quinn::Endpoint, BufferSizes)>,
    ) -> Self {
        Self { conn, endpoint }
    }

    /// Binds an endpoint, runs the QUIC handshake and starts HTTP/3.
    pub(super) async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Self, ConnectError> {
        let q = &config.quic;
        let mut transport = masque_h3::transport_config(0);
        let initial_mtu = q.initial_mtu.clamp(MTU_RANGE.0, MTU_RANGE.1);
        transport
            .initial_mtu(initial_mtu)
            .min_mtu(q.min_mtu.clamp(MTU_RANGE.0, initial_mtu))
            .max_idle_timeout(q.idle_timeout.try_into().ok());
        let quic = quic_client_config(&config.verification, &[ALPN_H3], Arc::new(transport))?;
        let bind = config.bind.unwrap_or(match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        });
        let (socket, buffers) = bind_udp(
            bind,
            q.socket_recv_buffer,
            q.socket_send_buffer,
            "client QUIC socket buffers",
        )?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(quic);
        let connection = endpoint.connect(addr, server_name)?.await?;
        let conn = masque_h3::Connection::client(connection, config.h3.clone())
            .await
            .map_err(TunnelError::from)?;
        Ok(Self::wrap(conn, Some((endpoint, buffers))))
    }

    pub(super) fn connection(&self) -> &masque_h3::Connection {
        &self.conn
    }

    pub(super) fn socket_buffers(&self) -> Option<BufferSizes> {
        self.endpoint.as_ref().map(|(_, b)| *b)
    }

    pub(super) async fn open(
        &self,
        head: &TunnelHead,
        limits: TunnelLimits,
        limit: Duration,
    ) -> Result<Opened, OpenError> {
        let request = request_head(head)?;
        // XC-04 / R9297-12: the proxy's SETTINGS decide what may be sent.
        let peer = tokio::time::timeout(limit, self.conn.peer_settings())
            .await
            .map_err(|_| OpenError::Timeout("HTTP/3 SETTINGS"))?
            .map_err(h3_open_error)?;
        if request.protocol.is_some() && !peer.enable_connect_protocol {
            return Err(OpenError::ExtendedConnectDisabled);
        }
        let datagrams =
            head.datagrams && peer.h3_datagram && self.conn.quic().max_datagram_size().is_some();
        let mut stream = tokio::time::timeout(limit, self.conn.open_request(&request, datagrams))
            .await
            .map_err(|_| OpenError::Timeout("HTTP/3 request stream"))?
            .map_err(h3_open_error)?;
        let response = match tokio::time::timeout(limit, stream.recv_response()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(abort(stream, h3_open_error(e))),
            Err(_) => return Err(abort(stream, OpenError::Timeout("HTTP/3 response"))),
        };
        let response = ResponseHead {
            status: response.status,
            headers: response.headers,
        };
        if !response.status.is_success() {
            return Err(abort(stream, OpenError::Refused(response)));
        }
        let stream_id = stream.stream_id();
        let native = match stream.take_datagrams() {
            Some(rx) => match stream.send.datagram_sender().await {
                Ok(tx) => Some((DatagramTx::H3(tx), DatagramRx::H3(rx))),
                // Checked above; a race with the connection's end lands here.
                Err(masque_h3::Error::DatagramsUnsupported) => None,
                Err(e) => return Err(abort(stream, h3_open_error(e))),
            },
            None => None,
        };
        let (datagram_tx, datagram_rx, capsules) = match native {
            Some((tx, rx)) => (tx, Some(rx), None),
            None => {
                let (tx, q) = capsule_datagrams(limits);
                (tx, None, Some(q))
            }
        };
        let (send, recv, _) = stream.into_parts();
        Ok(Opened {
            response,
            tunnel: OpenTunnel {
                body_tx: BodyTx::H3(send),
                body_rx: BodyRx::H3(recv),
                datagram_tx,
                datagram_rx,
                capsules,
            },
            stream_id,
        })
    }

    pub(super) async fn goaway(&self) {
        let _ = self.conn.goaway().await;
    }

    pub(super) async fn shutdown(&self, limit: Duration) {
        if self.conn.shutdown(limit).await.is_err() {
            self.close();
        }
        self.wait_idle(limit.min(Duration::from_secs(1))).await;
    }

    pub(super) fn close(&self) {
        self.conn.close(Code::NO_ERROR, b"");
    }

    pub(super) async fn wait_idle(&self, limit: Duration) {
        if let Some((endpoint, _)) = &self.endpoint {
            let _ = tokio::time::timeout(limit, endpoint.wait_idle()).await;
        }
    }

    /// Resolves once the QUIC connection has ended.
    pub(super) async fn closed(&self) {
        self.conn.quic().closed().await;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.conn.quic().close_reason().is_some()
    }
}

/// The HTTP/3 request head of `head` (RFC 9220 §3 / RFC 9114 §4.4).
fn request_head(head: &TunnelHead) -> Result<RequestHead, OpenError> {
    let invalid = |what: &str| OpenError::InvalidRequest(what.to_owned());
    let mut request = match &head.form {
        RequestForm::Extended {
            protocol,
            authority,
            path,
        } => {
            let protocol =
                Protocol::from_bytes(protocol.as_bytes()).ok_or_else(|| invalid(":protocol"))?;
            let authority = Authority::from_str(authority).map_err(|_| invalid(":authority"))?;
            let path = PathAndQuery::from_str(path).map_err(|_| invalid(":path"))?;
            RequestHead::extended_connect(protocol, head.scheme.clone(), authority, path)
        }
        RequestForm::Classic { authority } => {
            RequestHead::connect(Authority::from_str(authority).map_err(|_| invalid(":authority"))?)
        }
    };
    request.headers = head.headers.clone();
    Ok(request)
}

fn h3_open_error(e: masque_h3::Error) -> OpenError {
    match e {
        masque_h3::Error::PeerSettingMissing("SETTINGS_ENABLE_CONNECT_PROTOCOL") => {
            OpenError::ExtendedConnectDisabled
        }
        masque_h3::Error::GoingAway => OpenError::GoingAway,
        e => OpenError::Tunnel(e.into()),
    }
}

/// Ends a request whose response is not a tunnel and returns `err`.
fn abort(mut stream: RequestStream, err: OpenError) -> OpenError {
    stream.send.reset(Code::REQUEST_CANCELLED);
    stream.recv.stop(Code::REQUEST_CANCELLED);
    err
}
