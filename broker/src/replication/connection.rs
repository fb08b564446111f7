//! One connection from a follower shard to a leader broker's Kafka listener: a request at a
//! time, each response's size checked against the caller's limit before its buffer is
//! allocated, decoded without copying record bytes (they stay slices of the response buffer).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

/// How long a connection attempt to a leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a response may take beyond the wait the request asks of the leader: a leader that
/// stops answering (SIGSTOP, a cut link) is given up on after this, and the connection is
/// opened again.
pub const RESPONSE_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// What goes wrong talking to a leader. Every variant but `Refused` closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The leader refused one partition's request, or the partition's log could not be
    /// truncated: only that partition is retried later, the connection stays.
    #[error("partition refused: {0:?}")]
    Refused(kafka_protocol::error::ResponseError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the leader's address {0} does not resolve")]
    Unresolved(String),
    #[error("a response of {bytes} bytes is over the limit of {limit}")]
    ResponseTooLarge { bytes: usize, limit: usize },
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl<T> From<glommio::GlommioError<T>> for ReplicationError {
    fn from(error: glommio::GlommioError<T>) -> Self {
        ReplicationError::Io(error.into())
    }
}

/// A connection to a leader. Concurrency: owned by one fetcher task; one request in flight.
pub struct LeaderConnection {
    stream: TcpStream,
    correlation_id: i32,
    client_id: String,
}

impl LeaderConnection {
    /// Connects to the leader's advertised listener. A host name is resolved with the blocking
    /// resolver: advertised hosts are normally IP addresses, which resolve without a lookup.
    pub async fn connect(
        host: &str,
        port: u16,
        client_id: String,
    ) -> Result<LeaderConnection, ReplicationError> {
        let address = resolve(host, port)?;
        let stream = TcpStream::connect_timeout(address, CONNECT_TIMEOUT).await?;
        stream.set_nodelay(true)?;
        Ok(LeaderConnection {
            stream,
            correlation_id: 0,
            client_id,
        })
    }

    /// Sends one request and decodes its response, which must arrive within `timeout` and be
    /// at most `response_bytes_max` bytes (checked before anything is allocated for it).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        api_version: i16,
        request: &Req,
        response_bytes_max: usize,
        timeout: Duration,
    ) -> Result<Resp, ReplicationError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = client::codec::encode_request_frame(
            api_key,
            api_version,
            correlation_id,
            &self.client_id,
            request,
        )
        .map_err(|e| ReplicationError::Protocol(e.to_string()))?;
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.write_all(&frame).await?;
        let body = self.read_frame(response_bytes_max).await?;
        // A peer's bytes: a decoder panic on them must not take the shard down.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client::codec::decode_response_frame::<Resp>(api_key, api_version, correlation_id, body)
        }));
        match decoded {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(ReplicationError::Protocol(e.to_string())),
            Err(_) => Err(ReplicationError::Protocol(format!(
                "{api_key:?} v{api_version} response did not decode"
            ))),
        }
    }

    /// Reads one response frame's body: the length is checked, then one buffer of exactly that
    /// size is allocated and filled.
    async fn read_frame(&mut self, response_bytes_max: usize) -> Result<Bytes, ReplicationError> {
        let mut prefix = [0u8; net::frame::FRAME_PREFIX_BYTES];
        self.stream.read_exact(&mut prefix).await?;
        let length = i32::from_be_bytes(prefix);
        let limit = response_bytes_max.min(net::frame::FRAME_BYTES_MAX);
        if length < 0 || length as usize > limit {
            return Err(ReplicationError::ResponseTooLarge {
                bytes: length.max(0) as usize,
                limit,
            });
        }
        let mut body = BytesMut::zeroed(length as usize);
        self.stream.read_exact(&mut body).await?;
        Ok(body.freeze())
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, ReplicationError> {
    let unresolved = || ReplicationError::Unresolved(format!("{host}:{port}"));
    let mut addresses = (host, port).to_socket_addrs().map_err(|_| unresolved())?;
    addresses.next().ok_or_else(unresolved)
}
