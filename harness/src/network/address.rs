//! Addresses on the test network, from 198.18.0.0/15 (RFC 2544's block for
//! benchmarking): what a guest is given, and the client's own.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The client's address: the bridge's own.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The guest's address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// 198.18.0.0/15 (RFC 2544).
pub const PREFIX: u8 = 15;

/// A guest's place on the test network: its address, given on the kernel command
/// line, and a MAC derived from it. Both survive the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNet {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl Default for GuestNet {
    fn default() -> Self {
        GuestNet { ip: GUEST_IP, prefix: PREFIX }
    }
}

impl GuestNet {
    /// 52:54:00 (QEMU's prefix) followed by the address's last three octets.
    pub fn mac_bytes(&self) -> [u8; 6] {
        let o = self.ip.octets();
        [0x52, 0x54, 0x00, o[1], o[2], o[3]]
    }

    /// [`GuestNet::mac_bytes`] as QEMU and the guest write it.
    pub fn mac(&self) -> String {
        migbench_guest::orders::format_mac(&self.mac_bytes())
    }
}
