//! One client connection: read frames, handle requests concurrently, write responses in order.
//!
//! The reader task decodes nothing but the length prefix; each request runs as its own task
//! (so requests pipeline), and the writer awaits those tasks strictly in arrival order, as the
//! Kafka protocol requires. Both the number of requests in flight and their bytes are bounded;
//! the reader stops reading from the socket while either bound is reached.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;
use net::frame::{frame_len, FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};

use crate::handlers::{dispatch, Outcome};
use crate::shard::Shard;

/// Requests of one connection being handled or waiting to be written. librdkafka and the Java
/// client pipeline up to 5 by default; more than this only adds memory per connection.
pub const CONNECTION_REQUESTS_IN_FLIGHT_MAX: usize = 64;

/// Request bytes of one connection held in memory at once.
pub const CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX: u64 = 128 * 1024 * 1024;

/// Read buffer of a connection.
const CONNECTION_READ_BUFFER_BYTES: usize = 64 * 1024;

const _: () = assert!(
    FRAME_BYTES_MAX as u64 <= CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX,
    "a whole frame fits the budget"
);

struct InFlight {
    response: JoinHandle<Outcome>,
    _bytes: StaticPermit,
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer_ip: Rc<str> = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
        .into();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let fd = stream.as_raw_fd();
    let (reader, writer) = futures_lite::io::split(stream);
    let (queue_tx, queue_rx) =
        local_channel::new_bounded::<InFlight>(CONNECTION_REQUESTS_IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_responses(writer, queue_rx, fd));
    let budget = Rc::new(Semaphore::new(CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX));
    if let Err(reason) = read_requests(&shard, &peer_ip, reader, &queue_tx, &budget).await {
        log::debug!("closing connection from {peer}: {reason}");
    }
    drop(queue_tx);
    writer_task.await;
}

async fn read_requests(
    shard: &Rc<Shard>,
    peer_ip: &Rc<str>,
    reader: impl futures_lite::AsyncRead + Unpin,
    queue: &local_channel::LocalSender<InFlight>,
    budget: &Rc<Semaphore>,
) -> Result<(), String> {
    let mut reader =
        futures_lite::io::BufReader::with_capacity(CONNECTION_READ_BUFFER_BYTES, reader);
    loop {
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        match reader.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let len = frame_len(prefix).map_err(|e| e.to_string())?;
        // Take the bytes from the budget before allocating them.
        let permit = budget
            .acquire_static_permit(len.max(1) as u64)
            .await
            .map_err(|e| e.to_string())?;
        let mut frame = BytesMut::zeroed(len);
        reader
            .read_exact(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        let response =
            glommio::spawn_local(dispatch(shard.clone(), peer_ip.clone(), frame.freeze())).detach();
        if queue
            .send(InFlight {
                response,
                _bytes: permit,
            })
            .await
            .is_err()
        {
            return Err("writer stopped".into());
        }
    }
}

/// Writes the pieces of one frame back to back; large records go to the socket from the buffer
/// storage returned, without a copy.
async fn write_pieces(
    writer: &mut (impl futures_lite::AsyncWrite + Unpin),
    pieces: &[bytes::Bytes],
) -> std::io::Result<()> {
    for piece in pieces {
        writer.write_all(piece).await?;
    }
    Ok(())
}

async fn write_responses(
    mut writer: impl futures_lite::AsyncWrite + Unpin,
    queue: local_channel::LocalReceiver<InFlight>,
    fd: std::os::fd::RawFd,
) {
    while let Some(in_flight) = queue.recv().await {
        let outcome = in_flight
            .response
            .await
            .unwrap_or_else(|| Outcome::Close("request task was cancelled".into()));
        let result = match outcome {
            Outcome::Respond(frame) => writer.write_all(&frame).await,
            Outcome::RespondPieces(pieces) => write_pieces(&mut writer, &pieces).await,
            Outcome::NoResponse => Ok(()),
            Outcome::Close(reason) => {
                log::info!("closing a connection: {reason}");
                break;
            }
        };
        if result.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    // Wake the reader if it is blocked on a socket the peer keeps open. The descriptor stays
    // valid: the stream is dropped only after both tasks end.
    // SAFETY: `fd` belongs to the stream shared by this connection's reader and writer.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
