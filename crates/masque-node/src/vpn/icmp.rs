//! The vpn's own ICMP: the R9484-49 MTU probe and Packet Too Big for the
//! host (R9484-55).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use masque_client::{ClientError, IpSession};

/// All-nodes link-local multicast: the probe's destination when the peer's
/// address is unknown (R9484-49).
pub(super) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Echo data that makes the probe a 1280-byte IPv6 packet (40 + 8 + 1232).
const PROBE_DATA: usize = 1232;

/// R9484-49: an endpoint with an IPv6 address must know that the tunnel
/// carries 1280-byte packets: an ICMPv6 Echo Request with 1232 data bytes
/// to `ff02::1` from `me` must be answered (3 tries, 2 s each), else the
/// tunnel is torn down. Other packets that arrive meanwhile are dropped (the
/// TUN is not up yet).
pub async fn mtu_probe(session: &mut IpSession, me: Ipv6Addr) -> Result<()> {
    use masque_proto::icmp::{DEFAULT_TTL, EchoKind, write_echo_packet};

    let data = vec![0x6d; PROBE_DATA];
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    for seq in 1..=3u16 {
        let mut probe = Vec::with_capacity(1280);
        write_echo_packet(
            &mut probe,
            EchoKind::Request,
            me.into(),
            ALL_NODES.into(),
            DEFAULT_TTL,
            id,
            seq,
            &data,
        )
        .context("building the MTU probe")?;
        session
            .send_ip_packet(&probe)
            .await
            .context("the tunnel cannot carry a 1280-byte IPv6 packet (R9484-49)")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match session.recv(left).await {
                Ok(p) if is_probe_reply(&p, id, seq) => return Ok(()),
                Ok(_) => {}
                Err(ClientError::Timeout(_)) => break,
                Err(e) => return Err(anyhow!(e).context("waiting for the MTU probe's reply")),
            }
        }
    }
    bail!(
        "no reply to a 1280-byte ICMPv6 Echo Request to ff02::1 through the tunnel: it cannot \
         carry IPv6 (R9484-49); --no-mtu-probe skips the check"
    )
}

/// Whether `p` is the Echo Reply to probe `id`/`seq` with all its data.
pub(super) fn is_probe_reply(p: &[u8], id: u16, seq: u16) -> bool {
    match masque_proto::icmp::parse_icmp_packet(p) {
        Ok((_, m)) => {
            m.is_v6
                && m.ty == 129
                && m.echo_id_seq() == Some((id, seq))
                && m.body.len() == PROBE_DATA
        }
        Err(_) => false,
    }
}

/// ICMP Packet Too Big (ICMPv4 Fragmentation Needed for DF packets) about
/// `packet`, for the host that sent it into the TUN: from the RFC 7600
/// dummy address (IPv4) or a link-local address (IPv6), since a source that
/// is one of the host's own addresses would be dropped as martian. `None`
/// where ICMP rules forbid an error (ICMP about ICMP errors, no DF, ...).
pub(super) fn too_big_reply(packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let source = match packet.first()? >> 4 {
        4 => IpAddr::V4(masque_proto::connect_ip::forward::IPV4_DUMMY),
        6 => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        _ => return None,
    };
    let kind = masque_proto::icmp::IcmpErrorKind::PacketTooBig {
        mtu: u32::try_from(mtu).ok()?,
    };
    let mut out = Vec::new();
    masque_proto::icmp::write_error(
        &mut out,
        packet,
        kind,
        source,
        masque_proto::icmp::DEFAULT_TTL,
    )
    .ok()?;
    Some(out)
}
