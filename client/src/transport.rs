//! A blocking connection that sends request frames and reads response frames.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::codec::{frame_body_bytes, FRAME_PREFIX_BYTES};
use super::error::{ClientError, Result};

/// One TCP connection. Requests are sent and answered one at a time (no pipelining), so the
/// response read next always belongs to the request written last.
pub struct Connection {
    stream: TcpStream,
    address: String,
}

impl Connection {
    /// Tries each address `address` resolves to, each with `connect_timeout`.
    pub fn connect(address: &str, connect_timeout: Duration, io_timeout: Duration) -> Result<Self> {
        let io_error = |source| ClientError::Io {
            address: address.to_owned(),
            source,
        };
        let mut error_last = None;
        for socket_address in address.to_socket_addrs().map_err(io_error)? {
            match TcpStream::connect_timeout(&socket_address, connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(io_error)?;
                    stream
                        .set_read_timeout(Some(io_timeout))
                        .map_err(io_error)?;
                    stream
                        .set_write_timeout(Some(io_timeout))
                        .map_err(io_error)?;
                    return Ok(Connection {
                        stream,
                        address: address.to_owned(),
                    });
                }
                Err(error) => error_last = Some(error),
            }
        }
        let error = error_last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing")
        });
        Err(io_error(error))
    }

    /// The socket, for a caller that splits reading and writing over two threads.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket address actually connected to, to tell whether another address names the
    /// same broker.
    pub fn peer_address(&self) -> Result<std::net::SocketAddr> {
        self.stream
            .peer_addr()
            .map_err(|source| self.io_error(source))
    }

    /// Adjusts the read timeout, e.g. so a long-poll fetch can wait longer than its max_wait.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|source| self.io_error(source))
    }

    pub fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.stream
            .write_all(frame)
            .map_err(|source| self.io_error(source))
    }

    /// Reads one frame and returns it without its length prefix. The size is checked against
    /// FRAME_BYTES_MAX before the body buffer is allocated.
    pub fn receive_frame(&mut self) -> Result<Bytes> {
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|source| self.io_error(source))?;
        let body_bytes = frame_body_bytes(prefix)?;
        let mut body = BytesMut::zeroed(body_bytes);
        self.stream
            .read_exact(&mut body)
            .map_err(|source| self.io_error(source))?;
        Ok(body.freeze())
    }

    fn io_error(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            address: self.address.clone(),
            source,
        }
    }
}
