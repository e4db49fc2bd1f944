//! IPv4/UDP packets as an attacker reads and writes them (checksums correct).

use std::net::{Ipv4Addr, SocketAddrV4};

/// A UDP datagram read from a whole IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Udp<'a> {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The UDP datagram in `packet`, if it is an unfragmented IPv4/UDP packet.
pub fn udp_of(packet: &[u8]) -> Option<Udp<'_>> {
    let sliced = etherparse::SlicedPacket::from_ip(packet).ok()?;
    let Some(etherparse::NetSlice::Ipv4(v4)) = sliced.net else {
        return None;
    };
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    let h = v4.header();
    Some(Udp {
        src: SocketAddrV4::new(h.source_addr(), udp.source_port()),
        dst: SocketAddrV4::new(h.destination_addr(), udp.destination_port()),
        payload: udp.payload(),
    })
}

/// An IPv4/UDP packet from `src` to `dst` carrying `payload` (empty if it cannot be built).
pub fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(b.size(payload.len()));
    match b.write(&mut v, payload) {
        Ok(()) => v,
        Err(_) => Vec::new(),
    }
}

/// The destination address of an IPv4 packet.
pub fn dst_ip(packet: &[u8]) -> Option<Ipv4Addr> {
    let h = etherparse::Ipv4HeaderSlice::from_slice(packet).ok()?;
    Some(h.destination_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_packet_reads_back() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 66), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7401);
        let p = udp_packet(src, dst, b"BF\x01\x09");
        let u = udp_of(&p).expect("udp");
        assert_eq!((u.src, u.dst, u.payload), (src, dst, &b"BF\x01\x09"[..]));
        assert_eq!(dst_ip(&p), Some(*dst.ip()));
        assert!(udp_of(&p[..10]).is_none());
    }
}
