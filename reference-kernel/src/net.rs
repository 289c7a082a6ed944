//! The kernel's network services (`mode=serve`): `smoltcp` over each attached virtio NIC.
//!
//! Addresses are fixed: NIC 0 is 10.0.2.15/24 with gateway 10.0.2.2 (QEMU's user network),
//! NIC 1 is 10.0.3.15/24. On every NIC:
//! - **UDP echo** on port [`ECHO_PORT`]: each datagram goes back to its sender as it came.
//! - **TCP stream service** on port [`STREAM_PORT`] (two connections at a time): the client
//!   sends a 9-byte request, an operation byte and a little-endian `u64` length. `S` (sink): the
//!   kernel reads that many bytes and answers 16 bytes, the count it read and the FNV-1a 64
//!   hash of the bytes ([`fnv1a`]), then closes. `G` (generate): the kernel sends that many
//!   bytes of [`pattern`] (byte `i` of the stream is `pattern(i)`), then closes. Anything else
//!   is aborted.
//! - **Control** on UDP port [`CONTROL_PORT`]: `quit` ends [`serve`] (answered `bye`).
//!
//! The loop polls every interface, serves the sockets, and when nothing moved halts the CPU
//! until the next interrupt (a NIC's queue interrupt, routed to this CPU, or the timer tick).
//! Frames reach `smoltcp` in the pool buffers the device wrote them into.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use crate::arch::x86_64::apic;
use crate::drivers::virtio_net::{self, Nic};

/// UDP echo port.
pub const ECHO_PORT: u16 = 7;
/// UDP control port (`quit`).
pub const CONTROL_PORT: u16 = 9;
/// TCP stream service port.
pub const STREAM_PORT: u16 = 5001;

/// Bytes of each TCP socket's receive and send buffer.
const TCP_BUFFER: usize = 64 * 1024;
/// Datagrams (and bytes) each UDP socket buffers each way.
const UDP_PACKETS: usize = 64;
const UDP_BYTES: usize = 64 * 1024;

/// FNV-1a 64 of `bytes` continued from `hash` (start with [`FNV_OFFSET`]).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// FNV-1a 64's starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Byte `i` of the generated stream.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// Address, prefix length and gateway of NIC `index`.
fn addressing(index: usize) -> ([u8; 4], u8, Option<[u8; 4]>) {
    match index {
        0 => ([10, 0, 2, 15], 24, Some([10, 0, 2, 2])),
        i => ([10, 0, 2 + i as u8, 15], 24, None),
    }
}

/// What one TCP connection of the stream service is doing.
enum Stream {
    /// Waiting for the 9-byte request.
    Request { got: [u8; 9], len: usize },
    /// Reading `left` more bytes.
    Sink { left: u64, count: u64, hash: u64 },
    /// Sending the sink's answer.
    Answer { answer: [u8; 16], sent: usize },
    /// Sending the pattern from `next` up to `end`.
    Source { next: u64, end: u64 },
    /// Closed by us; waiting for the socket to finish.
    Closing,
}

/// What [`serve`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// NICs served.
    pub nics: usize,
    /// UDP datagrams echoed.
    pub echoed: u64,
    /// TCP connections that sent a request.
    pub connections: u64,
    /// Bytes the sink read.
    pub sunk: u64,
    /// Bytes the generator sent.
    pub generated: u64,
    /// Requests aborted (unknown operation).
    pub refused: u64,
    /// Frames received and sent, summed over the NICs.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Receive completions of a bad length, and frames the stack could not send.
    pub dropped: u64,
    /// Whether the loop ended by `quit` (not by its time limit or a failed device).
    pub quit: bool,
    /// Pool buffers not accounted for at the end (neither free, nor posted to the device).
    pub leaked: usize,
    /// A NIC was taken out of service.
    pub dead: bool,
}

struct Host {
    nic: Nic,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo: SocketHandle,
    control: SocketHandle,
    streams: Vec<(SocketHandle, Stream)>,
}

fn now() -> Instant {
    let hz = apic::info().map_or(1_000_000_000, |i| i.tsc_hz.max(1000));
    Instant::from_millis((veridian_perf::arch::rdtsc() / (hz / 1000)) as i64)
}

fn udp_socket(port: u16) -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BYTES],
        )
    };
    let mut socket = udp::Socket::new(buffer(), buffer());
    // Binding a fresh socket to a non-zero port cannot fail.
    let _ = socket.bind(port);
    socket
}

/// A `smoltcp` interface on `nic` with `addr`/`prefix` and, if given, a default route.
fn interface(nic: &mut Nic, addr: [u8; 4], prefix: u8, gateway: Option<[u8; 4]>) -> Interface {
    let mac = nic.dev.mac();
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = veridian_perf::arch::rdtsc();
    let mut iface = Interface::new(config, &mut nic.dev, now());
    let [a, b, c, d] = addr;
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(Ipv4Address::new(a, b, c, d).into(), prefix));
    });
    if let Some([a, b, c, d]) = gateway {
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
    }
    iface
}

impl Host {
    fn new(mut nic: Nic) -> Self {
        let (addr, prefix, gateway) = addressing(nic.index);
        let iface = interface(&mut nic, addr, prefix, gateway);
        let [a, b, c, d] = addr;
        let mut sockets = SocketSet::new(Vec::new());
        let echo = sockets.add(udp_socket(ECHO_PORT));
        let control = sockets.add(udp_socket(CONTROL_PORT));
        let streams = (0..2)
            .map(|_| {
                let socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
                    tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
                );
                (sockets.add(socket), Stream::Closing)
            })
            .collect();
        crate::println!(
            "net: nic {} ({}) serving on {a}.{b}.{c}.{d}/{prefix}: udp echo {ECHO_PORT}, tcp \
             stream {STREAM_PORT}, control udp {CONTROL_PORT}",
            nic.index,
            nic.bdf
        );
        Self {
            nic,
            iface,
            sockets,
            echo,
            control,
            streams,
        }
    }

    /// Serves the sockets once; `true` if anything moved. Sets `quit` on a `quit` request.
    fn serve_sockets(&mut self, report: &mut Report, quit: &mut bool) -> bool {
        let mut moved = false;
        let mut datagram = [0u8; 2048];
        let echo = self.sockets.get_mut::<udp::Socket>(self.echo);
        while echo.can_send() {
            let Ok((len, meta)) = echo.recv_slice(&mut datagram) else {
                break;
            };
            moved = true;
            if echo.send_slice(&datagram[..len], meta.endpoint).is_ok() {
                report.echoed += 1;
            }
        }
        let control = self.sockets.get_mut::<udp::Socket>(self.control);
        while let Ok((len, meta)) = control.recv_slice(&mut datagram) {
            moved = true;
            if datagram[..len].trim_ascii() == b"quit" {
                let _ = control.send_slice(b"bye", meta.endpoint);
                *quit = true;
            }
        }
        for (handle, stream) in &mut self.streams {
            let socket = self.sockets.get_mut::<tcp::Socket>(*handle);
            moved |= serve_stream(socket, stream, report);
        }
        moved
    }
}

/// Moves one stream connection on; `true` if anything moved.
fn serve_stream(socket: &mut tcp::Socket<'_>, stream: &mut Stream, report: &mut Report) -> bool {
    if !socket.is_open() {
        // Closed (or in TIME-WAIT): listen again for the next client.
        *stream = Stream::Request {
            got: [0; 9],
            len: 0,
        };
        return socket.listen(STREAM_PORT).is_ok();
    }
    let mut moved = false;
    loop {
        match stream {
            Stream::Request { got, len } => {
                if !socket.can_recv() {
                    // The client closed its side before a whole request.
                    if socket.state() == tcp::State::CloseWait {
                        socket.close();
                        *stream = Stream::Closing;
                    }
                    return moved;
                }
                let Ok(n) = socket.recv_slice(&mut got[*len..]) else {
                    return moved;
                };
                moved = true;
                *len += n;
                if *len < got.len() {
                    continue;
                }
                report.connections += 1;
                let mut length = [0u8; 8];
                length.copy_from_slice(&got[1..]);
                let length = u64::from_le_bytes(length);
                *stream = match got[0] {
                    b'S' => Stream::Sink {
                        left: length,
                        count: 0,
                        hash: FNV_OFFSET,
                    },
                    b'G' => Stream::Source {
                        next: 0,
                        end: length,
                    },
                    _ => {
                        report.refused += 1;
                        socket.abort();
                        Stream::Closing
                    }
                };
            }
            Stream::Sink { left, count, hash } => {
                if *left == 0 {
                    let mut answer = [0u8; 16];
                    answer[..8].copy_from_slice(&count.to_le_bytes());
                    answer[8..].copy_from_slice(&hash.to_le_bytes());
                    *stream = Stream::Answer { answer, sent: 0 };
                    continue;
                }
                if !socket.can_recv() {
                    if !socket.may_recv() {
                        // The client stopped sending early: answer what arrived.
                        *left = 0;
                        continue;
                    }
                    return moved;
                }
                let Ok(n) = socket.recv(|data| {
                    let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *hash = fnv1a(*hash, &data[..take]);
                    (take, take)
                }) else {
                    return moved;
                };
                moved = true;
                *left -= n as u64;
                *count += n as u64;
                report.sunk += n as u64;
            }
            Stream::Answer { answer, sent } => {
                if *sent == answer.len() {
                    socket.close();
                    *stream = Stream::Closing;
                    continue;
                }
                match socket.send_slice(&answer[*sent..]) {
                    Ok(0) | Err(_) => return moved,
                    Ok(n) => {
                        moved = true;
                        *sent += n;
                    }
                }
            }
            Stream::Source { next, end } => {
                if *next == *end {
                    socket.close();
                    *stream = Stream::Closing;
                    continue;
                }
                if !socket.can_send() {
                    return moved;
                }
                let start = *next;
                let left = *end - start;
                let Ok(n) = socket.send(|buf| {
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern(start + i as u64);
                    }
                    (n, n)
                }) else {
                    return moved;
                };
                moved = true;
                *next += n as u64;
                report.generated += n as u64;
            }
            Stream::Closing => return moved,
        }
    }
}

/// Serves on every attached NIC until a `quit` request or `limit_ms` milliseconds; returns
/// what happened. The NICs are given back afterwards.
pub fn serve(limit_ms: u64) -> Report {
    let mut report = Report::default();
    let mut hosts: Vec<Host> = (0..virtio_net::count())
        .filter_map(virtio_net::take)
        .map(|mut nic| {
            if !nic.interrupts_here() {
                crate::println!("net: nic {} polled (no interrupt on this CPU)", nic.index);
            }
            Host::new(nic)
        })
        .collect();
    report.nics = hosts.len();
    if hosts.is_empty() {
        crate::println!("net: no network device to serve on");
        return report;
    }
    let was_enabled = x86_64::instructions::interrupts::are_enabled();
    let start = now();
    let mut quit = false;
    while !quit && (now() - start).total_millis() < limit_ms {
        let mut moved = false;
        for host in &mut hosts {
            let t = now();
            moved |= host.iface.poll(t, &mut host.nic.dev, &mut host.sockets)
                == PollResult::SocketStateChanged;
            moved |= host.serve_sockets(&mut report, &mut quit);
            // Send what serving queued at once.
            moved |= host.iface.poll(t, &mut host.nic.dev, &mut host.sockets)
                == PollResult::SocketStateChanged;
            if host.nic.dev.is_dead() {
                report.dead = true;
                quit = true;
            }
        }
        if moved {
            continue;
        }
        let t = now();
        let soon = hosts.iter_mut().any(|h| {
            h.iface
                .poll_delay(t, &h.sockets)
                .is_some_and(|d| d.total_millis() == 0)
        });
        if soon {
            continue;
        }
        // Interrupts off between the look and `hlt`: `sti; hlt` then sleeps without missing a
        // queue interrupt that arrived after the look (or the next timer tick).
        x86_64::instructions::interrupts::disable();
        if hosts.iter().any(|h| h.nic.dev.can_receive()) {
            x86_64::instructions::interrupts::enable();
        } else {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
    if !was_enabled {
        x86_64::instructions::interrupts::disable();
    }
    report.quit = quit && !report.dead;
    // Let the answer to `quit` and the last frames go out, then count the buffers.
    let until = now() + smoltcp::time::Duration::from_millis(100);
    while now() < until {
        for host in &mut hosts {
            host.iface.poll(now(), &mut host.nic.dev, &mut host.sockets);
            let _ = host.nic.dev.reclaim();
        }
        if hosts.iter_mut().all(|h| h.nic.dev.in_flight() == 0) {
            break;
        }
    }
    for host in hosts {
        let Host { nic, .. } = host;
        let stats = nic.dev.stats();
        report.rx_frames += stats.rx_frames;
        report.tx_frames += stats.tx_frames;
        report.dropped += stats.rx_bad_length + stats.tx_dropped;
        report.dead |= nic.dev.is_dead();
        let pool = nic.dev.pool();
        let accounted = pool.available() + nic.dev.posted() + nic.dev.in_flight();
        report.leaked += pool.count().saturating_sub(accounted);
        crate::println!(
            "net: nic {}: {} frames in ({} bytes), {} out ({} bytes), {} queue interrupts, {} of {} \
             pool buffers free, {} receiving",
            nic.index,
            stats.rx_frames,
            stats.rx_bytes,
            stats.tx_frames,
            stats.tx_bytes,
            virtio_net::interrupts(nic.index),
            pool.available(),
            pool.count(),
            nic.dev.posted()
        );
        virtio_net::give_back(nic);
    }
    report
}

/// The `net_udp_echo` benchmark's set-up: NIC 0 serving as in [`serve`] (10.0.2.15) and NIC 1
/// as a client at 10.0.2.16 on the same link (QEMU connects both NICs to one hub), both
/// polled by the caller's CPU (no halting: under `-icount` a halted CPU's TSC runs with host
/// time).
pub struct EchoPair {
    server: Option<Host>,
    client: Option<Nic>,
    iface: Interface,
    sockets: SocketSet<'static>,
    socket: SocketHandle,
    sequence: u64,
    report: Report,
}

/// The client's address and port in [`EchoPair`].
const PAIR_CLIENT: [u8; 4] = [10, 0, 2, 16];
const PAIR_PORT: u16 = 5555;
/// The bytes of each benchmark datagram.
const PAIR_PAYLOAD: usize = 64;

impl EchoPair {
    /// Takes NICs 0 and 1, or gives back what it took and returns `None` (fewer than two NICs).
    pub fn new() -> Option<Self> {
        let server = virtio_net::take(0)?;
        let Some(mut client) = virtio_net::take(1) else {
            virtio_net::give_back(server);
            return None;
        };
        let iface = interface(&mut client, PAIR_CLIENT, 24, None);
        let mut sockets = SocketSet::new(Vec::new());
        let socket = sockets.add(udp_socket(PAIR_PORT));
        Some(Self {
            server: Some(Host::new(server)),
            client: Some(client),
            iface,
            sockets,
            socket,
            sequence: 0,
            report: Report::default(),
        })
    }

    /// One datagram from the client to the echo service and back, polling both interfaces
    /// until it returns intact (within `limit_ms`).
    pub fn round_trip(&mut self, limit_ms: u64) -> Result<(), &'static str> {
        let (Some(server), Some(client)) = (self.server.as_mut(), self.client.as_mut()) else {
            return Err("no NICs");
        };
        self.sequence += 1;
        let mut payload = [0u8; PAIR_PAYLOAD];
        for (i, b) in payload.iter_mut().enumerate() {
            *b = (self.sequence as u8).wrapping_add(i as u8);
        }
        let echo = (Ipv4Address::new(10, 0, 2, 15), ECHO_PORT);
        self.sockets
            .get_mut::<udp::Socket>(self.socket)
            .send_slice(&payload, echo)
            .map_err(|_| "the client socket refused the datagram")?;
        let start = now();
        let mut quit = false;
        let mut reply = [0u8; PAIR_PAYLOAD + 1];
        loop {
            let t = now();
            self.iface.poll(t, &mut client.dev, &mut self.sockets);
            server
                .iface
                .poll(t, &mut server.nic.dev, &mut server.sockets);
            server.serve_sockets(&mut self.report, &mut quit);
            server
                .iface
                .poll(t, &mut server.nic.dev, &mut server.sockets);
            self.iface.poll(t, &mut client.dev, &mut self.sockets);
            let socket = self.sockets.get_mut::<udp::Socket>(self.socket);
            while let Ok((len, _)) = socket.recv_slice(&mut reply) {
                if reply[..len] == payload {
                    return Ok(());
                }
            }
            if server.nic.dev.is_dead() || client.dev.is_dead() {
                return Err("a NIC was taken out of service");
            }
            if (now() - start).total_millis() > limit_ms {
                return Err("no echo in time");
            }
        }
    }
}

impl Drop for EchoPair {
    fn drop(&mut self) {
        if let Some(host) = self.server.take() {
            virtio_net::give_back(host.nic);
        }
        if let Some(nic) = self.client.take() {
            virtio_net::give_back(nic);
        }
    }
}
