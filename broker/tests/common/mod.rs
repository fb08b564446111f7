//! A real `sluice serve` process for tests, and a raw Kafka wire connection to it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Broker {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    shards: usize,
    extra_args: Vec<String>,
    child: Option<Child>,
}

/// A free port below Linux's ephemeral range (32768+). A port from that range can be picked as
/// the local port of the test's own connection attempts while the broker is down, and a TCP
/// connection to a closed local port can then connect to itself.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    pub fn start(name: &str, shards: usize) -> Broker {
        Broker::start_with(name, shards, &[])
    }

    /// Starts with extra `sluice serve` arguments.
    pub fn start_with(name: &str, shards: usize, extra_args: &[&str]) -> Broker {
        let data_dir =
            std::env::temp_dir().join(format!("sluice-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let mut broker = Broker {
            addr,
            data_dir,
            shards,
            extra_args,
            child: None,
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "serve",
                "--listen",
                &self.addr.to_string(),
                "--shards",
                &self.shards.to_string(),
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sluice starts");
        self.child = Some(child);
        // Ready means answering a request: after a kill -9 the old process's listener can
        // linger for a moment and accept connections that are then reset.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers_api_versions() {
            assert!(
                Instant::now() < deadline,
                "broker did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_api_versions(&self) -> bool {
        let Ok(stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut wire = Wire {
            stream,
            correlation_id: 0,
        };
        // ApiVersions v0: api key 18, version 0, correlation id 1, empty client id.
        wire.send_raw(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0]);
        wire.read_frame()
            .is_some_and(|frame| frame.starts_with(&[0, 0, 0, 1]))
    }

    /// kill -9, then start again on the same port and data directory.
    pub fn kill_and_restart(&mut self) {
        self.kill_and_restart_with(|_| {});
    }

    /// kill -9, run `while_down` on the data directory, then start again.
    pub fn kill_and_restart_with(&mut self, while_down: impl FnOnce(&std::path::Path)) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        while_down(&self.data_dir);
        self.launch();
    }

    /// The broker process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn connect(&self) -> Wire {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Wire {
            stream,
            correlation_id: 0,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub struct Wire {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame; None when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).ok()?;
        let len = i32::from_be_bytes(prefix) as usize;
        assert!(len < 256 << 20);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True when the broker closed the connection (EOF or reset) without answering.
    pub fn closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }

    pub fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        let correlation_id = self.send(key, version, request);
        self.receive(key, version, correlation_id)
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub fn send<Req: Encodable>(&mut self, key: ApiKey, version: i16, request: &Req) -> i32 {
        self.correlation_id += 1;
        let frame = request_frame(key, version, self.correlation_id, request);
        self.send_raw(&frame);
        self.correlation_id
    }

    /// Reads the next response, which must answer the request `correlation_id`.
    pub fn receive<Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Resp {
        let mut response = self.read_frame().expect("a response");
        let header =
            ResponseHeader::decode(&mut response, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let decoded = Resp::decode(&mut response, version).unwrap();
        assert_eq!(response.remaining(), 0, "the whole response was decoded");
        decoded
    }
}

/// A request frame, length prefix included.
pub fn request_frame<Req: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.to_vec()
}

/// A RecordBatch v2 of records with the given values, keys "k<i>", timestamps from `ts`.
pub fn batch(values: &[&str], ts: i64) -> Bytes {
    idempotent_batch(values, ts, -1, -1, 0)
}

/// A batch from an idempotent producer: its id, epoch and first sequence number.
pub fn idempotent_batch(
    values: &[&str],
    ts: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Bytes {
    assert!(!values.is_empty(), "a batch holds at least one record");
    let mut section = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        record_batch::encode_record(
            &mut section,
            i as i32,
            i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[],
        );
    }
    let fields = record_batch::BatchFields {
        attributes: 0,
        base_timestamp: ts,
        max_timestamp: ts + values.len() as i64 - 1,
        producer_id,
        producer_epoch,
        base_sequence,
    };
    record_batch::encode_batch(&fields, values.len() as i32, &section)
}

/// Decodes every record in fetched bytes: (offset, key, value, timestamp).
pub fn records(mut bytes: Bytes) -> Vec<(i64, String, String, i64)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        for r in set.records {
            let text =
                |b: Option<Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            out.push((r.offset, text(r.key), text(r.value), r.timestamp));
        }
    }
    out
}
