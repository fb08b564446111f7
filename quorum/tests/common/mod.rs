//! Test support: quorum nodes on their own glommio executor threads, driven from the test
//! thread over std channels; a recording state machine; temp dirs; free loopback ports.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorum::{
    Config, LeaderState, LogPosition, PeerStatus, ProposeError, Quorum, StateMachine, Voter,
};

/// How long any single wait of a test may take before the test fails.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// A directory under the system temp dir, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "sluice-quorum-test-{}-{name}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Loopback addresses with ports the kernel just handed out (then released for the nodes).
pub fn free_addresses(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap())
        .collect()
}

/// What the recording state machine has seen, readable from the test thread.
#[derive(Default, Debug, Clone)]
pub struct Recorded {
    /// Entries applied in this process life, in order.
    pub applied: Vec<(u64, Vec<u8>)>,
    /// Indexes of the snapshots restored (at start or from the leader).
    pub restored: Vec<u64>,
    pub digest: Digest,
}

/// The state: how many entries were applied, a hash chain over their bytes, and the last index.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub count: u64,
    pub hash: u64,
    pub last_index: u64,
}

impl Digest {
    fn apply(&mut self, index: u64, data: &[u8]) {
        assert!(
            index > self.last_index,
            "applied {index} after {}",
            self.last_index
        );
        let mut hash = self.hash ^ 0xcbf2_9ce4_8422_2325;
        for byte in index.to_le_bytes().iter().chain(data) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.hash = hash;
        self.count += 1;
        self.last_index = index;
    }
}

pub struct RecordingMachine {
    pub recorded: Arc<Mutex<Recorded>>,
    /// Refuses every snapshot, as a program that cannot read another version's would.
    pub refuse_restore: bool,
}

impl StateMachine for RecordingMachine {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) {
        let mut recorded = self.recorded.lock().unwrap();
        recorded.digest.apply(index, data);
        recorded.applied.push((index, data.to_vec()));
    }

    fn snapshot(&self) -> Vec<u8> {
        let digest = self.recorded.lock().unwrap().digest;
        [digest.count, digest.hash, digest.last_index]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        if self.refuse_restore {
            return Err(format!("{} bytes refused", data.len()));
        }
        assert_eq!(data.len(), 24, "snapshot bytes");
        let field = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        let mut recorded = self.recorded.lock().unwrap();
        recorded.digest = Digest {
            count: field(0),
            hash: field(8),
            last_index: field(16),
        };
        recorded.restored.push(field(16));
        Ok(())
    }
}

enum Command {
    Propose(Vec<u8>, mpsc::Sender<Result<u64, ProposeError>>),
    Status(mpsc::Sender<Status>),
    Shutdown(mpsc::Sender<()>),
    Kill,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub leader: LeaderState,
    pub is_leader: bool,
    pub applied_index: u64,
    pub position: LogPosition,
    pub peers: Vec<PeerStatus>,
}

/// One node on its own executor thread.
pub struct Node {
    pub id: u64,
    pub config: Config,
    pub recorded: Arc<Mutex<Recorded>>,
    /// Every (term, leader) this node observed, in order.
    pub leaders: Arc<Mutex<Vec<LeaderState>>>,
    commands: mpsc::Sender<Command>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// A configuration for node `id` of `addresses` (ids 1..=n), with a test's timings.
pub fn config(id: u64, addresses: &[SocketAddr], base: &Path, tick: Duration) -> Config {
    let voters = addresses
        .iter()
        .enumerate()
        .map(|(at, address)| Voter {
            id: at as u64 + 1,
            address: *address,
        })
        .collect();
    let mut config =
        Config::new(id, voters, base.join(format!("node-{id}")), "test-cluster").unwrap();
    config.tick = tick;
    config
}

impl Node {
    /// Starts a node; `Err` carries `Quorum::start`'s error.
    pub fn start(config: Config) -> Result<Node, String> {
        Node::start_with(config, false)
    }

    /// Starts a node whose state machine refuses every snapshot (`refuse_restore`).
    pub fn start_refusing_restore(config: Config) -> Result<Node, String> {
        Node::start_with(config, true)
    }

    fn start_with(config: Config, refuse_restore: bool) -> Result<Node, String> {
        let _ = env_logger::builder()
            .is_test(true)
            .format_timestamp_millis()
            .try_init();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let leaders = Arc::new(Mutex::new(Vec::new()));
        let (commands, command_receiver) = mpsc::channel();
        let (started, start_result) = mpsc::channel();
        let machine = RecordingMachine {
            recorded: recorded.clone(),
            refuse_restore,
        };
        let (thread_config, thread_leaders) = (config.clone(), leaders.clone());
        let thread = glommio::LocalExecutorBuilder::default()
            .name(&format!("quorum-{}", config.node_id))
            .spawn(move || async move {
                match Quorum::start(thread_config, machine).await {
                    Ok(quorum) => {
                        started.send(Ok(())).unwrap();
                        serve(Rc::new(quorum), command_receiver, thread_leaders).await;
                    }
                    Err(error) => started.send(Err(error.to_string())).unwrap(),
                }
            })
            .unwrap();
        let result = start_result
            .recv_timeout(WAIT_MAX)
            .expect("the node thread reports its start");
        let thread = Some(thread);
        let node = Node {
            id: config.node_id,
            config,
            recorded,
            leaders,
            commands,
            thread,
        };
        result.map(|()| node)
    }

    pub fn propose(&self, data: &[u8]) -> Result<u64, ProposeError> {
        self.propose_async(data)
            .recv_timeout(WAIT_MAX)
            .expect("a proposal completes or times out")
    }

    /// Sends a proposal and returns where its result will arrive.
    pub fn propose_async(&self, data: &[u8]) -> mpsc::Receiver<Result<u64, ProposeError>> {
        let (reply, result) = mpsc::channel();
        self.commands
            .send(Command::Propose(data.to_vec(), reply))
            .unwrap();
        result
    }

    pub fn status(&self) -> Status {
        let (reply, status) = mpsc::channel();
        self.commands.send(Command::Status(reply)).unwrap();
        status.recv_timeout(WAIT_MAX).unwrap()
    }

    pub fn digest(&self) -> Digest {
        self.recorded.lock().unwrap().digest
    }

    /// A clean stop: the node finishes its current work and closes its files.
    pub fn shutdown(mut self) -> Config {
        let (reply, done) = mpsc::channel();
        self.commands.send(Command::Shutdown(reply)).unwrap();
        done.recv_timeout(WAIT_MAX).unwrap();
        self.thread.take().unwrap().join().unwrap();
        self.config.clone()
    }

    /// Stops the executor where it is: every task is dropped, sockets close, no goodbye.
    pub fn kill(mut self) -> Config {
        self.commands.send(Command::Kill).unwrap();
        self.thread.take().unwrap().join().unwrap();
        self.config.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(Command::Kill);
            let _ = thread.join();
        }
    }
}

use std::rc::Rc;

/// How often the node thread looks for commands from the test thread.
const COMMAND_POLL_INTERVAL: Duration = Duration::from_millis(2);

async fn serve(
    quorum: Rc<Quorum>,
    commands: mpsc::Receiver<Command>,
    leaders: Arc<Mutex<Vec<LeaderState>>>,
) {
    let watcher = quorum.clone();
    let _watch = glommio::spawn_local(async move {
        let mut seen = LeaderState {
            leader_id: None,
            term: 0,
        };
        loop {
            seen = watcher.leader_changed(seen).await;
            leaders.lock().unwrap().push(seen);
        }
    });
    loop {
        match commands.try_recv() {
            Ok(Command::Propose(data, reply)) => {
                let quorum = quorum.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(quorum.propose(data).await);
                })
                .detach();
            }
            Ok(Command::Status(reply)) => {
                let _ = reply.send(Status {
                    leader: quorum.leader_state(),
                    is_leader: quorum.is_leader(),
                    applied_index: quorum.applied_index(),
                    position: quorum.log_position(),
                    peers: quorum.peers(),
                });
            }
            Ok(Command::Shutdown(reply)) => {
                quorum.shutdown().await.unwrap();
                let _ = reply.send(());
                return;
            }
            Ok(Command::Kill) | Err(mpsc::TryRecvError::Disconnected) => {
                // Cancelled tasks are dropped (and their sockets closed) when the executor next
                // runs them; a dropped executor would leave them, and their sockets, behind.
                quorum.abort();
                glommio::timer::sleep(Duration::from_millis(20)).await;
                return;
            }
            Err(mpsc::TryRecvError::Empty) => glommio::timer::sleep(COMMAND_POLL_INTERVAL).await,
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds; panics with `what` after
/// `WAIT_MAX`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The node that all running `nodes` agree leads, once they do.
pub fn wait_for_leader(nodes: &[&Node]) -> u64 {
    let mut leader = 0;
    wait_until("one leader all nodes agree on", || {
        let statuses: Vec<Status> = nodes.iter().map(|node| node.status()).collect();
        let Some(id) = statuses[0].leader.leader_id else {
            return false;
        };
        let agreed = statuses.iter().all(|status| {
            status.leader.leader_id == Some(id) && status.leader.term == statuses[0].leader.term
        });
        let leading = nodes
            .iter()
            .zip(&statuses)
            .any(|(node, status)| node.id == id && status.is_leader);
        leader = id;
        agreed && leading
    });
    leader
}

/// Proposes through `node` until it commits, retrying retriable errors; returns the index.
pub fn propose_until_committed(node: &Node, data: &[u8]) -> u64 {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        match node.propose(data) {
            Ok(index) => return index,
            Err(error) if error.is_retriable() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("proposal failed: {error}"),
        }
    }
}

/// Proposes `count` entries through `node`, up to `window` at a time; returns the last index.
pub fn propose_many(node: &Node, prefix: &str, count: usize, window: usize) -> u64 {
    let mut last = 0;
    let mut sent = 0;
    while sent < count {
        let batch: Vec<_> = (sent..count.min(sent + window))
            .map(|at| (at, node.propose_async(format!("{prefix}-{at}").as_bytes())))
            .collect();
        for (at, result) in batch {
            let index = match result.recv_timeout(WAIT_MAX).unwrap() {
                Ok(index) => index,
                Err(error) if error.is_retriable() => {
                    propose_until_committed(node, format!("{prefix}-{at}").as_bytes())
                }
                Err(error) => panic!("proposal failed: {error}"),
            };
            last = last.max(index);
        }
        sent = count.min(sent + window);
    }
    last
}

/// The entries with data a node applied, in order (for comparing nodes that never restarted).
pub fn applied_data(node: &Node) -> Vec<(u64, Vec<u8>)> {
    node.recorded.lock().unwrap().applied.clone()
}

/// Checks that no term had two leaders, over every node's observations.
pub fn assert_one_leader_per_term(nodes: &[&Node]) {
    let mut by_term = std::collections::HashMap::new();
    for node in nodes {
        for state in node.leaders.lock().unwrap().iter() {
            if let Some(leader) = state.leader_id {
                let known = by_term.entry(state.term).or_insert(leader);
                assert_eq!(
                    *known, leader,
                    "term {} had leaders {known} and {leader}",
                    state.term
                );
            }
        }
    }
}

/// Name and size of every `log-*` file in a node's directory (not the temporary ones).
pub fn log_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|item| item.unwrap())
        .filter(|item| {
            let name = item.file_name().to_string_lossy().into_owned();
            name.starts_with("log-") && !name.ends_with(".tmp")
        })
        .map(|item| {
            (
                item.file_name().to_string_lossy().into_owned(),
                item.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}
