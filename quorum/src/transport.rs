//! Raft messages between voters over TCP.
//!
//! Each node connects once to every peer and sends its messages on that connection only; it
//! accepts connections from any peer and only reads from them. A connection starts with a
//! handshake, then carries frames:
//!
//! | bytes | handshake field                        |   | bytes | frame field                   |
//! |-------|----------------------------------------|---|-------|-------------------------------|
//! | 4     | magic `SLQR`                           |   | 4     | length u32 LE (1..=MESSAGE_BYTES_MAX) |
//! | 2     | protocol version u16 LE (1)            |   | n     | prost-encoded raft `Message`  |
//! | 8     | sender node id u64 LE                  |   |       |                               |
//! | 1     | cluster id length (1..=255)            |   |       |                               |
//! | n     | cluster id, UTF-8                      |   |       |                               |
//!
//! **Invariant:** no allocation is sized from the wire before the length is checked against its
//! limit; a connection that breaks a rule is closed and nothing else happens to the node.
//! **Invariant:** sending never waits: a full peer queue drops the message (Raft retransmits).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;
use prost::Message as _;
use raft::prelude::Message;

use crate::config::{Config, Voter};

/// The largest Raft message, encoded. A message carries at most `max_size_per_msg` (1 MiB) of
/// entries unless one entry alone is larger, or one snapshot, so this bounds the state machine's
/// snapshot too.
pub const MESSAGE_BYTES_MAX: usize = 32 << 20;
pub const MAGIC: [u8; 4] = *b"SLQR";
pub const PROTOCOL_VERSION: u16 = 1;
/// Messages waiting for one peer's connection. Raft needs few in flight (`max_inflight_msgs`
/// appends plus heartbeats); when the peer is slow or away, newer messages are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 1024;
/// Inbound connections open at once; each peer needs one, the rest is slack for reconnects.
pub const INBOUND_CONNECTIONS_MAX: usize = 64;
/// A connection that has not finished its handshake by then is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bytes of a frame read before the buffer grows again.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of encoded messages written to a socket in one write.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Where received messages go: the driver's inbox. Returns false once the driver is gone.
pub type Deliver = Rc<dyn Fn(Message) -> bool>;

/// Where the driver sends Raft messages. Sending never waits and may drop (Raft retransmits).
pub trait Outbox {
    fn send(&self, message: Message);
}

impl Outbox for Transport {
    fn send(&self, message: Message) {
        Transport::send(self, message);
    }
}

/// The sending side: one bounded queue and one connection task per peer.
pub struct Transport {
    peers: HashMap<u64, LocalSender<Message>>,
    /// Dropping the transport cancels them.
    _tasks: Vec<Task<()>>,
    dropped: Rc<Cell<u64>>,
}

impl Transport {
    /// Starts one connecting task per peer (every voter but `config.node_id`).
    pub fn start(config: &Config) -> Transport {
        let mut peers = HashMap::new();
        let mut tasks = Vec::new();
        for voter in config
            .voters
            .iter()
            .filter(|voter| voter.id != config.node_id)
        {
            let (sender, receiver) = local_channel::new_bounded(PEER_QUEUE_MESSAGES_MAX);
            peers.insert(voter.id, sender);
            let handshake = handshake_bytes(config);
            tasks.push(glommio::spawn_local(run_peer(
                voter.clone(),
                handshake,
                receiver,
            )));
        }
        Transport {
            peers,
            _tasks: tasks,
            dropped: Rc::new(Cell::new(0)),
        }
    }

    /// Queues `message` for its peer, or drops it if the queue is full or the peer unknown.
    pub fn send(&self, message: Message) {
        let delivered = match self.peers.get(&message.to) {
            Some(queue) => queue.try_send(message).is_ok(),
            None => false,
        };
        if !delivered {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    pub fn messages_dropped(&self) -> u64 {
        self.dropped.get()
    }
}

pub fn handshake_bytes(config: &Config) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(15 + config.cluster_id.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    bytes.extend_from_slice(&config.node_id.to_le_bytes());
    bytes.push(config.cluster_id.len() as u8);
    bytes.extend_from_slice(config.cluster_id.as_bytes());
    bytes
}

/// Connects (with capped exponential backoff) and writes queued messages until the queue closes.
async fn run_peer(peer: Voter, handshake: Vec<u8>, queue: LocalReceiver<Message>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        match connect(peer.address, &handshake).await {
            Ok(mut stream) => {
                backoff = RECONNECT_BACKOFF_MIN;
                match write_messages(&mut stream, &queue).await {
                    Ok(()) => return,
                    Err(error) => log::debug!("connection to voter {} broke: {error}", peer.id),
                }
            }
            Err(error) => log::debug!(
                "cannot connect to voter {} at {}: {error}",
                peer.id,
                peer.address
            ),
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

async fn connect(address: SocketAddr, handshake: &[u8]) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(address, CONNECT_TIMEOUT).await?;
    stream.set_nodelay(true)?;
    stream.write_all(handshake).await?;
    Ok(stream)
}

/// Writes messages as they are queued, several per write when they are waiting. `Ok` once the
/// queue is closed (the node stops).
async fn write_messages(stream: &mut TcpStream, queue: &LocalReceiver<Message>) -> io::Result<()> {
    let mut bytes = Vec::new();
    loop {
        let Some(message) = queue.recv().await else {
            return Ok(());
        };
        encode_message(&message, &mut bytes);
        while bytes.len() < WRITE_BATCH_BYTES_MAX {
            match futures_lite::future::poll_once(queue.recv()).await {
                Some(Some(message)) => encode_message(&message, &mut bytes),
                _ => break,
            }
        }
        stream.write_all(&bytes).await?;
        bytes.clear();
    }
}

/// Appends the frame of `message`, unless it is over the limit the receiver enforces: then it
/// is dropped here (Raft sends it again, or a snapshot), rather than breaking the connection.
pub fn encode_message(message: &Message, out: &mut Vec<u8>) {
    let length = message.encoded_len();
    if length == 0 || length > MESSAGE_BYTES_MAX {
        log::warn!(
            "dropping a {length}-byte Raft message to voter {}",
            message.to
        );
        return;
    }
    out.extend_from_slice(&(length as u32).to_le_bytes());
    message.encode(out).expect("a Vec grows");
}

/// Accepts inbound connections until the task is dropped; each is served by its own task,
/// owned here, so dropping this task closes every inbound connection too.
pub async fn serve(listener: TcpListener, config: Rc<Config>, deliver: Deliver) {
    let mut connections: HashMap<u64, Task<()>> = HashMap::new();
    let finished: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
    let mut next_connection = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                log::warn!("controller accept failed: {error}");
                glommio::timer::sleep(RECONNECT_BACKOFF_MIN).await;
                continue;
            }
        };
        for id in finished.borrow_mut().drain(..) {
            connections.remove(&id);
        }
        if connections.len() >= INBOUND_CONNECTIONS_MAX {
            drop(stream);
            continue;
        }
        next_connection += 1;
        let id = next_connection;
        let (config, deliver, finished) = (config.clone(), deliver.clone(), finished.clone());
        let task = glommio::spawn_local(async move {
            if let Err(error) = serve_connection(stream, &config, &deliver).await {
                log::debug!("closing a controller connection: {error}");
            }
            finished.borrow_mut().push(id);
        });
        connections.insert(id, task);
    }
}

fn refused(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}

async fn serve_connection(
    mut stream: TcpStream,
    config: &Config,
    deliver: &Deliver,
) -> io::Result<()> {
    let read_handshake = read_handshake(&mut stream, config);
    let timed_out = async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "no handshake"))
    };
    let sender = futures_lite::future::or(read_handshake, timed_out).await?;
    loop {
        let mut length = [0u8; 4];
        match stream.read_exact(&mut length).await {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let length = u32::from_le_bytes(length) as usize;
        if length == 0 || length > MESSAGE_BYTES_MAX {
            return Err(refused("frame length out of bounds"));
        }
        let payload = read_payload(&mut stream, length).await?;
        let message =
            Message::decode(payload.as_slice()).map_err(|_| refused("undecodable message"))?;
        if message.from != sender || message.to != config.node_id {
            return Err(refused(
                "message not from the handshake's sender or not to this node",
            ));
        }
        if !deliver(message) {
            return Ok(());
        }
    }
}

/// Reads `length` bytes, growing the buffer as they arrive: a peer that announces a large frame
/// and sends nothing holds no memory.
async fn read_payload(stream: &mut TcpStream, length: usize) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    while payload.len() < length {
        let chunk = READ_CHUNK_BYTES.min(length - payload.len());
        let start = payload.len();
        payload.resize(start + chunk, 0);
        stream.read_exact(&mut payload[start..]).await?;
    }
    Ok(payload)
}

/// Reads and checks the handshake; returns the sender's node id.
async fn read_handshake(stream: &mut TcpStream, config: &Config) -> io::Result<u64> {
    let mut fixed = [0u8; 15];
    stream.read_exact(&mut fixed).await?;
    if fixed[0..4] != MAGIC {
        return Err(refused("bad magic"));
    }
    if u16::from_le_bytes([fixed[4], fixed[5]]) != PROTOCOL_VERSION {
        return Err(refused("unsupported protocol version"));
    }
    let sender = u64::from_le_bytes(fixed[6..14].try_into().expect("8 bytes"));
    let mut cluster_id = vec![0u8; fixed[14] as usize];
    stream.read_exact(&mut cluster_id).await?;
    if cluster_id != config.cluster_id.as_bytes() {
        return Err(refused("another cluster"));
    }
    if sender == config.node_id || !config.voters.iter().any(|voter| voter.id == sender) {
        return Err(refused("sender is not a peer voter"));
    }
    Ok(sender)
}
