//! Tests of the vpn command: routes, ICMP, the MTU probe against an
//! in-process node, flags.

use masque_client::IpAddressRange;

use super::{icmp::*, routes::*, *};

fn r4(a: &str, b: &str) -> IpAddressRange {
    IpAddressRange {
        start: a.parse().unwrap(),
        end: b.parse().unwrap(),
        ipproto: 0,
    }
}

fn shown(v: &[(IpAddr, u8)]) -> Vec<String> {
    v.iter().map(|(a, l)| format!("{a}/{l}")).collect()
}

#[test]
fn ranges_become_prefixes() {
    let proxy: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        shown(&route_prefixes(&[r4("10.0.0.0", "10.255.255.255")], proxy)),
        ["10.0.0.0/8"]
    );
    assert_eq!(
        shown(&route_prefixes(
            &[r4("192.0.2.0", "192.0.2.41")],
            "10.0.0.1".parse().unwrap()
        )),
        ["192.0.2.0/27", "192.0.2.32/29", "192.0.2.40/31"]
    );
    assert_eq!(
        shown(&route_prefixes(&[r4("10.1.2.3", "10.1.2.3")], proxy)),
        ["10.1.2.3/32"]
    );
}

/// The proxy's address is cut out: a full route leaves it on the
/// existing routes; a range holding only it gives nothing.
#[test]
fn proxy_address_is_never_routed_into_the_tunnel() {
    let proxy: IpAddr = "128.0.0.0".parse().unwrap();
    let p = route_prefixes(&[r4("0.0.0.0", "255.255.255.255")], proxy);
    assert_eq!(p.first(), Some(&("0.0.0.0".parse().unwrap(), 1)));
    assert_eq!(p.len(), 1 + 31);
    assert!(
        !p.iter()
            .any(|(a, l)| *l == 0 || (*a == proxy && *l <= 32 && *l == 32))
    );
    let covered: u128 = p.iter().map(|(_, l)| 1u128 << (32 - u32::from(*l))).sum();
    assert_eq!(covered, (1u128 << 32) - 1);
    assert!(route_prefixes(&[r4("128.0.0.0", "128.0.0.0")], proxy).is_empty());
    // Another family is untouched.
    let v6 = IpAddressRange {
        start: "::".parse().unwrap(),
        end: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ipproto: 0,
    };
    assert_eq!(shown(&route_prefixes(&[v6], proxy)), ["::/0"]);
    let v4all = route_prefixes(&[r4("0.0.0.0", "255.255.255.255")], "::1".parse().unwrap());
    assert_eq!(shown(&v4all), ["0.0.0.0/0"]);
}

/// R9484-55: a DF packet too big for the tunnel gets ICMP Fragmentation
/// Needed naming the size, from the RFC 7600 dummy address; a packet
/// without DF gets nothing.
#[test]
fn too_big_reply_for_df_packets() {
    let mut p = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&[10, 77, 0, 2, 198, 51, 100, 7]);
    p.resize(1500, 0);
    masque_proto::packet::fill_ipv4_header_checksum(&mut p).unwrap();
    let icmp = too_big_reply(&p, 1400).expect("DF set");
    let (ip, msg) = masque_proto::icmp::parse_icmp_packet(&icmp).unwrap();
    assert_eq!(ip.source(), IpAddr::from([192, 0, 0, 8]));
    assert_eq!(ip.destination(), IpAddr::from([10, 77, 0, 2]));
    assert_eq!((msg.ty, msg.code), (3, 4));
    assert_eq!(msg.mtu(), Some(1400));
    p[6] = 0; // no DF
    masque_proto::packet::fill_ipv4_header_checksum(&mut p).unwrap();
    assert!(too_big_reply(&p, 1400).is_none());
    assert!(too_big_reply(b"\x10junk", 1400).is_none());
}

/// R9484-49 against an in-process node with an IPv6 pool: the 1280-byte
/// all-nodes echo is answered, on every transport.
#[tokio::test(flavor = "multi_thread")]
async fn mtu_probe_answered_by_the_node() -> anyhow::Result<()> {
    use std::sync::Arc;

    use masque_client::{ClientOptions, TransportChoice};
    use masque_server::{
        IpProxy, IpProxyConfig, Node, Proxy, QuicMtu, ServerConfig, TcpProxyConfig, UdpProxyConfig,
        ip::{IpPrefix as Pool, QueueEgress},
    };
    use masque_transport::{
        Transport,
        tls::{DevCert, ServerVerification},
    };

    let mtu = QuicMtu {
        initial: 1452,
        min: 1452,
    };
    let cert = DevCert::ephemeral()?;
    let ip = IpProxy::new(
        IpProxyConfig {
            pools: vec![Pool::parse("fd00:7749::/64")?],
            ..Default::default()
        },
        Arc::new(QueueEgress::new(64, 1500)),
    )?;
    let proxy = Proxy::new(UdpProxyConfig::default(), TcpProxyConfig::default()).with_ip(ip);
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        quic_mtu: mtu,
        drain_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let node = Node::start(config, &cert.server_tls(), Arc::new(proxy)).await?;
    for t in Transport::ALL {
        let port = match t {
            Transport::H3 => node.local_addr().port(),
            _ => node.tcp_addr().context("TCP")?.port(),
        };
        let options = ClientOptions {
            transport: TransportChoice::from(t),
            verification: ServerVerification::CustomCa(vec![cert.cert_der().clone()]),
            initial_mtu: mtu.initial,
            min_mtu: mtu.min,
            ..Default::default()
        };
        let url = format!("https://localhost:{port}");
        let mut session = connect_ip(&url, &IpTarget::ANY, options).await?;
        session.request_addresses(&[IpPrefix::new(Ipv6Addr::UNSPECIFIED.into(), 128)?])?;
        let info = wait_assigned(&session, Duration::from_secs(10)).await?;
        let Some(IpAddr::V6(me)) = info.assigned.first().map(|a| a.ip) else {
            anyhow::bail!("no IPv6 address: {info:?}");
        };
        mtu_probe(&mut session, me)
            .await
            .with_context(|| format!("over {t}"))?;
        session.close().await;
    }
    node.shutdown().await;
    Ok(())
}

#[test]
fn probe_reply_recognised() {
    use masque_proto::icmp::{EchoKind, write_echo_packet, write_echo_reply};
    let me: IpAddr = "fd00::2".parse().unwrap();
    let mut req = Vec::new();
    write_echo_packet(
        &mut req,
        EchoKind::Request,
        me,
        ALL_NODES.into(),
        64,
        7,
        1,
        &[1; 1232],
    )
    .unwrap();
    let mut reply = Vec::new();
    write_echo_reply(&mut reply, &req, "fd00::1".parse().unwrap(), 64).unwrap();
    assert!(is_probe_reply(&reply, 7, 1));
    assert!(!is_probe_reply(&reply, 7, 2));
    assert!(!is_probe_reply(&req, 7, 1), "a request is no reply");
}

/// Routes of a family without an address are not installed.
#[test]
fn families_filter() {
    let f = Families {
        v4: true,
        v6: false,
    };
    assert!(f.has("10.0.0.1".parse().unwrap()));
    assert!(!f.has("::1".parse().unwrap()));
}

#[test]
fn vpn_flags() {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: VpnArgs,
    }
    let cli = Cli::try_parse_from(["x", "--proxy", "https://p:1", "--insecure"]).unwrap();
    assert_eq!(cli.args.tun, "masque0");
    assert_eq!(cli.args.assign_timeout, 10);
    assert_eq!(cli.args.idle_timeout, 30);
    let cli = Cli::try_parse_from([
        "x",
        "--proxy",
        "https://p:1",
        "--tun",
        "vpn7",
        "--transport",
        "h2",
        "--mtu",
        "1400",
    ])
    .unwrap();
    assert_eq!(cli.args.tun, "vpn7");
    assert_eq!(cli.args.mtu, Some(1400));
    assert!(
        Cli::try_parse_from(["x", "--tun", "t"]).is_err(),
        "--proxy is required"
    );
}
