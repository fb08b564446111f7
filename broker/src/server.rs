//! Starting the broker: one pinned executor per shard, each accepting on the shared port.

use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::cluster::controller::replicated::MetadataState;
use crate::cluster::controller::{start, Controller, ControllerConfig};
use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot};
use crate::config::ServeArgs;
use crate::connection;
use crate::data_dir;
use crate::fd_budget::FdBudget;
use crate::groups::store::{OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS};
use crate::quorum_contact::QuorumContact;
use crate::shard::mesh::{Envelope, Mesh, INBOX_MESSAGES_MAX};
use crate::shard::{Shard, ShardCluster};

/// Connections one shard serves at once at most, whatever the descriptor limit allows; a
/// further connection is closed on accept.
pub const SHARD_CONNECTIONS_MAX: usize = 10_000;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (args, nofile) = prepare(args)?;
    let shard_count = args.shard_count();
    anyhow::ensure!(shard_count > 0, "--shards must be at least 1");
    let fd_budget = FdBudget::new(nofile, shard_count, SHARD_CONNECTIONS_MAX)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::listen_port::wait_until_free(args.listen)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mesh = glommio::channels::channel_mesh::MeshBuilder::<Envelope, _>::full(
        shard_count,
        INBOX_MESSAGES_MAX,
    );
    // Mesh peer indexes follow the order in which shards join; each shard records its own here.
    let peer_index = Arc::new(std::sync::Mutex::new(vec![usize::MAX; shard_count]));
    let config = Arc::new(args);
    let ready = Arc::new(StartGate::new(shard_count));
    let controller_id = Arc::new(AtomicI32::new(-1));
    let stop_gate = Arc::new(crate::shutdown::StopGate::new(shard_count));
    crate::shutdown::watch_signals();
    let quorum_contact = Arc::new(QuorumContact::new(
        config.controller_voter_addresses().len() <= 1,
    ));
    let shared = |id: usize| Shared {
        config: config.clone(),
        fd_budget,
        peer_index: peer_index.clone(),
        ready: ready.clone(),
        controller_id: controller_id.clone(),
        stop_gate: stop_gate.clone(),
        quorum_contact: quorum_contact.clone(),
        cpu: id % cpus,
    };
    // Shard 0 runs the metadata quorum: it starts first, and the others start with the
    // metadata it has replayed.
    let (started, metadata) = std::sync::mpsc::sync_channel(1);
    let go_ahead = Arc::new(GoAhead::default());
    let start = Start::Controller(started, go_ahead.clone());
    let controller_shard = spawn_shard(0, shared(0), mesh.clone(), start)?;
    let Ok(snapshot) = metadata.recv() else {
        // Shard 0 failed to start the quorum: its error says why.
        controller_shard
            .join()
            .map_err(|e| anyhow::anyhow!("shard 0 failed: {e}"))??;
        anyhow::bail!("shard 0 stopped before the metadata was ready");
    };
    // Blocking std::fs work, so here rather than on shard 0, whose quorum keeps ticking and
    // answering its peers meanwhile; shard 0 opens no partition before the go-ahead.
    let prepared = prepare_data_dir(&config, &fd_budget, &snapshot);
    go_ahead.set(prepared.is_ok());
    if let Err(e) = prepared {
        let _ = controller_shard.join();
        return Err(e);
    }
    let mut handles = vec![controller_shard];
    for id in 1..shard_count {
        let start = Start::Follower(snapshot.clone());
        handles.push(spawn_shard(id, shared(id), mesh.clone(), start)?);
    }
    for handle in handles {
        handle
            .join()
            .map_err(|e| anyhow::anyhow!("shard failed: {e}"))??;
    }
    Ok(())
}

/// Checks the command line and the data directory; returns the arguments with an absolute
/// data directory, and the descriptor limit.
fn prepare(mut args: ServeArgs) -> anyhow::Result<(ServeArgs, u64)> {
    args.check().map_err(|e| anyhow::anyhow!(e))?;
    let nofile = crate::fd_budget::raise_nofile_limit()
        .map_err(|e| anyhow::anyhow!("cannot read or raise the file descriptor limit: {e}"))?;
    std::fs::create_dir_all(&args.data_dir)?;
    // Absolute from here on: glommio opens directories for their fsync through io_uring with
    // AT_FDCWD semantics that do not hold for relative paths, so a relative data directory
    // (the README's `./data`) made every directory sync fail.
    args.data_dir = std::fs::canonicalize(&args.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot resolve --data-dir {}: {e}", args.data_dir.display())
    })?;
    data_dir::ensure_writable(&args.data_dir)?;
    if args.simulate_power_loss {
        log::warn!("test mode: simulating power loss; segment fdatasyncs are only simulated");
        crate::power_loss::enable();
    }
    Ok((args, nofile))
}

/// How a shard starts: shard 0 opens the metadata quorum and sends the replayed snapshot back
/// to start-up; the others receive it.
enum Start {
    Controller(
        std::sync::mpsc::SyncSender<Arc<MetadataSnapshot>>,
        Arc<GoAhead>,
    ),
    Follower(Arc<MetadataSnapshot>),
}

/// Start-up's answer to shard 0 once it has prepared the data directory with shard 0's
/// snapshot: go on (open partitions) or stop. Polled, like `StartGate`, so no waker crosses a
/// thread and shard 0's quorum keeps running while it waits.
#[derive(Default)]
struct GoAhead {
    /// 0 while start-up prepares, 1 to go on, 2 to stop.
    state: std::sync::atomic::AtomicU8,
}

impl GoAhead {
    fn set(&self, go: bool) {
        self.state.store(if go { 1 } else { 2 }, Ordering::Release);
    }

    /// Whether start-up said to go on.
    async fn wait(&self) -> bool {
        loop {
            match self.state.load(Ordering::Acquire) {
                0 => glommio::timer::sleep(START_GATE_POLL).await,
                state => return state == 1,
            }
        }
    }
}

type MeshBuilder =
    glommio::channels::channel_mesh::MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>;

fn spawn_shard(
    id: usize,
    shared: Shared,
    mesh: MeshBuilder,
    start: Start,
) -> anyhow::Result<glommio::ExecutorJoinHandle<anyhow::Result<()>>> {
    LocalExecutorBuilder::new(Placement::Fixed(shared.cpu))
        .name(&format!("shard-{id}"))
        .spawn(move || async move {
            let (snapshot, quorum) = match start {
                Start::Follower(snapshot) => (snapshot, None),
                Start::Controller(metadata, go_ahead) => {
                    let settings = quorum_settings(&shared.config, shared.fd_budget);
                    // The stop task runs only once the shards are up: until then a signal
                    // ends start-up here, however long the quorum takes.
                    let starting = async { Some(start::start(&settings).await) };
                    let signalled = async {
                        crate::shutdown::signal_arrived().await;
                        None
                    };
                    let Some(started) = futures_lite::future::or(starting, signalled).await else {
                        crate::shutdown::exit_during_start_up()
                    };
                    let started = started?;
                    let snapshot = started.snapshot();
                    // Start-up is waiting for it; if it is gone, so is the process.
                    let _ = metadata.send(snapshot.clone());
                    anyhow::ensure!(
                        go_ahead.wait().await,
                        "start-up could not prepare the data directory"
                    );
                    (snapshot, Some(started))
                }
            };
            shard_main(id, shared, snapshot, mesh, quorum).await
        })
        .map_err(|e| anyhow::anyhow!("starting shard {id}: {e}"))
}

/// Checks the stored partitions fit the descriptor budget and removes the directories of
/// deleted topics and of partitions moved off this broker, with the snapshot of a quorum that has caught up (`start::start` returns
/// only then). Runs in `run` before any shard opens or removes a partition (`apply_metadata`):
/// the other shards are not started yet, and shard 0 waits for its `GoAhead`.
fn prepare_data_dir(
    config: &ServeArgs,
    fd_budget: &FdBudget,
    snapshot: &MetadataSnapshot,
) -> anyhow::Result<()> {
    stored_partitions_fit(fd_budget, snapshot, config.node_id)?;
    data_dir::remove_unlisted_partitions(&config.data_dir, |topic, partition| {
        snapshot.topic_id_on(topic, partition, config.node_id)
    })?;
    data_dir::ensure_reserve(&config.data_dir);
    Ok(())
}

/// A start-up barrier that shards pass asynchronously: a waiting shard keeps running its tasks
/// (on shard 0 the metadata quorum's driver and transport, so this voter keeps ticking and
/// answering its peers while the other shards recover their partitions).
struct StartGate {
    shards: usize,
    arrived: AtomicUsize,
}

/// How often a shard waiting at the start gate looks again.
const START_GATE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

impl StartGate {
    fn new(shards: usize) -> Self {
        StartGate {
            shards,
            arrived: AtomicUsize::new(0),
        }
    }

    /// Waits until every shard has reached the gate for the `phase`th time (from 1).
    async fn pass(&self, phase: usize) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < phase * self.shards {
            glommio::timer::sleep(START_GATE_POLL).await;
        }
    }
}

/// The quorum's settings from the command line.
fn quorum_settings(config: &ServeArgs, fd_budget: FdBudget) -> start::QuorumSettings {
    let voters = config.controller_voter_addresses();
    start::QuorumSettings {
        node_id: config.node_id,
        voters,
        listen: config.controller_listen(),
        data_dir: config.data_dir.clone(),
        registration: local_registration(config),
        offsets_topic: (OFFSETS_TOPIC.to_string(), OFFSETS_TOPIC_PARTITIONS),
        fd_budget,
        snapshot_every: start::SNAPSHOT_EVERY,
    }
}

/// An error that says so if the stored partitions do not fit the divided descriptor limit,
/// because opening them would exhaust the descriptors and fail every start the same way.
fn stored_partitions_fit(
    budget: &FdBudget,
    snapshot: &MetadataSnapshot,
    node: i32,
) -> anyhow::Result<()> {
    let stored = snapshot.partitions_on(node);
    budget.check_partitions(stored).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the stored topics: {e}; raise the limit (ulimit -n, LimitNOFILE) or \
             run with fewer shards"
        )
    })?;
    log::info!(
        "file descriptor limit {}: {stored} of at most {} partitions stored, {} \
         connections and {} sealed-segment files per shard",
        budget.limit,
        budget.partitions_max,
        budget.connections_per_shard,
        budget.sealed_segment_files_per_shard
    );
    Ok(())
}

/// What every shard receives from start-up besides the metadata and the mesh.
struct Shared {
    config: Arc<ServeArgs>,
    fd_budget: FdBudget,
    peer_index: Arc<std::sync::Mutex<Vec<usize>>>,
    ready: Arc<StartGate>,
    /// The quorum leader's node id, written by shard 0 (see `start::watch_leader`).
    controller_id: Arc<AtomicI32>,
    /// The progress of a stop (SIGTERM, SIGINT), shared by the shards.
    stop_gate: Arc<crate::shutdown::StopGate>,
    /// When the broker was last in contact with its quorum, written by shard 0.
    quorum_contact: Arc<QuorumContact>,
    /// The core the shard's executor is pinned to.
    cpu: usize,
}

async fn shard_main(
    id: usize,
    shared: Shared,
    snapshot: Arc<MetadataSnapshot>,
    mesh: MeshBuilder,
    quorum: Option<start::StartedQuorum>,
) -> anyhow::Result<()> {
    let Shared {
        config,
        fd_budget,
        peer_index,
        ready,
        controller_id,
        stop_gate,
        quorum_contact,
        cpu: _,
    } = shared;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("shard {id} cannot join the mesh"))?;
    peer_index
        .lock()
        .expect("no shard panics holding the peer table")[id] = senders.peer_id();
    // Every shard has joined (join returns only then) and recorded its index before passing.
    ready.pass(1).await;
    let peer_index = peer_index
        .lock()
        .expect("no shard panics holding the peer table")
        .clone();
    assert!(peer_index.iter().all(|&i| i < peer_index.len()));
    let watched = (&controller_id, &quorum_contact);
    let controller = (quorum.as_ref()).map(|q| start_controller(&config, fd_budget, q, watched));
    let cluster = ShardCluster {
        controller,
        controller_id,
        quorum_contact,
    };
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        snapshot.clone(),
        Mesh::new(senders, peer_index),
        fd_budget,
        cluster,
    ));
    for (peer, receiver) in receivers.streams() {
        glommio::spawn_local(shard.clone().serve_peer(peer, receiver)).detach();
    }
    // A stored partition that fails to open is logged and left closed; requests for it get
    // UNKNOWN_TOPIC_OR_PARTITION (see start-up and recovery in ARCHITECTURE.md).
    let start_version = snapshot.version;
    // This also replays the `__consumer_offsets` partitions this broker leads.
    let _failures = shard.apply_metadata(snapshot).await;
    spawn_shard_tasks(&shard);
    crate::shutdown::spawn(shard.clone(), stop_gate);
    let listener = TcpListener::bind(config.listen).unwrap_or_else(|e| {
        // As above: a shard that cannot start must not leave the others waiting.
        log::error!("shard {id} cannot listen on {}: {e}", config.listen);
        std::process::exit(1)
    });
    // Every shard has opened its partitions before any accepts a connection, so a request that
    // is forwarded to another shard never finds its partitions still closed.
    ready.pass(2).await;
    if let Some(started) = quorum {
        spawn_publisher(started.state, start_version, shard.clone());
    }
    log::info!("shard {id} listening on {}", config.listen);
    accept_loop(shard, listener).await
}

/// First pause after a failed accept; it doubles with each failure in a row.
const ACCEPT_BACKOFF_MS_MIN: u64 = 10;

/// Longest pause after failed accepts: at the descriptor limit every accept fails until a
/// connection closes, and retrying faster only burns the core the shard's requests need.
const ACCEPT_BACKOFF_MS_MAX: u64 = 1_000;

/// Accepts connections forever. Accept errors (EMFILE at the descriptor limit) back off and are
/// logged once per interval with their count, as are refused connections.
async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) -> anyhow::Result<()> {
    let id = shard.id;
    let connections_max = shard.fd_budget.connections_per_shard;
    let interval = crate::log_limit::REPEATED_ERROR_LOG_INTERVAL;
    let mut accept_errors = crate::log_limit::RateLimitedLog::new(interval);
    let mut refusals = crate::log_limit::RateLimitedLog::new(interval);
    let mut backoff_ms = ACCEPT_BACKOFF_MS_MIN;
    let connections = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                if let Some(count) = accept_errors.observe(std::time::Instant::now()) {
                    log::warn!("shard {id}: {count} accepts failed; the last with: {e}");
                }
                glommio::timer::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff_ms = ACCEPT_BACKOFF_MS_MIN;
        if connections.get() >= connections_max {
            if let Some(count) = refusals.observe(std::time::Instant::now()) {
                log::warn!("shard {id}: {connections_max} connections open; refused {count} more");
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.set(connections.get() + 1);
        let (shard, connections) = (shard.clone(), connections.clone());
        glommio::spawn_local(async move {
            connection::serve(shard, stream).await;
            connections.set(connections.get() - 1);
        })
        .detach();
    }
}

/// The shard's periodic tasks, and the power-loss watcher in that test mode.
fn spawn_shard_tasks(shard: &Rc<Shard>) {
    crate::tasks::spawn_all(shard);
    if let Some(io) = shard.power_loss_io.clone() {
        let watched = crate::power_loss::WatchedShard {
            id: shard.id,
            count: shard.count,
        };
        crate::power_loss::spawn_watcher(&shard.config.data_dir, watched, io);
    }
}

/// The controller of the controller shard, and its tasks that keep `controller_id` and the
/// quorum contact current.
fn start_controller(
    config: &ServeArgs,
    fd_budget: FdBudget,
    started: &start::StartedQuorum,
    (controller_id, quorum_contact): (&Arc<AtomicI32>, &Arc<QuorumContact>),
) -> Controller {
    let controller_config = ControllerConfig {
        data_dir: config.data_dir.clone(),
        default_partitions: config.default_partitions,
        default_replication_factor: config.default_replication_factor,
        fd_budget,
    };
    let watcher = start::watch_leader(started.quorum.clone(), controller_id.clone());
    glommio::spawn_local(watcher).detach();
    let contact = start::watch_contact(
        started.quorum.clone(),
        started.state.clone(),
        quorum_contact.clone(),
    );
    glommio::spawn_local(contact).detach();
    Controller::new(
        controller_config,
        started.quorum.clone(),
        started.state.clone(),
    )
}

/// Starts the publisher task of the controller shard: from here on every new snapshot the
/// quorum applies reaches every shard (the shards serve `version` already).
fn spawn_publisher(state: Rc<MetadataState>, version: u64, shard: Rc<Shard>) {
    state.publication.started_with(version);
    let data_dir = shard.config.data_dir.clone();
    let publisher = crate::cluster::controller::replicated::publish_forever(state, shard, data_dir);
    glommio::spawn_local(publisher).detach();
}

/// This broker's registration: its node id, advertised listener and rack, a fresh incarnation.
pub(crate) fn local_registration(args: &ServeArgs) -> BrokerRegistration {
    BrokerRegistration {
        id: args.node_id,
        incarnation: crate::cluster::metadata::random_u64(),
        host: args.advertised_host(),
        port: args.listen.port(),
        rack: args.rack.clone(),
        fenced: false,
        shutting_down: false,
    }
}

/// A broker of one shard on the current executor, started as `run` starts one (its quorum, its
/// partitions, its groups, its publisher), without a listener: for tests that call handlers.
#[cfg(test)]
pub async fn start_test_shard(config: Arc<ServeArgs>) -> anyhow::Result<Rc<Shard>> {
    std::fs::create_dir_all(&config.data_dir)?;
    let fd_budget = FdBudget::new(65_536, 1, SHARD_CONNECTIONS_MAX).map_err(anyhow::Error::msg)?;
    let started = start::start(&quorum_settings(&config, fd_budget)).await?;
    let snapshot = started.snapshot();
    let mesh = glommio::channels::channel_mesh::MeshBuilder::<Envelope, _>::full(1, 16);
    let (senders, _receivers) = (mesh.join().await).map_err(|_| anyhow::anyhow!("mesh"))?;
    let controller_id = Arc::new(AtomicI32::new(-1));
    let quorum_contact = Arc::new(QuorumContact::new(true));
    let cluster = ShardCluster {
        controller: Some(start_controller(
            &config,
            fd_budget,
            &started,
            (&controller_id, &quorum_contact),
        )),
        controller_id,
        quorum_contact,
    };
    let shard = Rc::new(Shard::new(
        0,
        config,
        snapshot.clone(),
        Mesh::new(senders, vec![0]),
        fd_budget,
        cluster,
    ));
    shard.apply_metadata(snapshot.clone()).await;
    spawn_publisher(started.state, snapshot.version, shard.clone());
    Ok(shard)
}

#[cfg(test)]
mod start_gate_tests {
    use super::*;

    #[test]
    fn a_shard_at_the_start_gate_keeps_running_its_tasks() {
        // Shard 0 waits at the gate while its quorum's tasks must still run: a blocking barrier
        // would never let the task below (the other arrival) run, and this would hang.
        glommio::LocalExecutor::default().run(async {
            let gate = Rc::new(StartGate::new(2));
            let ticks = Rc::new(std::cell::Cell::new(0u32));
            let (other_gate, other_ticks) = (gate.clone(), ticks.clone());
            let other = glommio::spawn_local(async move {
                for _ in 0..3 {
                    glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                    other_ticks.set(other_ticks.get() + 1);
                }
                other_gate.pass(1).await;
            });
            gate.pass(1).await;
            assert_eq!(ticks.get(), 3, "passed before every shard arrived");
            other.await;
            assert_eq!(gate.arrived.load(Ordering::Acquire), 2);
        });
    }
}
