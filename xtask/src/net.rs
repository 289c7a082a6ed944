//! The kernel's network in QEMU, and xtask's client for its `mode=serve` services.
//!
//! NIC 0 is a virtio-net device on QEMU's user network (slirp) with three ports forwarded from
//! 127.0.0.1 only: TCP to the stream service (guest port 5001), UDP to echo (7) and to control
//! (9). NIC 1, when asked for, is a virtio-net device on a QEMU `socket` back-end: every frame
//! the guest sends arrives here as one UDP datagram and every datagram sent to QEMU's port
//! arrives in the guest as one frame, so xtask can send frames no network stack would (the
//! malformed-frame check).
//!
//! The stream service's protocol (reference-kernel/src/net.rs): a 9-byte request, `S` or `G` and
//! a little-endian `u64` length; `S` is answered by the count and FNV-1a 64 hash of the bytes
//! read, `G` by that many bytes of [`pattern`].

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::qemu::{self, Boot, Outcome, Vm};

/// The guest's ports.
const GUEST_STREAM: u16 = 5001;
const GUEST_ECHO: u16 = 7;
const GUEST_CONTROL: u16 = 9;

/// NIC 1's MAC address and IPv4 address (the kernel gives NIC 1 10.0.3.15/24), and the address
/// xtask takes on that link.
const RAW_GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
const RAW_GUEST_IP: [u8; 4] = [10, 0, 3, 15];
const RAW_HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const RAW_HOST_IP: [u8; 4] = [10, 0, 3, 2];
const RAW_HOST_PORT: u16 = 4000;

/// How long one socket operation may wait before the client calls the run failed.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// FNV-1a 64 of `bytes` continued from `hash` (the kernel's `net::fnv1a`).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// FNV-1a 64's starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Byte `i` of the kernel's generated stream (the kernel's `net::pattern`).
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// Byte `i` of what the client sends to the sink (unlike [`pattern`], so a kernel that
/// answered with the wrong stream's hash is caught).
fn sink_byte(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 17)).wrapping_mul(0x2d) as u8
}

/// The host ports forwarded to the guest (127.0.0.1 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// TCP, to the stream service.
    pub stream: u16,
    /// UDP, to echo.
    pub echo: u16,
    /// UDP, to control.
    pub control: u16,
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Ports {
    /// Ports that are free now (the sockets that found them are closed again, so another
    /// program could take one in between; QEMU then fails to start and says so).
    pub fn pick() -> std::io::Result<Self> {
        let stream = TcpListener::bind("127.0.0.1:0")?;
        let echo = UdpSocket::bind("127.0.0.1:0")?;
        let control = UdpSocket::bind("127.0.0.1:0")?;
        Ok(Self {
            stream: stream.local_addr()?.port(),
            echo: echo.local_addr()?.port(),
            control: control.local_addr()?.port(),
        })
    }

    /// QEMU's options for NIC 0.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:{GUEST_STREAM},\
                 hostfwd=udp:127.0.0.1:{}-:{GUEST_ECHO},hostfwd=udp:127.0.0.1:{}-:{GUEST_CONTROL}",
                self.stream, self.echo, self.control
            ),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]
    }
}

/// NIC 1's other end: xtask's UDP socket and the port QEMU receives frames on.
pub struct RawLink {
    socket: UdpSocket,
    qemu_port: u16,
}

impl RawLink {
    /// A socket for xtask and a free port for QEMU.
    pub fn new() -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Self {
            socket,
            qemu_port: free_udp_port()?,
        })
    }

    /// QEMU's options for NIC 1.
    pub fn qemu_args(&self) -> std::io::Result<Vec<String>> {
        let ours = self.socket.local_addr()?.port();
        Ok(vec![
            "-netdev".into(),
            format!(
                "socket,id=n1,udp=127.0.0.1:{ours},localaddr=127.0.0.1:{}",
                self.qemu_port
            ),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=n1,mac={}",
                RAW_GUEST_MAC
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        ])
    }

    fn send(&self, frame: &[u8]) -> std::result::Result<(), String> {
        self.socket
            .send_to(frame, ("127.0.0.1", self.qemu_port))
            .map(|_| ())
            .map_err(|e| format!("sending a frame to QEMU: {e}"))
    }
}

/// The client of one served kernel.
pub struct Client {
    ports: Ports,
}

/// Round trips of [`Client::udp_echo`].
#[derive(Clone, Debug, Default)]
pub struct EchoReport {
    /// Datagrams echoed intact.
    pub echoed: usize,
    /// Datagrams sent again after a second without answer.
    pub resent: usize,
    /// Each datagram's round trip (the last send to its answer).
    pub round_trips: Vec<Duration>,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The median of `values` (sorted in place); `None` when empty.
pub fn median<T: Copy + PartialOrd>(values: &mut [T]) -> Option<T> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values.get(values.len() / 2).copied()
}

impl Client {
    /// A client for the kernel behind `ports`.
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    fn udp(&self, timeout: Duration) -> std::result::Result<UdpSocket, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(io_err("UDP socket"))?;
        socket
            .set_read_timeout(Some(timeout))
            .map_err(io_err("UDP socket timeout"))?;
        Ok(socket)
    }

    /// Waits until the echo service answers (the kernel is up), at most `limit`.
    pub fn wait_ready(&self, limit: Duration) -> std::result::Result<Duration, String> {
        let socket = self.udp(Duration::from_millis(250))?;
        let start = Instant::now();
        let mut buf = [0u8; 64];
        while start.elapsed() < limit {
            socket
                .send_to(b"ready?", ("127.0.0.1", self.ports.echo))
                .map_err(io_err("UDP send"))?;
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && &buf[..n] == b"ready?"
            {
                return Ok(start.elapsed());
            }
        }
        Err(format!(
            "the echo service did not answer within {} s",
            limit.as_secs()
        ))
    }

    /// Sends `count` datagrams (lengths 1..=1472, contents from their index) one at a time and
    /// checks that each comes back byte for byte; a datagram unanswered for a second is sent
    /// again (UDP may drop; at most `count / 10 + 10` resends). A wrong answer fails at once.
    pub fn udp_echo(&self, count: usize) -> std::result::Result<EchoReport, String> {
        let socket = self.udp(Duration::from_secs(1))?;
        let mut report = EchoReport::default();
        let mut reply = vec![0u8; 2048];
        for i in 0..count {
            let len = 1 + (i * 131) % 1472;
            let mut datagram: Vec<u8> = (0..len).map(|j| (i * 7 + j * 13) as u8).collect();
            datagram[..len.min(8)].copy_from_slice(&(i as u64).to_le_bytes()[..len.min(8)]);
            let mut sent = Instant::now();
            socket
                .send_to(&datagram, ("127.0.0.1", self.ports.echo))
                .map_err(io_err("UDP send"))?;
            loop {
                match socket.recv_from(&mut reply) {
                    Ok((n, _)) if reply[..n] == datagram[..] => break,
                    // The late answer to an earlier, resent datagram.
                    Ok((n, _)) if n >= 8 && len >= 8 && reply[..8] != datagram[..8] => continue,
                    Ok((n, _)) => {
                        return Err(format!(
                            "datagram {i} ({len} bytes) came back altered ({n} bytes)"
                        ));
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        report.resent += 1;
                        if report.resent > count / 10 + 10 {
                            return Err(format!(
                                "{} datagrams unanswered for a second (at datagram {i})",
                                report.resent
                            ));
                        }
                        sent = Instant::now();
                        socket
                            .send_to(&datagram, ("127.0.0.1", self.ports.echo))
                            .map_err(io_err("UDP send"))?;
                    }
                    Err(e) => return Err(format!("UDP receive: {e}")),
                }
            }
            report.round_trips.push(sent.elapsed());
            report.echoed += 1;
        }
        Ok(report)
    }

    fn connect(&self, op: u8, len: u64) -> std::result::Result<TcpStream, String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.ports.stream)).map_err(io_err("TCP connect"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(io_err("TCP timeouts"))?;
        let _ = stream.set_nodelay(true);
        let mut request = [0u8; 9];
        request[0] = op;
        request[1..].copy_from_slice(&len.to_le_bytes());
        stream.write_all(&request).map_err(io_err("TCP request"))?;
        Ok(stream)
    }

    /// Sends `len` bytes to the sink; the kernel's count and hash must match. Returns the time
    /// from the request to the answer.
    pub fn tcp_sink(&self, len: u64) -> std::result::Result<Duration, String> {
        let start = Instant::now();
        let mut stream = self.connect(b'S', len)?;
        let mut hash = FNV_OFFSET;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let n = chunk.len().min((len - sent) as usize);
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = sink_byte(sent + k as u64);
            }
            hash = fnv1a(hash, &chunk[..n]);
            stream
                .write_all(&chunk[..n])
                .map_err(io_err("TCP send to the sink"))?;
            sent += n as u64;
        }
        let mut answer = [0u8; 16];
        stream
            .read_exact(&mut answer)
            .map_err(io_err("the sink's answer"))?;
        let elapsed = start.elapsed();
        let count = u64::from_le_bytes(answer[..8].try_into().unwrap_or_default());
        let theirs = u64::from_le_bytes(answer[8..].try_into().unwrap_or_default());
        if count != len || theirs != hash {
            return Err(format!(
                "the sink read {count} of {len} bytes, hash {theirs:#018x} (sent {hash:#018x})"
            ));
        }
        Ok(elapsed)
    }

    /// Reads `len` bytes from the generator and checks every byte against [`pattern`]; the
    /// kernel then closes. Returns the time from the request to the last byte.
    pub fn tcp_source(&self, len: u64) -> std::result::Result<Duration, String> {
        let start = Instant::now();
        let mut stream = self.connect(b'G', len)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("TCP receive from the generator: {e}")),
            };
            if let Some(k) = (0..n).find(|&k| buf[k] != pattern(got + k as u64)) {
                return Err(format!(
                    "byte {} from the generator is {:#04x}, expected {:#04x}",
                    got + k as u64,
                    buf[k],
                    pattern(got + k as u64)
                ));
            }
            got += n as u64;
        }
        let elapsed = start.elapsed();
        if got != len {
            return Err(format!("the generator sent {got} of {len} bytes"));
        }
        Ok(elapsed)
    }

    /// Asks the kernel to stop serving; it answers `bye`.
    pub fn quit(&self) -> std::result::Result<(), String> {
        let socket = self.udp(Duration::from_millis(500))?;
        let mut buf = [0u8; 16];
        for _ in 0..10 {
            socket
                .send_to(b"quit", ("127.0.0.1", self.ports.control))
                .map_err(io_err("UDP send"))?;
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && &buf[..n] == b"bye"
            {
                return Ok(());
            }
        }
        Err("no answer to quit".into())
    }
}

/// The IPv4 header checksum (RFC 791) of `header`.
fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 packet (20-byte header, checksum filled) carrying `payload` with `protocol`.
fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    let sum = ip_checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A UDP datagram (checksum 0: none, allowed over IPv4).
fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

/// A frame to the guest's NIC 1 from xtask's address.
fn to_guest(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(RAW_GUEST_MAC, RAW_HOST_MAC, ethertype, payload)
}

/// Frames no stack should accept, each with what is wrong with it.
pub fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let udp_echo = |payload: &[u8]| udp(RAW_HOST_PORT, GUEST_ECHO, payload);
    let good_ip = ipv4(RAW_HOST_IP, RAW_GUEST_IP, 17, &udp_echo(b"x"));
    let mut frames: Vec<(&'static str, Vec<u8>)> = vec![
        ("1 byte", vec![0x52]),
        (
            "13 bytes (short Ethernet header)",
            to_guest(0x0800, &[])[..13].to_vec(),
        ),
        ("Ethernet header only (IPv4)", to_guest(0x0800, &[])),
        ("Ethernet header only (ARP)", to_guest(0x0806, &[])),
        ("unknown ethertype", to_guest(0x88b5, &[0xaa; 46])),
    ];
    let mut bad = |what: &'static str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut ip = good_ip.clone();
        edit(&mut ip);
        frames.push((what, to_guest(0x0800, &ip)));
    };
    bad("IPv4 header length 4 words", &|p| p[0] = 0x44);
    bad("IPv4 header length 15 words, 29-byte packet", &|p| {
        p[0] = 0x4f
    });
    bad("IPv4 version 6 in an IPv4 frame", &|p| p[0] = 0x65);
    bad("IPv4 total length 65535", &|p| {
        p[2..4].copy_from_slice(&[0xff, 0xff])
    });
    bad("IPv4 total length 10", &|p| {
        p[2..4].copy_from_slice(&[0, 10])
    });
    bad("IPv4 header checksum wrong", &|p| p[10] ^= 0x55);
    bad("IPv4 first fragment (more fragments)", &|p| {
        p[6] = 0x20;
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = ip_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    });
    bad("UDP length 65535", &|p| {
        p[24..26].copy_from_slice(&[0xff, 0xff])
    });
    bad("UDP length 3", &|p| p[24..26].copy_from_slice(&[0, 3]));
    bad("UDP header cut short", &|p| {
        p.truncate(24);
        p[2..4].copy_from_slice(&24u16.to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = ip_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    });
    // TCP to the stream port: data offset past the segment, and options of length 0 and 1
    // (a parser that trusts them loops or reads past the end).
    let tcp_syn = |data_offset_words: u8, options: &[u8]| {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&RAW_HOST_PORT.to_be_bytes());
        tcp.extend_from_slice(&GUEST_STREAM.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, data_offset_words << 4, 0x02]);
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        to_guest(0x0800, &ipv4(RAW_HOST_IP, RAW_GUEST_IP, 6, &tcp))
    };
    frames.push(("TCP SYN with data offset 15 words", tcp_syn(15, &[])));
    frames.push((
        "TCP SYN with an option of length 0",
        tcp_syn(6, &[2, 0, 0, 0]),
    ));
    frames.push((
        "TCP SYN with an option of length 1",
        tcp_syn(6, &[3, 1, 0, 0]),
    ));
    let arp_request = {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&RAW_HOST_MAC);
        arp.extend_from_slice(&RAW_HOST_IP);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&RAW_GUEST_IP);
        arp
    };
    frames.push((
        "ARP cut after 10 bytes",
        to_guest(0x0806, &arp_request[..10]),
    ));
    let mut arp = arp_request.clone();
    arp[4] = 200;
    frames.push((
        "ARP with hardware address length 200",
        to_guest(0x0806, &arp),
    ));
    frames.push((
        "ICMP echo request with a wrong checksum",
        to_guest(
            0x0800,
            &ipv4(
                RAW_HOST_IP,
                RAW_GUEST_IP,
                1,
                &[8, 0, 0x12, 0x34, 0, 1, 0, 1],
            ),
        ),
    ));
    frames.push((
        "9000-byte frame (over the MTU and the buffers)",
        to_guest(0x0800, &[0x45; 8986]),
    ));
    frames.push((
        "broadcast garbage",
        ethernet([0xff; 6], RAW_HOST_MAC, 0x0800, &[0xff; 60]),
    ));
    // Random frames: half to the guest's address, the rest anywhere; common ethertypes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2000 {
        // Never empty: QEMU's `socket` back-end takes a 0-byte datagram for the end of the
        // connection and stops reading (QEMU 7.2), which would cut NIC 1 off.
        let len = 1 + (next() % 1600) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && frame.len() >= 14 {
            frame[..6].copy_from_slice(&RAW_GUEST_MAC);
            let ethertype: [u8; 2] = match i % 6 {
                0 => [0x08, 0x00],
                2 => [0x08, 0x06],
                _ => [0x86, 0xdd],
            };
            frame[12..14].copy_from_slice(&ethertype);
            if ethertype == [0x08, 0x00] && frame.len() >= 34 {
                frame[14] = 0x45;
            }
        }
        frames.push(("random bytes", frame));
    }
    frames
}

/// Sends [`malformed_frames`] to NIC 1, then a well-formed UDP echo request; the kernel must
/// answer it (answering ARP on the way). Returns how many frames were sent.
pub fn malformed_then_echo(link: &RawLink) -> std::result::Result<usize, String> {
    let frames = malformed_frames();
    for (_, frame) in &frames {
        link.send(frame)?;
    }
    let payload = b"veridian raw echo after malformed frames";
    let request = to_guest(
        0x0800,
        &ipv4(
            RAW_HOST_IP,
            RAW_GUEST_IP,
            17,
            &udp(RAW_HOST_PORT, GUEST_ECHO, payload),
        ),
    );
    let start = Instant::now();
    let mut last_send = None::<Instant>;
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < IO_TIMEOUT {
        if last_send.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            link.send(&request)?;
            last_send = Some(Instant::now());
        }
        let Ok((n, _)) = link.socket.recv_from(&mut buf) else {
            continue;
        };
        let frame = &buf[..n];
        if frame.len() < 14 || frame[..6] != RAW_HOST_MAC && frame[..6] != [0xff; 6] {
            continue;
        }
        match u16::from_be_bytes([frame[12], frame[13]]) {
            // An ARP request for our address: answer it.
            0x0806 if frame.len() >= 42 && frame[21] == 1 && frame[38..42] == RAW_HOST_IP => {
                let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
                arp.extend_from_slice(&RAW_HOST_MAC);
                arp.extend_from_slice(&RAW_HOST_IP);
                arp.extend_from_slice(&frame[22..28]);
                arp.extend_from_slice(&frame[28..32]);
                link.send(&ethernet(RAW_GUEST_MAC, RAW_HOST_MAC, 0x0806, &arp))?;
            }
            0x0800 if frame.len() >= 42 && frame[23] == 17 => {
                let ihl = usize::from(frame[14] & 0xf) * 4;
                let udp = &frame[14 + ihl..];
                if udp.len() >= 8
                    && u16::from_be_bytes([udp[0], udp[1]]) == GUEST_ECHO
                    && u16::from_be_bytes([udp[2], udp[3]]) == RAW_HOST_PORT
                {
                    return if &udp[8..] == payload {
                        Ok(frames.len())
                    } else {
                        Err("the echo on NIC 1 came back altered".into())
                    };
                }
            }
            _ => {}
        }
    }
    Err(format!(
        "no echo on NIC 1 within {} s after {} malformed frames",
        IO_TIMEOUT.as_secs(),
        frames.len()
    ))
}

/// Boots `elf` in `mode=serve` on `vm` with NIC 0 (and NIC 1 when `raw`), runs `work` with a
/// client against it in a thread once the kernel answers, then asks the kernel to quit (also when the client failed), and
/// returns how QEMU ended with what the client returned.
pub fn serve_session<T: Send + 'static>(
    elf: &Path,
    vm: Vm,
    raw: bool,
    timeout: Duration,
    work: impl FnOnce(&Client, Option<&RawLink>) -> std::result::Result<T, String> + Send + 'static,
) -> Result<(Outcome, std::result::Result<T, String>)> {
    let io = |e: std::io::Error| crate::error::Error::Failed(format!("network set-up: {e}"));
    let ports = Ports::pick().map_err(io)?;
    let link = if raw {
        Some(RawLink::new().map_err(io)?)
    } else {
        None
    };
    let boot = Boot::Kernel {
        elf: elf.to_path_buf(),
        cmdline: format!("mode=serve net.limit_s={}", timeout.as_secs()),
    };
    let mut command: Command = qemu::command(&boot, vm);
    command.args(ports.qemu_args());
    if let Some(link) = &link {
        command.args(link.qemu_args().map_err(io)?);
    }
    let worker = thread::spawn(move || {
        let client = Client::new(ports);
        // A panicking client still asks the kernel to quit (QEMU would run to its timeout).
        let result = client.wait_ready(Duration::from_secs(120)).and_then(|_| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                work(&client, link.as_ref())
            }))
            .unwrap_or_else(|_| Err("the client panicked".into()))
        });
        let quit = client.quit();
        result.and_then(|r| quit.map(|()| r))
    });
    let outcome = qemu::run_command(command, timeout, false)?;
    let result = worker
        .join()
        .unwrap_or_else(|_| Err("the client thread panicked".into()));
    Ok((outcome, result))
}

/// Throughput in MB/s (10^6 bytes per second) of `bytes` in `time`.
pub fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64().max(1e-9) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_pattern_match_the_kernel() {
        // Known FNV-1a 64 values; the kernel's functions are the same code, and a disagreement
        // fails the sink and generator checks of `cargo xtask test`.
        assert_eq!(fnv1a(FNV_OFFSET, b""), FNV_OFFSET);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(pattern(0), 0);
        assert_eq!(pattern(1), 0x9e);
    }

    #[test]
    fn ipv4_checksum_verifies() {
        let packet = ipv4([10, 0, 3, 2], [10, 0, 3, 15], 17, &udp(1, 7, b"hi"));
        // A header with its checksum in place sums to 0xffff (checksum 0).
        assert_eq!(ip_checksum(&packet[..20]), 0);
        assert_eq!(packet.len(), 20 + 8 + 2);
    }

    #[test]
    fn malformed_frames_are_what_they_say() {
        let frames = malformed_frames();
        assert!(frames.len() > 2000);
        let find = |what: &str| &frames.iter().find(|(w, _)| *w == what).expect(what).1;
        assert_eq!(find("1 byte").len(), 1);
        assert_eq!(find("IPv4 header length 4 words")[14], 0x44);
        let short = find("UDP header cut short");
        assert_eq!(short.len(), 14 + 24);
        assert_eq!(ip_checksum(&short[14..34]), 0);
    }

    #[test]
    fn qemu_options_forward_to_localhost_only() {
        let ports = Ports {
            stream: 1,
            echo: 2,
            control: 3,
        };
        let args = ports.qemu_args().join(" ");
        assert_eq!(args.matches("hostfwd=").count(), 3);
        assert_eq!(args.matches("hostfwd=tcp:127.0.0.1:1-:5001").count(), 1);
        assert_eq!(args.matches(":127.0.0.1:").count(), 3);
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median::<f64>(&mut []), None);
    }
}

/// Options of `cargo xtask net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Transfers each way (the median is reported).
    pub runs: usize,
    /// MiB per transfer.
    pub mib: u64,
    /// UDP round trips timed.
    pub echoes: usize,
    /// Run `cargo xtask test`'s network step instead of timing.
    pub check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runs: 5,
            mib: 32,
            echoes: 2000,
            check: false,
        }
    }
}

/// What `cargo xtask net` measured.
#[derive(Clone, Debug, Default)]
struct Figures {
    rx: Vec<f64>,
    tx: Vec<f64>,
    echo_us: Vec<f64>,
}

/// How long a served session may take at most.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(600);

/// `cargo xtask net`: the release kernel in `mode=serve` (4 CPUs, 2 NUMA nodes, TCG), the
/// throughput of `runs` transfers of `mib` MiB each way and `echoes` UDP round trips, timed by
/// the wall clock here.
pub fn bench(options: Options) -> Result<std::process::ExitCode> {
    let elf = crate::kernel::build(crate::kernel::Profile::Release)?;
    if options.check {
        return match check(&elf)? {
            Ok(summary) => {
                println!("xtask: network check passed: {summary}");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Err(problem) => Err(crate::error::Error::Failed(problem)),
        };
    }
    let bytes = options.mib << 20;
    let (outcome, result) = serve_session(
        &elf,
        qemu::Machine::Numa.into(),
        false,
        SESSION_TIMEOUT,
        move |client, _| {
            let mut figures = Figures::default();
            let echo = client.udp_echo(options.echoes)?;
            figures.echo_us = echo
                .round_trips
                .iter()
                .map(|d| d.as_secs_f64() * 1e6)
                .collect();
            for run in 0..options.runs {
                let rx = mb_per_s(bytes, client.tcp_sink(bytes)?);
                let tx = mb_per_s(bytes, client.tcp_source(bytes)?);
                println!(
                    "xtask: net run {}: net_tcp_rx {rx:.1} MB/s, net_tcp_tx {tx:.1} MB/s",
                    run + 1
                );
                figures.rx.push(rx);
                figures.tx.push(tx);
            }
            Ok(figures)
        },
    )?;
    let figures = result.map_err(crate::error::Error::Failed)?;
    if let Some(reason) = outcome.failure_reason() {
        return Err(crate::error::Error::Failed(format!(
            "the served kernel: {reason}"
        )));
    }
    let spread = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{min:.1}..{max:.1}")
    };
    println!(
        "xtask: wall-clock figures of the kernel under QEMU TCG (bounded by the emulator, not by \
         a network), release kernel, 4 vCPUs, QEMU user network, client on 127.0.0.1:"
    );
    println!(
        "  net_tcp_rx   (host -> kernel sink, {} MiB x {}): median {:.1} MB/s (runs {})",
        options.mib,
        options.runs,
        median(&mut figures.rx.clone()).unwrap_or(0.0),
        spread(&figures.rx)
    );
    println!(
        "  net_tcp_tx   (kernel generator -> host, {} MiB x {}): median {:.1} MB/s (runs {})",
        options.mib,
        options.runs,
        median(&mut figures.tx.clone()).unwrap_or(0.0),
        spread(&figures.tx)
    );
    let mut echo = figures.echo_us;
    let middle = median(&mut echo).unwrap_or(0.0);
    // `median` left the values sorted.
    println!(
        "  net_udp_echo (round trip, {} datagrams of 1..1472 bytes): median {middle:.0} us, p99 {:.0} us",
        echo.len(),
        echo.get(echo.len() * 99 / 100).copied().unwrap_or(0.0)
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// The step of `cargo xtask test`: the release kernel served on one CPU with both NICs; 10 000
/// UDP echoes, 64 MiB to the sink and from the generator (checked by hash and byte for byte),
/// the malformed frames on NIC 1 and an echo there, 100 more echoes on NIC 0, then `quit`: the
/// kernel must exit with success (no NIC out of service, every pool buffer accounted for).
pub fn check(elf: &Path) -> Result<std::result::Result<String, String>> {
    let (outcome, result) = serve_session(
        elf,
        qemu::Machine::Single.into(),
        true,
        SESSION_TIMEOUT,
        |client, link| {
            let echo = client.udp_echo(10_000)?;
            client.tcp_sink(64 << 20)?;
            client.tcp_source(64 << 20)?;
            let link = link.ok_or("no second NIC")?;
            let malformed = malformed_then_echo(link)?;
            client.udp_echo(100)?;
            Ok(format!(
                "{} datagrams echoed ({} resent), 64 MiB each way checked, {malformed} malformed \
                 frames survived",
                echo.echoed, echo.resent
            ))
        },
    )?;
    // The kernel's network lines (devices, services, the final counts) explain a failure.
    let said = || {
        outcome
            .serial
            .iter()
            .filter(|l| l.starts_with("net:") || l.contains("virtio:   net"))
            .map(|l| format!("\n    kernel: {}", l.trim()))
            .collect::<String>()
    };
    Ok(match (result, outcome.failure_reason()) {
        (Ok(summary), None) => Ok(summary),
        (Err(client), None) => Err(format!("{client}{}", said())),
        (Ok(_), Some(kernel)) => Err(format!("the served kernel: {kernel}{}", said())),
        (Err(client), Some(kernel)) => {
            Err(format!("{client}; the served kernel: {kernel}{}", said()))
        }
    })
}
