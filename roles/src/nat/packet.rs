//! Reading and rewriting IPv4, UDP and ICMP headers in place, with incremental checksums.

use super::DropReason;
use binfm_stack::checksum::{
    ones_complement_sum, update_u32, update_udp_u32, update_udp_word, update_word,
};

/// The fields of a checked IPv4 header.
pub(super) struct Ip {
    pub(super) ihl: usize,
    pub(super) total: usize,
    pub(super) proto: u8,
    pub(super) src: u32,
    pub(super) dst: u32,
}

#[inline]
pub(super) fn rd16(p: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([p[off], p[off + 1]])
}

#[inline]
pub(super) fn wr16(p: &mut [u8], off: usize, v: u16) {
    p[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(super) fn rd32(p: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([p[off], p[off + 1], p[off + 2], p[off + 3]])
}

#[inline]
pub(super) fn wr32(p: &mut [u8], off: usize, v: u32) {
    p[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Checks the IPv4 header; every index used later is within `ihl`/`total` ≤ `p.len()`.
#[inline]
pub(super) fn parse_ipv4(p: &[u8]) -> Result<Ip, DropReason> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Err(DropReason::Malformed);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(rd16(p, 2));
    if ihl < 20 || total < ihl || total > p.len() {
        return Err(DropReason::Malformed);
    }
    // A valid header sums to 0xffff (the checksum is the complement of the rest).
    if ones_complement_sum(&p[..ihl]) != 0xffff {
        return Err(DropReason::BadChecksum);
    }
    // MF flag or a non-zero offset.
    if rd16(p, 6) & 0x3fff != 0 {
        return Err(DropReason::Fragment);
    }
    Ok(Ip {
        ihl,
        total,
        proto: p[9],
        src: rd32(p, 12),
        dst: rd32(p, 16),
    })
}

/// UDP source and destination ports after checking the UDP length.
#[inline]
pub(super) fn udp_ports(p: &[u8], ip: &Ip) -> Result<(u16, u16), DropReason> {
    let l4 = ip.total - ip.ihl;
    if l4 < 8 {
        return Err(DropReason::Malformed);
    }
    let len = usize::from(rd16(p, ip.ihl + 4));
    if len < 8 || len > l4 {
        return Err(DropReason::Malformed);
    }
    Ok((rd16(p, ip.ihl), rd16(p, ip.ihl + 2)))
}

/// ICMP type and echo identifier.
#[inline]
pub(super) fn icmp_echo(p: &[u8], ip: &Ip) -> Result<(u8, u16), DropReason> {
    if ip.total - ip.ihl < 8 {
        return Err(DropReason::Malformed);
    }
    Ok((p[ip.ihl], rd16(p, ip.ihl + 4)))
}

/// Which address/port pair of a packet to rewrite.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Src,
    Dst,
}

/// Rewrites one UDP endpoint and updates the IPv4 and UDP checksums (the UDP pseudo-header
/// covers the addresses; a zero UDP checksum stays zero).
#[inline]
pub(super) fn rewrite_udp(p: &mut [u8], ihl: usize, side: Side, ip: u32, port: u16) {
    let (ip_off, port_off) = match side {
        Side::Src => (12, ihl),
        Side::Dst => (16, ihl + 2),
    };
    let old_ip = rd32(p, ip_off);
    let old_port = rd16(p, port_off);
    wr32(p, ip_off, ip);
    wr16(p, port_off, port);
    let ipc = update_u32(rd16(p, 10), old_ip, ip);
    wr16(p, 10, ipc);
    let uc = update_udp_u32(rd16(p, ihl + 6), old_ip, ip);
    let uc = update_udp_word(uc, old_port, port);
    wr16(p, ihl + 6, uc);
}

/// Rewrites one address and the echo identifier; the ICMP checksum has no pseudo-header,
/// so only the identifier change touches it.
#[inline]
pub(super) fn rewrite_icmp(p: &mut [u8], ihl: usize, side: Side, ip: u32, ident: u16) {
    let ip_off = match side {
        Side::Src => 12,
        Side::Dst => 16,
    };
    let old_ip = rd32(p, ip_off);
    wr32(p, ip_off, ip);
    wr16(p, 10, update_u32(rd16(p, 10), old_ip, ip));
    let old_id = rd16(p, ihl + 4);
    wr16(p, ihl + 4, ident);
    wr16(p, ihl + 2, update_word(rd16(p, ihl + 2), old_id, ident));
}
