//! One client connection: read frames, handle requests concurrently, write responses in order.
//!
//! The reader task decodes nothing but the length prefix; each request runs as its own task
//! (so requests pipeline), and the writer awaits those tasks strictly in arrival order, as the
//! Kafka protocol requires. Both the number of requests in flight and their bytes are bounded,
//! per connection and (bytes) per shard across connections; the reader stops reading from the
//! socket while any bound is reached. A frame must arrive whole within
//! `--request-read-timeout-ms` of its first byte, and a connection with nothing in flight that
//! sends nothing for `--connections-max-idle-ms` is closed.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;
use net::frame::{frame_len, FrameError, FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};

use crate::handlers::{dispatch, Outcome};
use crate::request_budget::RequestPermit;
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
    _shard_bytes: RequestPermit,
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
    let timeouts = Timeouts {
        idle: Duration::from_millis(shard.config.connections_max_idle_ms),
        request_read: Duration::from_millis(shard.config.request_read_timeout_ms),
    };
    // Something is in flight while the connection's budget is not whole: each request holds
    // at least one unit until its response is written.
    let busy = || budget.available() < CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX;
    loop {
        let Some((prefix, started)) = read_prefix(&mut reader, &timeouts, busy).await? else {
            return Ok(());
        };
        let len = frame_len(prefix).map_err(|e| e.to_string())?;
        let frame_bytes_max = shard.request_budget.frame_bytes_max();
        if len > frame_bytes_max {
            return Err(format!("frame of {len} bytes exceeds {frame_bytes_max}"));
        }
        // Take the bytes from both budgets before allocating them.
        let waiting_since = Instant::now();
        let permit = budget
            .acquire_static_permit(len.max(1) as u64)
            .await
            .map_err(|e| e.to_string())?;
        let shard_permit = shard.request_budget.acquire(len).await?;
        // Time spent waiting for the budget is the broker's, not the client's.
        let deadline = started + timeouts.request_read + waiting_since.elapsed();
        let mut frame = BytesMut::zeroed(len);
        match within(deadline, reader.read_exact(&mut frame)).await {
            Some(read) => read.map_err(|e| e.to_string())?,
            None => return Err(format!("a request of {len} bytes did not arrive in time")),
        }
        let response =
            glommio::spawn_local(dispatch(shard.clone(), peer_ip.clone(), frame.freeze())).detach();
        let in_flight = InFlight {
            response,
            _bytes: permit,
            _shard_bytes: shard_permit,
        };
        if queue.send(in_flight).await.is_err() {
            return Err("writer stopped".into());
        }
    }
}

struct Timeouts {
    idle: Duration,
    request_read: Duration,
}

/// Reads the next length prefix, with when its first byte arrived; `None` at a clean end of
/// the stream. Waits at most `idle` for the first byte while `busy()` is false, and at most
/// the request read timeout for the rest once the first byte is in.
async fn read_prefix(
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    timeouts: &Timeouts,
    busy: impl Fn() -> bool,
) -> Result<Option<([u8; FRAME_PREFIX_BYTES], Instant)>, String> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let mut filled = 0;
    let mut started = None;
    while filled < FRAME_PREFIX_BYTES {
        let deadline = match started {
            Some(started) => started + timeouts.request_read,
            None => Instant::now() + timeouts.idle,
        };
        // Cancelling a read loses no bytes: the stream keeps a pending receive for the next.
        match within(deadline, reader.read(&mut prefix[filled..])).await {
            Some(Ok(0)) if filled == 0 => return Ok(None),
            Some(Ok(0)) => return Err(FrameError::TooShort(filled).to_string()),
            Some(Ok(n)) => {
                started.get_or_insert_with(Instant::now);
                filled += n;
            }
            Some(Err(e)) => return Err(e.to_string()),
            None if started.is_some() => {
                return Err("a request prefix did not arrive in time".into())
            }
            None if busy() => {}
            None => return Err("idle connection".into()),
        }
    }
    let started = started.expect("a byte was read");
    Ok(Some((prefix, started)))
}

/// Runs `work` until `deadline`; `None` if the deadline came first.
async fn within<T>(deadline: Instant, work: impl std::future::Future<Output = T>) -> Option<T> {
    let timer = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    };
    futures_lite::future::or(async { Some(work.await) }, timer).await
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
