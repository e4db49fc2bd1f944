//! smoltcp host glue: one IPv4 stack (`Interface` on `Medium::Ip`) per node attachment, over
//! an in-memory device whose queues the driver fills and drains.
//!
//! The driver pushes received packets with [`IpStack::push_rx`], calls [`IpStack::poll`] with
//! its own clock (smoltcp never reads one), takes outgoing packets with [`IpStack::pop_tx`] and
//! exchanges UDP payloads with the roles through [`IpStack::send_udp`] / [`IpStack::recv_udp`].
//! smoltcp answers ICMP echo requests to the stack's address by itself.

use crate::Time;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

/// MTU of every emulated link.
pub const MTU: usize = 1500;
/// Datagrams a UDP socket buffers in each direction: one per 256 bytes of its buffer, at
/// least `MIN_SOCKET_PACKETS` and at most `MAX_SOCKET_PACKETS` (a socket's list of datagrams
/// is sized with its bytes, so a small client socket does not carry a server's list).
const MIN_SOCKET_PACKETS: usize = 16;
/// See [`MIN_SOCKET_PACKETS`].
const MAX_SOCKET_PACKETS: usize = 256;

/// Errors of the host glue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// The port is already bound.
    #[error("UDP port {0} is already bound")]
    PortInUse(u16),
    /// No socket is bound to the port.
    #[error("no UDP socket is bound to port {0}")]
    NotBound(u16),
    /// No address, or the destination is off-link and there is no gateway.
    #[error("no route to {0}")]
    NoRoute(SocketAddrV4),
    /// The socket's send buffer is full (or the datagram is too large).
    #[error("UDP send on port {port} failed: {reason}")]
    Send {
        /// Local port.
        port: u16,
        /// smoltcp's reason.
        reason: String,
    },
}

/// A UDP datagram received by the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddrV4,
    /// Destination as it arrived (may be a broadcast address).
    pub to: SocketAddrV4,
    /// Payload.
    pub payload: Vec<u8>,
}

thread_local! {
    /// Buffers of packets a stack has taken in, for the packets stacks send: the same buffers
    /// go round (a packet usually ends in another stack of the same run and thread) instead of
    /// a malloc and a free per packet. Holds at most [`SPARE_MAX`] buffers.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread.
const SPARE_MAX: usize = 1024;

/// A zeroed buffer of `len` bytes, spare if one is at hand.
fn packet_buffer(len: usize) -> Vec<u8> {
    match SPARE.with_borrow_mut(Vec::pop) {
        Some(mut b) => {
            b.clear();
            b.resize(len, 0);
            b
        }
        None => vec![0; len],
    }
}

/// Keeps `b` (a consumed packet of at most an MTU or so) for [`packet_buffer`].
fn recycle(b: Vec<u8>) {
    if b.capacity() <= 2 * MTU {
        SPARE.with_borrow_mut(|s| {
            if s.len() < SPARE_MAX {
                s.push(b);
            }
        });
    }
}

/// In-memory device: two packet queues.
#[derive(Debug, Default)]
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.max_transmission_unit = MTU;
        caps.medium = Medium::Ip;
        caps
    }

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let buffer = self.rx.pop_front()?;
        Some((
            RxToken { buffer },
            TxToken {
                queue: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            queue: &mut self.tx,
        })
    }
}

#[derive(Debug)]
struct RxToken {
    buffer: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.buffer);
        recycle(self.buffer);
        r
    }
}

#[derive(Debug)]
struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buffer = packet_buffer(len);
        let r = f(&mut buffer);
        self.queue.push_back(buffer);
        r
    }
}

fn instant(t: Time) -> Instant {
    Instant::from_micros(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

/// One IPv4 stack.
pub struct IpStack {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    udp: Vec<(u16, SocketHandle)>,
    /// Round-robin start for `recv_udp`, so one busy port does not starve the others.
    next_socket: usize,
    /// Address with prefix, and default gateway: what [`IpStack::send_udp`] can reach.
    reach: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
    /// The time of the last `poll` (a send that finds its buffer full flushes at it).
    last_poll: Instant,
    /// Nothing to do: the receive queue is empty and no socket has a datagram to send, so a
    /// smoltcp poll would change nothing and `poll_at` is `None` (smoltcp's own answer, read
    /// after the last real poll). Cleared by everything that gives the stack work.
    idle: bool,
    /// A socket may hold received datagrams (set by a poll, cleared when `recv_udp` finds
    /// none), so that `recv_udp` on a quiet stack does not visit every socket.
    rx_ready: bool,
}

impl std::fmt::Debug for IpStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpStack")
            .field("addr", &self.address())
            .field(
                "udp_ports",
                &self.udp.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl IpStack {
    /// A stack with no address yet (a DHCP client) or with a static one.
    pub fn new(now: Time, seed: u64) -> Self {
        let mut device = QueueDevice::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let iface = Interface::new(config, &mut device, instant(now));
        IpStack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            udp: Vec::new(),
            next_socket: 0,
            reach: None,
            last_poll: instant(now),
            idle: true,
            rx_ready: false,
        }
    }

    /// Sets (or removes) the address and the default gateway.
    pub fn set_address(&mut self, addr: Option<(Ipv4Addr, u8)>, gateway: Option<Ipv4Addr>) {
        // A datagram smoltcp could not route may become routable.
        self.idle = false;
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some((a, len)) = addr {
                // Cannot fail: the list was just cleared and holds at least one entry.
                let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(a, len)));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        self.reach = addr.map(|(a, len)| (Ipv4Cidr::new(a, len), gateway));
        if let (Some(_), Some(gw)) = (addr, gateway) {
            // Cannot fail: the route table was just emptied of its default route.
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
    }

    /// The current address.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.iface.ipv4_addr()
    }

    /// Opens a UDP socket on `port` (all addresses, broadcasts included) that buffers
    /// `bytes` each way (and one datagram per 256 bytes, between 16 and 256).
    pub fn bind_udp(&mut self, port: u16, bytes: usize) -> Result<(), HostError> {
        if self.udp.iter().any(|(p, _)| *p == port) {
            return Err(HostError::PortInUse(port));
        }
        let packets = (bytes / 256).clamp(MIN_SOCKET_PACKETS, MAX_SOCKET_PACKETS);
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]);
        let mut socket = udp::Socket::new(rx, tx);
        socket.bind(port).map_err(|e| HostError::Send {
            port,
            reason: e.to_string(),
        })?;
        let handle = self.sockets.add(socket);
        self.udp.push((port, handle));
        Ok(())
    }

    /// Queues a datagram. `src_ip = Some(0.0.0.0)` sends from the unspecified address (a DHCP
    /// client before its lease); smoltcp drops such a datagram silently otherwise.
    pub fn send_udp(
        &mut self,
        src_ip: Option<Ipv4Addr>,
        src_port: u16,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), HostError> {
        let handle = self
            .udp
            .iter()
            .find(|(p, _)| *p == src_port)
            .map(|(_, h)| *h)
            .ok_or(HostError::NotBound(src_port))?;
        // smoltcp keeps a datagram it cannot route at the head of the socket's send buffer
        // and retries it forever, which would block every later datagram of the port (one
        // answer to a spoofed, unroutable source would silence a server): refuse it here.
        let ip = *dst.ip();
        let routable = ip == Ipv4Addr::BROADCAST
            || match self.reach {
                Some((net, gw)) => {
                    gw.is_some() || net.contains_addr(&ip) || net.broadcast() == Some(ip)
                }
                None => false,
            };
        if !routable {
            return Err(HostError::NoRoute(dst));
        }
        self.idle = false;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        let mut meta =
            udp::UdpMetadata::from(IpEndpoint::new(IpAddress::Ipv4(*dst.ip()), dst.port()));
        meta.local_address = src_ip.map(IpAddress::Ipv4);
        match socket.send_slice(payload, meta) {
            Err(udp::SendError::BufferFull) => {
                // A burst larger than the send buffer (a super node answering thousands of
                // end nodes at once): move what is queued onto the link (the device queue is
                // unbounded) until the datagram fits, as a kernel's socket would block, not
                // drop. One egress moves at most one datagram per socket, and after the ring
                // wraps a datagram may need the room of several.
                let now = self.last_poll;
                loop {
                    let moved = self
                        .iface
                        .poll_egress(now, &mut self.device, &mut self.sockets);
                    let socket = self.sockets.get_mut::<udp::Socket>(handle);
                    match socket.send_slice(payload, meta) {
                        Err(udp::SendError::BufferFull) if moved != PollResult::None => {}
                        r => break r,
                    }
                }
            }
            r => r,
        }
        .map_err(|e| HostError::Send {
            port: src_port,
            reason: e.to_string(),
        })
    }

    /// Hands a received IP packet to the stack (processed at the next `poll`).
    pub fn push_rx(&mut self, packet: Vec<u8>) {
        self.idle = false;
        self.device.rx.push_back(packet);
    }

    /// Runs the stack at `now`: ingress, then egress. An idle stack is not polled: with an
    /// empty receive queue and empty send buffers smoltcp's poll does nothing.
    #[inline]
    pub fn poll(&mut self, now: Time) {
        let now = instant(now);
        self.last_poll = now;
        if !self.idle {
            self.poll_busy(now);
        }
    }

    fn poll_busy(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.rx_ready = true;
        self.idle = self.device.rx.is_empty() && self.iface.poll_at(now, &self.sockets).is_none();
    }

    /// Whether a `poll` would do nothing (see the `idle` field): no received packet waits and
    /// no socket has a datagram to send.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.idle && self.device.tx.is_empty()
    }

    /// Takes the next packet the stack transmitted.
    #[inline]
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.device.tx.pop_front()
    }

    /// Takes the next received UDP datagram on any bound port.
    pub fn recv_udp(&mut self) -> Option<Datagram> {
        self.recv_udp_with(|from, to, payload| Datagram {
            from,
            to,
            payload: payload.to_vec(),
        })
    }

    /// Takes the next received UDP datagram on any bound port and hands `f` its sender,
    /// destination and payload (borrowed from the socket buffer: no copy).
    pub fn recv_udp_with<R>(
        &mut self,
        f: impl FnOnce(SocketAddrV4, SocketAddrV4, &[u8]) -> R,
    ) -> Option<R> {
        if !self.rx_ready {
            return None;
        }
        let n = self.udp.len();
        for i in 0..n {
            let idx = (self.next_socket + i) % n;
            let (port, handle) = self.udp[idx];
            let socket = self.sockets.get_mut::<udp::Socket>(handle);
            if let Ok((data, meta)) = socket.recv() {
                self.next_socket = (idx + 1) % n;
                let IpAddress::Ipv4(from_ip) = meta.endpoint.addr;
                let to_ip = match meta.local_address {
                    Some(IpAddress::Ipv4(a)) => a,
                    None => Ipv4Addr::UNSPECIFIED,
                };
                return Some(f(
                    SocketAddrV4::new(from_ip, meta.endpoint.port),
                    SocketAddrV4::new(to_ip, port),
                    data,
                ));
            }
        }
        self.rx_ready = false;
        None
    }

    /// When the stack next needs `poll` without new input.
    #[inline]
    pub fn poll_at(&mut self, now: Time) -> Option<Time> {
        if self.idle {
            return None;
        }
        self.poll_at_busy(now)
    }

    fn poll_at_busy(&mut self, now: Time) -> Option<Time> {
        self.iface
            .poll_at(instant(now), &self.sockets)
            .map(|i| Time::from_micros(u64::try_from(i.total_micros()).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves every transmitted packet of `a` into `b` and vice versa.
    fn exchange(a: &mut IpStack, b: &mut IpStack, now: Time) {
        for _ in 0..4 {
            a.poll(now);
            b.poll(now);
            while let Some(p) = a.pop_tx() {
                b.push_rx(p);
            }
            while let Some(p) = b.pop_tx() {
                a.push_rx(p);
            }
        }
    }

    #[test]
    fn an_unroutable_datagram_is_refused_with_a_reason_and_later_ones_go_out() {
        let now = Time::ZERO;
        let mut a = IpStack::new(now, 1);
        let mut b = IpStack::new(now, 2);
        a.set_address(Some((Ipv4Addr::new(198, 51, 100, 11), 24)), None);
        b.set_address(Some((Ipv4Addr::new(198, 51, 100, 2), 24)), None);
        a.bind_udp(7400, 256 * 1024).unwrap();
        b.bind_udp(7, 256 * 1024).unwrap();
        let off_link = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 7);
        assert_eq!(
            a.send_udp(None, 7400, off_link, b"x"),
            Err(HostError::NoRoute(off_link))
        );
        let on_link = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7);
        a.send_udp(None, 7400, on_link, b"after").unwrap();
        exchange(&mut a, &mut b, now);
        assert_eq!(b.recv_udp().unwrap().payload, b"after");
        // With a gateway, off-link destinations are routable again.
        a.set_address(
            Some((Ipv4Addr::new(198, 51, 100, 11), 24)),
            Some(Ipv4Addr::new(198, 51, 100, 1)),
        );
        assert!(a.send_udp(None, 7400, off_link, b"x").is_ok());
    }

    #[test]
    fn a_burst_larger_than_the_send_buffer_goes_out_whole() {
        let now = Time::ZERO;
        let mut a = IpStack::new(now, 1);
        let mut b = IpStack::new(now, 2);
        a.set_address(Some((Ipv4Addr::new(198, 51, 100, 11), 24)), None);
        b.set_address(Some((Ipv4Addr::new(198, 51, 100, 2), 24)), None);
        a.bind_udp(7400, 4096).unwrap();
        b.bind_udp(7, 256 * 1024).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7);
        // 40 datagrams of 1,000 bytes through a 4 KiB buffer, without a poll between them.
        for i in 0..40u8 {
            a.send_udp(None, 7400, to, &[i; 1000]).unwrap();
        }
        exchange(&mut a, &mut b, now);
        let got: Vec<u8> = std::iter::from_fn(|| b.recv_udp())
            .map(|d| d.payload[0])
            .collect();
        assert_eq!(got, (0..40).collect::<Vec<u8>>());
    }

    #[test]
    fn a_burst_of_mixed_sizes_through_a_client_buffer_goes_out_whole() {
        // After the ring wraps, a large datagram needs the room of several small ones: one
        // egress (one datagram) is not always enough to make it fit.
        let now = Time::ZERO;
        let mut a = IpStack::new(now, 1);
        let mut b = IpStack::new(now, 2);
        a.set_address(Some((Ipv4Addr::new(198, 51, 100, 11), 24)), None);
        b.set_address(Some((Ipv4Addr::new(198, 51, 100, 2), 24)), None);
        a.bind_udp(7400, 8 * 1024).unwrap();
        b.bind_udp(7, 1024 * 1024).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7);
        let mut x: u32 = 7;
        let mut sizes = Vec::new();
        for _ in 0..200 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = if (x >> 16).is_multiple_of(5) {
                1_400
            } else {
                182
            };
            a.send_udp(None, 7400, to, &vec![sizes.len() as u8; len])
                .unwrap();
            sizes.push(len);
        }
        exchange(&mut a, &mut b, now);
        let got: Vec<usize> = std::iter::from_fn(|| b.recv_udp())
            .map(|d| d.payload.len())
            .collect();
        assert_eq!(got, sizes);
    }

    #[test]
    fn two_stacks_exchange_udp() {
        let now = Time::ZERO;
        let mut a = IpStack::new(now, 1);
        let mut b = IpStack::new(now, 2);
        a.set_address(Some((Ipv4Addr::new(10, 0, 0, 1), 24)), None);
        b.set_address(Some((Ipv4Addr::new(10, 0, 0, 2), 24)), None);
        a.bind_udp(5000, 256 * 1024).unwrap();
        b.bind_udp(7, 256 * 1024).unwrap();
        a.send_udp(
            None,
            5000,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7),
            b"hi",
        )
        .unwrap();
        exchange(&mut a, &mut b, now);
        let d = b.recv_udp().unwrap();
        assert_eq!(d.payload, b"hi");
        assert_eq!(d.from, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000));
        assert_eq!(d.to, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7));
        assert_eq!(
            a.bind_udp(5000, 256 * 1024),
            Err(HostError::PortInUse(5000))
        );
    }

    #[test]
    fn addressless_stack_broadcasts_from_unspecified_and_receives_broadcast() {
        let now = Time::ZERO;
        let mut client = IpStack::new(now, 1);
        let mut server = IpStack::new(now, 2);
        server.set_address(Some((Ipv4Addr::new(10, 0, 0, 1), 24)), None);
        client.bind_udp(68, 256 * 1024).unwrap();
        server.bind_udp(67, 256 * 1024).unwrap();
        let bcast = |p| SocketAddrV4::new(Ipv4Addr::BROADCAST, p);
        client
            .send_udp(Some(Ipv4Addr::UNSPECIFIED), 68, bcast(67), b"discover")
            .unwrap();
        exchange(&mut client, &mut server, now);
        let d = server.recv_udp().unwrap();
        assert_eq!(d.from, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68));
        assert_eq!(d.to.ip(), &Ipv4Addr::BROADCAST);
        server.send_udp(None, 67, bcast(68), b"offer").unwrap();
        exchange(&mut client, &mut server, now);
        assert_eq!(client.recv_udp().unwrap().payload, b"offer");
    }
}
