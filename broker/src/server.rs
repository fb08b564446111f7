//! Starting the broker: one pinned executor per shard, each accepting on the shared port.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Barrier};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot};
use crate::cluster::placement;
use crate::config::ServeArgs;
use crate::connection;
use crate::data_dir;
use crate::fd_budget::FdBudget;
use crate::groups::store::{OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS};
use crate::groups::GroupCoordinator;
use crate::shard::mesh::{Envelope, Mesh, INBOX_MESSAGES_MAX};
use crate::shard::Shard;

/// Connections one shard serves at once at most, whatever the descriptor limit allows; a
/// further connection is closed on accept.
pub const SHARD_CONNECTIONS_MAX: usize = 10_000;

pub fn run(mut args: ServeArgs) -> anyhow::Result<()> {
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
    let mut snapshot = MetadataSnapshot::load_or_init(&args.data_dir, args.node_id)?;
    // Until brokers register through the metadata quorum, this broker registers itself here.
    snapshot.register(local_registration(&args));
    ensure_offsets_topic(&args.data_dir, &mut snapshot)?;
    data_dir::remove_deleted_partitions(&args.data_dir, |topic, partition| {
        snapshot.topic_id_of(topic, partition)
    })?;
    data_dir::ensure_reserve(&args.data_dir);
    let shard_count = args.shard_count();
    anyhow::ensure!(shard_count > 0, "--shards must be at least 1");
    let fd_budget = stored_partitions_fit(nofile, shard_count, &snapshot, args.node_id)?;
    crate::listen_port::wait_until_free(args.listen)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mesh = glommio::channels::channel_mesh::MeshBuilder::<Envelope, _>::full(
        shard_count,
        INBOX_MESSAGES_MAX,
    );
    // Mesh peer indexes follow the order in which shards join; each shard records its own here.
    let peer_index = Arc::new(std::sync::Mutex::new(vec![usize::MAX; shard_count]));
    let config = Arc::new(args);
    let snapshot = Arc::new(snapshot);
    let ready = Arc::new(Barrier::new(shard_count));
    let mut handles = Vec::with_capacity(shard_count);
    for id in 0..shard_count {
        let (config, snapshot, mesh, peer_index, ready, fd_budget) = (
            config.clone(),
            snapshot.clone(),
            mesh.clone(),
            peer_index.clone(),
            ready.clone(),
            fd_budget,
        );
        let handle = LocalExecutorBuilder::new(Placement::Fixed(id % cpus))
            .name(&format!("shard-{id}"))
            .spawn(move || async move {
                let shared = Shared {
                    config,
                    fd_budget,
                    peer_index,
                    ready,
                };
                shard_main(id, shared, snapshot, mesh).await
            })
            .map_err(|e| anyhow::anyhow!("starting shard {id}: {e}"))?;
        handles.push(handle);
    }
    for handle in handles {
        handle
            .join()
            .map_err(|e| anyhow::anyhow!("shard failed: {e}"))??;
    }
    Ok(())
}

/// The divided descriptor limit, if every stored partition fits in it; otherwise an error that
/// says so, because opening them would exhaust the descriptors and fail every start the same way.
fn stored_partitions_fit(
    nofile: u64,
    shard_count: usize,
    snapshot: &MetadataSnapshot,
    node: i32,
) -> anyhow::Result<FdBudget> {
    let budget = FdBudget::new(nofile, shard_count, SHARD_CONNECTIONS_MAX)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stored = snapshot.partitions_on(node);
    budget.check_partitions(stored).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the stored topics: {e}; raise the limit (ulimit -n, LimitNOFILE) or \
             run with fewer shards"
        )
    })?;
    log::info!(
        "file descriptor limit {nofile}: {stored} of at most {} partitions stored, {} \
         connections and {} sealed-segment files per shard",
        budget.partitions_max,
        budget.connections_per_shard,
        budget.sealed_segment_files_per_shard
    );
    Ok(budget)
}

/// What every shard receives from start-up besides the metadata and the mesh.
struct Shared {
    config: Arc<ServeArgs>,
    fd_budget: FdBudget,
    peer_index: Arc<std::sync::Mutex<Vec<usize>>>,
    ready: Arc<Barrier>,
}

async fn shard_main(
    id: usize,
    shared: Shared,
    snapshot: Arc<MetadataSnapshot>,
    mesh: glommio::channels::channel_mesh::MeshBuilder<
        Envelope,
        glommio::channels::channel_mesh::Full,
    >,
) -> anyhow::Result<()> {
    let Shared {
        config,
        fd_budget,
        peer_index,
        ready,
    } = shared;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("shard {id} cannot join the mesh"))?;
    peer_index
        .lock()
        .expect("no shard panics holding the peer table")[id] = senders.peer_id();
    // Every shard has joined (join returns only then) and recorded its index before passing.
    ready.wait();
    let peer_index = peer_index
        .lock()
        .expect("no shard panics holding the peer table")
        .clone();
    assert!(peer_index.iter().all(|&i| i < peer_index.len()));
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        snapshot.clone(),
        Mesh::new(senders, peer_index),
        fd_budget,
    )?);
    for (peer, receiver) in receivers.streams() {
        glommio::spawn_local(shard.clone().serve_peer(peer, receiver)).detach();
    }
    // A stored partition that fails to open is logged and left closed; requests for it get
    // UNKNOWN_TOPIC_OR_PARTITION (see start-up and recovery in ARCHITECTURE.md).
    let _failures = shard.apply_metadata(snapshot).await;
    if let Err(e) = GroupCoordinator::load(&*shard).await {
        // The other shards wait for this one at the start-up barrier: stop the whole process.
        log::error!("shard {id}: loading consumer groups failed: {e}");
        std::process::exit(1);
    }
    crate::tasks::spawn_all(&shard);
    if let Some(io) = shard.power_loss_io.clone() {
        let watched = crate::power_loss::WatchedShard {
            id: shard.id,
            count: shard.count,
        };
        crate::power_loss::spawn_watcher(&shard.config.data_dir, watched, io);
    }
    let listener = TcpListener::bind(config.listen).unwrap_or_else(|e| {
        // As above: a shard that cannot start must not leave the others waiting.
        log::error!("shard {id} cannot listen on {}: {e}", config.listen);
        std::process::exit(1)
    });
    // Every shard has opened its partitions before any accepts a connection, so a request that
    // is forwarded to another shard never finds its partitions still closed.
    ready.wait();
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

/// This broker's registration: its node id, advertised listener and rack, a fresh incarnation.
pub(crate) fn local_registration(args: &ServeArgs) -> BrokerRegistration {
    BrokerRegistration {
        id: args.node_id,
        incarnation: crate::cluster::metadata::random_u64(),
        host: args.advertised_host(),
        port: args.listen.port(),
        rack: None,
        fenced: false,
    }
}

/// Creates the internal `__consumer_offsets` topic on first start, with min(3, live brokers)
/// replicas per partition.
pub(crate) fn ensure_offsets_topic(
    data_dir: &Path,
    snapshot: &mut MetadataSnapshot,
) -> anyhow::Result<()> {
    if snapshot.topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let configs = [("cleanup.policy".to_string(), "compact".to_string())]
        .into_iter()
        .collect();
    let id = crate::cluster::metadata::random_uuid();
    let live = placement::live_candidates(snapshot);
    let replication_factor = placement::offsets_replication_factor(live.len());
    let assignments = placement::new_topic(&live, OFFSETS_TOPIC_PARTITIONS, replication_factor, id)
        .map_err(|(_, message)| anyhow::anyhow!("placing {OFFSETS_TOPIC}: {message}"))?;
    let meta = crate::cluster::metadata::TopicMeta::new(
        OFFSETS_TOPIC.to_string(),
        id,
        assignments,
        configs,
    );
    snapshot.topics.insert(OFFSETS_TOPIC.to_string(), meta);
    snapshot.version += 1;
    snapshot.persist(data_dir)?;
    Ok(())
}
