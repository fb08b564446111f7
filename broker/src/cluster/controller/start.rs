//! Start-up of the metadata quorum, on the controller shard: open `<data-dir>/meta/quorum/`,
//! replay it into the state machine, and give a new cluster its first entry.
//!
//! A one-voter quorum (no `--controller-voters`) commits everything it stores as soon as it
//! elects itself, so start-up waits until its snapshot reflects the whole local log, and
//! bootstraps an empty quorum with its first entry before any client is served: the metadata
//! of an old single-node data directory (`meta/topics.json`, `meta/producer_ids`, renamed to
//! `*.migrated` once the entry is committed, so never read again), or a fresh cluster id; then
//! it registers the broker and creates `__consumer_offsets` if it is missing. A node of a
//! larger quorum starts with what it has applied; later entries reach its shards as they are
//! applied; an empty quorum is bootstrapped by whichever node's proposal commits first (apply
//! refuses the others); start-up waits until the quorum has taken the broker's registration
//! (so the node has caught up to it), and fails if the quorum stops first, and `__consumer_offsets` is created by the first broker
//! to register when min(3, voters) brokers are live.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::MetadataCommand;
use super::producer_ids::{legacy_producer_ids_path, load_legacy_producer_ids_end};
use super::quorum_ids::raft_id;
use super::replicated::{MetadataMachine, MetadataState};
use super::topics::NewTopic;
use crate::cluster::metadata::{random_uuid, BrokerRegistration, MetadataSnapshot};
use crate::cluster::placement;
use crate::fd_budget::FdBudget;

/// Applied entries between two snapshots of the metadata: a restart replays at most this many
/// small entries (each applied in place), and a snapshot, which copies the whole metadata, is
/// taken this rarely.
pub const SNAPSHOT_EVERY: u64 = 1024;

/// How long a one-voter start-up keeps proposing while the quorum has no leader (it elects
/// itself at once); in a larger quorum, how often a start-up still waiting says so.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(30);
/// Pause between two proposals of the first entry.
const BOOTSTRAP_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between two proposals of a larger quorum's start-up entries (the registration):
/// the pause doubles from `BOOTSTRAP_RETRY` while the quorum cannot take them (no majority yet),
/// so a broker waiting for its peers does not send a proposal every 100 ms.
const START_RETRY_MAX: Duration = Duration::from_secs(1);

/// What start-up needs to open this node's quorum.
pub struct QuorumSettings {
    pub node_id: i32,
    /// Every voter as (node id, controller address); empty: this node alone.
    pub voters: Vec<(i32, SocketAddr)>,
    /// Where this node's controller listener binds.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// This broker's registration, proposed at every start (the first is what lets a new
    /// cluster place topics on it).
    pub registration: BrokerRegistration,
    /// The internal topic of consumer groups and its partition count: a one-voter cluster
    /// creates it at start when it lacks it.
    pub offsets_topic: (String, i32),
    /// This node's descriptor budget, for the partitions created at start.
    pub fd_budget: FdBudget,
    /// Applied entries between two snapshots of the metadata ([`SNAPSHOT_EVERY`]; tests lower
    /// it to cross a compaction quickly).
    pub snapshot_every: u64,
}

/// A running quorum with its state machine.
pub struct StartedQuorum {
    pub quorum: Rc<quorum::Quorum>,
    pub state: Rc<MetadataState>,
}

/// The quorum's directory.
pub fn quorum_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("quorum")
}

/// Opens and replays this node's quorum (see the module documentation).
pub async fn start(settings: &QuorumSettings) -> anyhow::Result<StartedQuorum> {
    let alone = settings.voters.len() <= 1;
    let data_dir = &settings.data_dir;
    let dir = quorum_dir(data_dir);
    let had_quorum = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
    anyhow::ensure!(
        alone || had_quorum || !MetadataSnapshot::legacy_path(data_dir).exists(),
        "{} holds the metadata of a single-node broker: start it once without \
         --controller-voters to move it into its quorum",
        MetadataSnapshot::legacy_path(data_dir).display()
    );
    if alone && !had_quorum {
        // Refused before the quorum writes anything.
        refuse_data_without_metadata(data_dir)?;
    }
    crate::data_dir::release_reserve_if_full(data_dir);
    std::fs::create_dir_all(&dir)?;
    let state = MetadataState::new();
    let machine = MetadataMachine {
        state: state.clone(),
    };
    let quorum = quorum::Quorum::start(quorum_config(settings)?, machine)
        .await
        .map_err(|e| anyhow::anyhow!("starting the metadata quorum in {}: {e}", dir.display()))?;
    let started = StartedQuorum {
        quorum: Rc::new(quorum),
        state,
    };
    let register = MetadataCommand::RegisterBroker(settings.registration.clone());
    if !alone {
        join_cluster(&started, register).await?;
        let voters = settings.voters.len();
        let snapshot = started.snapshot();
        let needed = voters.min(placement::OFFSETS_TOPIC_REPLICATION_FACTOR_MAX as usize);
        if snapshot.live_brokers().count() >= needed {
            if let Some(create) = offsets_topic_if_missing(settings, &snapshot) {
                // Every broker that registers checks; the first to see enough live brokers
                // creates it, and apply refuses the others' (it exists by then).
                propose_until_taken(&started, &create).await?;
            }
        }
        return Ok(started);
    }
    let stored = started.quorum.opened_last_index();
    anyhow::ensure!(
        started.quorum.wait_applied(stored).await,
        "the metadata quorum stopped while replaying its log"
    );
    if started.state.snapshot().cluster_id.is_empty() {
        let initial = initial_metadata(settings)?;
        propose_at_start(&started, MetadataCommand::Bootstrap(initial)).await?;
    }
    retire_legacy_files(data_dir)?;
    propose_at_start(&started, register).await?;
    if let Some(create) = offsets_topic_if_missing(settings, &started.snapshot()) {
        propose_at_start(&started, create).await?;
    }
    Ok(started)
}

/// The command creating the internal offsets topic, if the snapshot lacks it.
fn offsets_topic_if_missing(
    settings: &QuorumSettings,
    snapshot: &MetadataSnapshot,
) -> Option<MetadataCommand> {
    let (name, partitions) = settings.offsets_topic.clone();
    if snapshot.topics.contains_key(&name) {
        return None;
    }
    let live = placement::live_candidates(snapshot);
    let topic = NewTopic {
        name,
        id: random_uuid(),
        partitions,
        replication_factor: placement::offsets_replication_factor(live.len()),
        configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
        replica_assignments: Vec::new(),
    };
    Some(MetadataCommand::CreateTopics {
        topics: vec![topic],
        fd_budget: settings.fd_budget,
    })
}

impl StartedQuorum {
    /// The snapshot applied so far.
    pub fn snapshot(&self) -> Arc<MetadataSnapshot> {
        self.state.snapshot()
    }
}

fn quorum_config(settings: &QuorumSettings) -> anyhow::Result<quorum::Config> {
    let own = raft_id(settings.node_id);
    let voters: Vec<quorum::Voter> = if settings.voters.is_empty() {
        vec![quorum::Voter {
            id: own,
            address: settings.listen,
        }]
    } else {
        (settings.voters.iter())
            .map(|(node, address)| quorum::Voter {
                id: raft_id(*node),
                address: *address,
            })
            .collect()
    };
    let cluster_id = voters_fingerprint(&voters);
    let mut config = quorum::Config::new(own, voters, quorum_dir(&settings.data_dir), &cluster_id)
        .map_err(|e| anyhow::anyhow!("--controller-voters: {e}"))?;
    config.listen = settings.listen;
    config.snapshot_every = settings.snapshot_every;
    Ok(config)
}

/// What the quorum's handshake carries to refuse nodes of another quorum: a digest of the
/// voter set (the cluster id itself is only known once the first entry is applied).
fn voters_fingerprint(voters: &[quorum::Voter]) -> String {
    let mut sorted: Vec<String> = (voters.iter())
        .map(|voter| format!("{}@{}", voter.id, voter.address))
        .collect();
    sorted.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sorted.join(",").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sluice-voters-{hash:016x}")
}

/// The first entry of a one-voter quorum: the old single-node metadata if the data directory
/// has it, else a fresh cluster (refused next to partition data).
fn initial_metadata(settings: &QuorumSettings) -> anyhow::Result<MetadataSnapshot> {
    let data_dir = &settings.data_dir;
    let producer_ids_end = load_legacy_producer_ids_end(data_dir)?;
    let legacy = MetadataSnapshot::load_legacy(data_dir, settings.node_id, producer_ids_end)?;
    if let Some(legacy) = legacy {
        log::info!(
            "moving the metadata of {} ({} topics) into the metadata quorum",
            MetadataSnapshot::legacy_path(data_dir).display(),
            legacy.topics.len()
        );
        return Ok(legacy);
    }
    refuse_data_without_metadata(data_dir)?;
    Ok(fresh_metadata(producer_ids_end))
}

/// An error if partition directories hold data while neither the quorum nor an old
/// `topics.json` has metadata: empty metadata would hide that data.
fn refuse_data_without_metadata(data_dir: &Path) -> anyhow::Result<()> {
    if MetadataSnapshot::legacy_path(data_dir).exists() {
        return Ok(());
    }
    let holding = crate::data_dir::dirs_with_segments(data_dir)?;
    anyhow::ensure!(
        holding.is_empty(),
        "the metadata quorum {} is empty and {} is missing, but {} partition directories hold \
         data (such as {}); refusing to start with empty metadata. Restore the metadata, or \
         move the partition directories away to start afresh",
        quorum_dir(data_dir).display(),
        MetadataSnapshot::legacy_path(data_dir).display(),
        holding.len(),
        holding[0].display()
    );
    Ok(())
}

fn fresh_metadata(producer_ids_end: i64) -> MetadataSnapshot {
    let mut snapshot = super::command::empty_snapshot();
    snapshot.cluster_id = random_uuid().simple().to_string();
    snapshot.producer_ids_end = producer_ids_end;
    snapshot
}

/// Proposes `command` during start-up until the quorum takes it (a one-voter quorum elects
/// itself at once; the retries cover the moment before) and checks that it was applied.
async fn propose_at_start(started: &StartedQuorum, command: MetadataCommand) -> anyhow::Result<()> {
    let entry = started.state.entry(&command);
    let deadline = Instant::now() + BOOTSTRAP_WAIT;
    loop {
        match started.quorum.propose(entry.clone()).await {
            Ok(index) => {
                // None: the entry was skipped as undecodable, so it changed nothing; treating
                // that as success would let start-up go on (after a Bootstrap: with empty
                // metadata, the old topics.json renamed away).
                let Some(results) = started.state.take_results(index) else {
                    anyhow::bail!(
                        "the metadata quorum skipped a start-up change it could not decode"
                    );
                };
                for (_, result) in results {
                    if let Err((_, message)) = result {
                        anyhow::bail!("the metadata quorum refused a start-up change: {message}");
                    }
                }
                return Ok(());
            }
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                glommio::timer::sleep(BOOTSTRAP_RETRY).await;
            }
            Err(e) => anyhow::bail!("writing a start-up metadata entry: {e}"),
        }
    }
}

/// In a larger quorum: proposes a fresh cluster's first entry until some node's is applied,
/// then this broker's registration, each until the quorum takes it. Start-up waits for this, as
/// a Kafka broker waits to catch up: once its registration is applied, this node's snapshot
/// holds everything the quorum committed before it. An error if the quorum cannot take them
/// (it stopped): start-up then fails, since a snapshot that has not caught up must neither be
/// served nor used to remove partition directories it does not list.
pub(super) async fn join_cluster(
    started: &StartedQuorum,
    register: MetadataCommand,
) -> anyhow::Result<()> {
    if started.state.snapshot().cluster_id.is_empty() {
        let bootstrap = MetadataCommand::Bootstrap(fresh_metadata(0));
        // Refused at apply if another node's came first: either way the cluster has an id.
        propose_until_taken(started, &bootstrap).await?;
    }
    propose_until_taken(started, &register).await
}

/// Proposes `command` until the quorum takes it (waiting as long as it has no majority); an
/// error on a failure no retry can cure (the quorum stopped).
async fn propose_until_taken(
    started: &StartedQuorum,
    command: &MetadataCommand,
) -> anyhow::Result<()> {
    let entry = started.state.entry(command);
    let mut waiting_since = Instant::now();
    let mut retry = BOOTSTRAP_RETRY;
    loop {
        match started.quorum.propose(entry.clone()).await {
            Ok(index) => {
                started.state.take_results(index);
                return Ok(());
            }
            Err(e) if e.is_retriable() => {
                if waiting_since.elapsed() >= BOOTSTRAP_WAIT {
                    log::warn!(
                        "still waiting for the metadata quorum to take a start-up entry: {e}"
                    );
                    waiting_since = Instant::now();
                }
                glommio::timer::sleep(retry).await;
                retry = (retry * 2).min(START_RETRY_MAX);
            }
            Err(e) => anyhow::bail!("writing a start-up metadata entry: {e}"),
        }
    }
}

/// Renames the files a single-node broker kept its metadata in, once the quorum holds them,
/// so that they are never migrated again (a lost quorum directory is then refused, not
/// silently replaced by old metadata).
fn retire_legacy_files(data_dir: &Path) -> anyhow::Result<()> {
    let mut renamed = false;
    for path in [
        MetadataSnapshot::legacy_path(data_dir),
        legacy_producer_ids_path(data_dir),
    ] {
        if path.exists() {
            let mut retired = path.clone().into_os_string();
            retired.push(".migrated");
            std::fs::rename(&path, &retired)?;
            renamed = true;
        }
    }
    if renamed {
        std::fs::File::open(data_dir.join("meta"))?.sync_all()?;
    }
    Ok(())
}

/// Keeps `controller_id` at the node id of the quorum's leader as this node sees it (-1 while
/// none is known), for every shard to report as the controller. Runs on the controller shard
/// until the quorum stops.
pub async fn watch_leader(
    quorum: Rc<quorum::Quorum>,
    controller_id: Arc<std::sync::atomic::AtomicI32>,
) {
    use std::sync::atomic::Ordering;
    let node_of =
        |state: quorum::LeaderState| state.leader_id.map_or(-1, super::quorum_ids::node_id);
    let mut seen = quorum.leader_state();
    controller_id.store(node_of(seen), Ordering::Relaxed);
    loop {
        let now = quorum.leader_changed(seen).await;
        if now == seen {
            // Only a stopped quorum answers without a change.
            controller_id.store(-1, Ordering::Relaxed);
            return;
        }
        controller_id.store(node_of(now), Ordering::Relaxed);
        seen = now;
    }
}

/// Records the quorum node's contact with a working quorum every
/// [`crate::quorum_contact::CONTACT_RECORD_MS`], for every shard to read
/// (`crate::quorum_contact`), once every shard serves the metadata committed before it
/// (`ContactGate`). Ends when the quorum stops.
pub async fn watch_contact(
    quorum: Rc<quorum::Quorum>,
    state: Rc<super::replicated::MetadataState>,
    contact: Arc<crate::quorum_contact::QuorumContact>,
) {
    let mut gate = crate::quorum_contact::ContactGate::default();
    while !quorum.is_stopped() {
        let progress = crate::quorum_contact::MetadataProgress {
            applied_index: quorum.applied_index(),
            version: state.snapshot().version,
            published_version: state.publication.published_version(),
        };
        contact.record(gate.pass(quorum.lease(), progress));
        let interval = crate::quorum_contact::CONTACT_RECORD_MS;
        glommio::timer::sleep(std::time::Duration::from_millis(interval)).await;
    }
}
