//! Stream tunnels relayed: the upstream `TcpTunnel` (CONNECT-TCP to the next
//! hop, whatever the client asked of us) is the target stream, opened before
//! our 2xx like a TCP connection would be (CTCP-09).

use masque_client::{Target, TcpMode};
use masque_server::{Refusal, TargetStream, TcpTarget};

use super::{refusal, upstream::Upstream};

pub(super) async fn open(
    upstream: &Upstream,
    headers: http::HeaderMap,
    target: &TcpTarget,
) -> Result<TargetStream, Refusal> {
    let hp = &target.target;
    let target = Target::tcp(hp.host.to_string(), hp.port.get());
    let tunnel = upstream
        .open_tcp(&target, TcpMode::ConnectTcp, headers)
        .await
        .map_err(|e| refusal(upstream, e))?;
    Ok(TargetStream::Io(Box::new(tunnel)))
}
