//! The TLS accept path over an in-memory stream, the way a reactor drives it: bytes arrive
//! in chunks, each handshake step goes to a real offload pool and comes back through the
//! same completion type. For the `tls_accept` fuzz target and the tests that check a
//! handshake split at every byte, plain HTTP on a TLS port, and garbage.

use super::MemStream;
use crate::net::recv::Readiness;
use crate::net::send::Transport;
use crate::net::tls::{HandshakeDone, Handshakes, Shake, Stream};
use crate::offload::{codec, Offload};
use crossbeam_channel::Receiver;
use mio::{Poll, Token, Waker};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How one scripted TLS accept ended.
#[derive(Debug, Default)]
pub struct Probe {
    /// Everything the server wrote (TLS records, or a plain 400).
    pub output: Vec<u8>,
    /// The handshake completed.
    pub established: bool,
    /// The server gave up on the connection (bad input, EOF mid-handshake).
    pub closed: bool,
}

/// A pool and a completion channel for in-memory TLS accepts.
pub struct TlsProbe {
    config: Arc<ServerConfig>,
    handshakes: Handshakes,
    done: Receiver<HandshakeDone>,
    _poll: Poll,
}

impl TlsProbe {
    pub fn new(config: Arc<ServerConfig>) -> io::Result<TlsProbe> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(0))?);
        let (tx, done) = crossbeam_channel::unbounded();
        let levels = codec::Levels {
            gzip: 1,
            zstd: 1,
            brotli: 1,
        };
        let offload = Offload::new(1, levels, 16, 0)?;
        Ok(TlsProbe {
            config,
            handshakes: Handshakes { offload, tx, waker },
            done,
            _poll: poll,
        })
    }

    /// Deliver `chunks` one readable edge at a time (then the client's FIN if `fin`),
    /// advancing the handshake after each, as a reactor would. Err: the connection got
    /// stuck (a step never came back) or broke an invariant.
    pub fn run(&self, chunks: &[&[u8]], fin: bool) -> Result<Probe, String> {
        self.run_with(chunks, fin, |_, _| {})
    }

    /// `run`, with `client(index of the chunk delivered, server output so far)` called
    /// after each chunk's handshake steps (a real client reading the server's flight).
    pub fn run_with(
        &self,
        chunks: &[&[u8]],
        fin: bool,
        mut client: impl FnMut(usize, &[u8]),
    ) -> Result<Probe, String> {
        let mem = MemStream {
            window: usize::MAX / 2,
            ..MemStream::default()
        };
        let mut stream = Stream::tls(mem, self.config.clone()).map_err(|e| e.to_string())?;
        let mut io = Readiness {
            readable: false,
            writable: true,
            read_closed: false,
            eof: false,
        };
        let mut probe = Probe::default();
        let last = chunks.len();
        for i in 0..=last {
            let Stream::Tls(t) = &mut stream else {
                return Err("not a TLS stream".into());
            };
            match chunks.get(i) {
                Some(c) => t.sock_mut().inbox.extend_from_slice(c),
                None if fin => t.sock_mut().fin = true,
                None => {}
            }
            io.readable = true;
            match self.advance(&mut stream, &mut io)? {
                Some(true) => probe.established = true,
                Some(false) => probe.closed = true,
                None => {}
            }
            let out = &mut stream_sock(&mut stream).output;
            client(i, out);
            if probe.established || probe.closed {
                break;
            }
        }
        probe.output = std::mem::take(&mut stream_sock(&mut stream).output);
        Ok(probe)
    }

    /// Drive the handshake until it needs more input. Some(true): established;
    /// Some(false): closed; None: waiting for the client.
    fn advance(
        &self,
        stream: &mut Stream<MemStream>,
        io: &mut Readiness,
    ) -> Result<Option<bool>, String> {
        for _ in 0..1000 {
            match stream.handshake(io, Some(&self.handshakes), (0, 1)) {
                Ok(Shake::Ready) => return Ok(Some(true)),
                Err(_) => return Ok(Some(false)),
                Ok(Shake::Wait) if stream.on_pool() => {
                    let done = self
                        .done
                        .recv_timeout(Duration::from_secs(30))
                        .map_err(|_| "a handshake step never came back from the pool")?;
                    if stream.resume_handshake(done).is_err() {
                        return Ok(Some(false));
                    }
                }
                Ok(Shake::Wait) => return Ok(None),
            }
        }
        Err("the handshake spins without progress".into())
    }
}

fn stream_sock(s: &mut Stream<MemStream>) -> &mut MemStream {
    match s {
        Stream::Plain(m) => m,
        Stream::Tls(t) => t.sock_mut(),
    }
}

/// A server config serving the self-signed certificate `cert_der` with its PKCS#8 key
/// (ALPN `http/1.1`) and a client config trusting that certificate. The fuzz target and the
/// tests make the certificate with rcgen, which vireo itself does not depend on.
pub fn self_signed_configs(
    cert_der: Vec<u8>,
    pkcs8_key_der: Vec<u8>,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), rustls::Error> {
    let cert = CertificateDer::from(cert_der);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_key_der));
    let mut server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(server), Arc::new(client)))
}

/// Bytes a TLS server may answer with: its records, or the plain 400 for plain HTTP.
pub fn plain_400(output: &[u8]) -> bool {
    output.starts_with(b"HTTP/1.1 400 Bad Request\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::ClientConnection;
    use std::io::{Read, Write};

    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        self_signed_configs(ck.cert.der().to_vec(), ck.signing_key.serialize_der()).unwrap()
    }

    /// The client's first flight (its ClientHello).
    fn client_hello(client: &Arc<ClientConfig>) -> (ClientConnection, Vec<u8>) {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(client.clone(), name).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        (c, hello)
    }

    #[test]
    fn a_client_hello_split_at_every_byte_completes_the_handshake() {
        let (server, client) = configs();
        let probe = TlsProbe::new(server).unwrap();
        let (_, hello) = client_hello(&client);
        // Every split of the ClientHello into two reads, then the rest of the handshake
        // driven by a real client.
        for cut in (1..hello.len()).step_by(7).chain([hello.len() - 1]) {
            let (mut c, hello) = client_hello(&client);
            let mut fed = 0;
            let mut second_flight = Vec::new();
            let chunks: [&[u8]; 2] = [&hello[..cut], &hello[cut..]];
            let first = probe
                .run_with(&chunks, false, |_, out| {
                    // The server's flight reaches the client; its answer is collected.
                    if out.len() > fed {
                        let mut rd = &out[fed..];
                        while !rd.is_empty() {
                            c.read_tls(&mut rd).unwrap();
                        }
                        fed = out.len();
                        c.process_new_packets().unwrap();
                        c.write_tls(&mut second_flight).unwrap();
                    }
                })
                .unwrap();
            assert!(!first.closed, "cut {cut}: closed");
            assert!(!first.output.is_empty(), "cut {cut}: no server flight");
            assert!(!plain_400(&first.output));
            assert!(
                !c.is_handshaking() || !second_flight.is_empty(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_whole_handshake_then_a_request_goes_through() {
        let (server, client) = configs();
        let probe = TlsProbe::new(server).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(client, name).unwrap();
        let mem = MemStream {
            window: usize::MAX / 2,
            ..MemStream::default()
        };
        let mut stream = Stream::tls(mem, probe.config.clone()).unwrap();
        let mut io = Readiness {
            readable: false,
            writable: true,
            read_closed: false,
            eof: false,
        };
        let mut fed = 0;
        for _ in 0..10 {
            let mut flight = Vec::new();
            c.write_tls(&mut flight).unwrap();
            stream_sock(&mut stream).inbox.extend_from_slice(&flight);
            io.readable = true;
            let r = probe.advance(&mut stream, &mut io).unwrap();
            let out = &stream_sock(&mut stream).output;
            let mut rd = &out[fed..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            fed = out.len();
            c.process_new_packets().unwrap();
            if r == Some(true) && !c.is_handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking(), "the client never finished");
        // Application data both ways through the established stream.
        c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut rec = Vec::new();
        c.write_tls(&mut rec).unwrap();
        stream_sock(&mut stream).inbox.extend_from_slice(&rec);
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        stream.flush().unwrap();
        let out = &stream_sock(&mut stream).output;
        let mut rd = &out[fed..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        let mut got = Vec::new();
        let _ = c.reader().read_to_end(&mut got);
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn plain_http_gets_a_plain_400_and_garbage_just_a_close() {
        let (server, _) = configs();
        let probe = TlsProbe::new(server).unwrap();
        let p = probe
            .run(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], false)
            .unwrap();
        assert!(p.closed && plain_400(&p.output), "{p:?}");
        assert!(String::from_utf8_lossy(&p.output).contains("plain HTTP sent to an HTTPS port"));
        for junk in [&b"\x00\x01\x02"[..], b"\x16\x03\x01\x00\x05hello", b"\xff"] {
            let p = probe.run(&[junk], true).unwrap();
            assert!(p.closed, "{junk:?}: {p:?}");
            assert!(!p.established);
            assert!(!plain_400(&p.output), "{junk:?}");
        }
    }

    #[test]
    fn half_a_client_hello_then_eof_closes() {
        let (server, client) = configs();
        let probe = TlsProbe::new(server).unwrap();
        let (_, hello) = client_hello(&client);
        let p = probe.run(&[&hello[..hello.len() / 2]], true).unwrap();
        assert!(p.closed && !p.established, "{p:?}");
        // Without the FIN it just waits (the header timeout cuts it in a reactor).
        let p = probe.run(&[&hello[..hello.len() / 2]], false).unwrap();
        assert!(!p.closed && !p.established, "{p:?}");
    }
}
