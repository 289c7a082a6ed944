//! Zero-copy `send_file` (splice through a pipe) to a Unix stream and to a localhost TCP
//! socket: every byte arrives, in order, from the requested offset; the end of the file is a
//! short transfer; a closed peer and bad offsets are clear errors.

#![cfg(not(loom))]

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use veridian_io::IoError;
use veridian_io::hosted::{Splicer, send_file};

struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(name: &str, content: &[u8]) -> (TempPath, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "veridian-io-sendfile-{}-{name}",
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(content).unwrap();
    (TempPath(path), f)
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8 ^ (i >> 9) as u8).collect()
}

#[test]
fn unix_stream_receives_every_byte() {
    let data = content(1_000_003); // several pipe-fulls, not a multiple of the chunk
    let (_guard, file) = temp_file("unix", &data);
    let (tx, mut rx) = UnixStream::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        got
    });
    let sent = send_file(&file, &tx, 3, data.len()).unwrap();
    // From offset 3, the file ends 3 bytes before `len`: a short transfer.
    assert_eq!(sent, data.len() - 3);
    drop(tx);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len() - 3);
    assert!(got == data[3..], "bytes differ");
}

#[test]
fn tcp_socket_receives_every_byte_with_a_reused_pipe() {
    let data = content(300_000);
    let (_guard, file) = temp_file("tcp", &data);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let socket = TcpStream::connect(addr).unwrap();
    let mut splicer = Splicer::new().unwrap();
    // Two ranges through the same pipe: the first 100 000 bytes, then the rest.
    assert_eq!(
        splicer.send_file(&file, &socket, 0, 100_000).unwrap(),
        100_000
    );
    assert_eq!(
        splicer
            .send_file(&file, &socket, 100_000, usize::MAX)
            .unwrap(),
        200_000
    );
    drop(socket);
    let got = reader.join().unwrap();
    assert!(got == data, "bytes differ ({} received)", got.len());
}

#[test]
fn errors_are_clear() {
    let data = content(200_000);
    let (_guard, file) = temp_file("errors", &data);
    let (tx, rx) = UnixStream::pair().unwrap();
    assert_eq!(
        send_file(&file, &tx, u64::MAX, 10).unwrap_err(),
        IoError::InvalidArgument
    );
    // Past the end: nothing to send.
    assert_eq!(send_file(&file, &tx, 1 << 30, 10).unwrap(), 0);
    drop(rx);
    // The peer is gone.
    assert_eq!(
        send_file(&file, &tx, 0, data.len()).unwrap_err(),
        IoError::BrokenPipe
    );
}
