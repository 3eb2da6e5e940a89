//! TUN egress (`--ip-tun NAME`): one TUN device for every CONNECT-IP tunnel of the node.
//! The device gets the node's own address in each pool (the pool's first host) with the
//! pool's prefix length, so the host routes the pools into it; what the host does with
//! packets beyond (forwarding, NAT) is its configuration (docs/use/vpn.md).
//!
//! Writes are `try_send` on the non-blocking device: a full device drops and counts. One
//! task reads the device and hands each packet to the [`IpIngress`]; one buffer per packet.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use tokio::task::JoinHandle;
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::egress::{EgressError, IpEgress, IpIngress};
use super::pool::{IpPrefix, own_address};

/// A TUN device as the node's CONNECT-IP egress. Dropping it stops its reader and
/// removes the device.
pub struct TunEgress {
    device: Arc<AsyncDevice>,
    name: String,
    mtu: usize,
    reader: OnceLock<JoinHandle<()>>,
}

impl std::fmt::Debug for TunEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunEgress")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl TunEgress {
    /// Creates the TUN device `name` with MTU `mtu`, the node's address in each of
    /// `pools`, and brings it up. Needs CAP_NET_ADMIN and `/dev/net/tun`.
    pub fn create(name: &str, mtu: u16, pools: &[IpPrefix]) -> std::io::Result<Self> {
        let mut builder = DeviceBuilder::new().name(name).mtu(mtu);
        let mut v6 = Vec::new();
        let mut have_v4 = false;
        for p in pools {
            match own_address(p) {
                IpAddr::V4(a) if !have_v4 => {
                    builder = builder.ipv4(a, p.len, None);
                    have_v4 = true;
                }
                IpAddr::V6(a) => v6.push((a, p.len)),
                IpAddr::V4(a) => {
                    tracing::warn!(pool = %p, addr = %a, "only the first IPv4 pool's address goes on the TUN; route the others to it yourself");
                }
            }
        }
        if !v6.is_empty() {
            builder = builder.ipv6_tuple(&v6);
        }
        let device = builder.build_async()?;
        let name = device.name().unwrap_or_else(|_| name.to_owned());
        tracing::info!(tun = %name, mtu, "CONNECT-IP TUN egress up");
        Ok(Self {
            device: Arc::new(device),
            name,
            mtu: usize::from(mtu),
            reader: OnceLock::new(),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl IpEgress for TunEgress {
    fn send(&self, packet: &[u8]) -> Result<(), EgressError> {
        match self.device.try_send(packet) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(EgressError::Full),
            Err(e) => Err(EgressError::Io(e.to_string())),
        }
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn start(&self, ingress: IpIngress) {
        let device = Arc::clone(&self.device);
        let mtu = self.mtu;
        let name = self.name.clone();
        let _ = self.reader.get_or_init(move || {
            tokio::spawn(async move {
                loop {
                    let mut buf = BytesMut::zeroed(mtu);
                    match device.recv(&mut buf).await {
                        Ok(n) => {
                            buf.truncate(n);
                            ingress.deliver(buf.freeze());
                        }
                        Err(e) => {
                            tracing::error!(tun = %name, error = %e, "TUN read failed; CONNECT-IP egress stopped");
                            return;
                        }
                    }
                }
            })
        });
    }
}

impl Drop for TunEgress {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.get() {
            reader.abort();
        }
    }
}
