//! A seeded, deterministic simulation: three nodes, each a real `Driver` over real `Disk`
//! directories, on one executor, with a network that drops and reorders messages and with
//! crash-restarts. raft-rs's own randomness is pinned (a fixed election timeout) so a seed
//! replays the same run; the nodes' tick order breaks the symmetry instead.
//!
//! Checked: every entry applied at an index is the same on every node, and so is the state
//! after it (a restored snapshot included); after the faults stop, the nodes converge and a new
//! entry commits everywhere. Replay one seed with `QUORUM_SIM_SEED=<seed>`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::local_channel;
use raft::prelude::Message;
use std::time::Instant;

use crate::config::{Config, Voter};
use crate::driver::{Driver, Input};
use crate::state_machine::StateMachine;
use crate::transport::Outbox;

/// Seeds that found bugs, or that exercise a path worth keeping; they run every time.
const REGRESSION_SEEDS: &[u64] = &[1, 7, 42];
const RANDOM_SEEDS: usize = 6;
const STEPS: usize = 2_500;
const HEAL_STEPS_MAX: usize = 20_000;
const NODES: u64 = 3;
/// Messages in flight at most; the oldest is lost beyond it.
const IN_FLIGHT_MAX: usize = 2_000;
/// Messages a delivery step delivers (or loses).
const DELIVERIES_PER_STEP: usize = 4;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

struct SimOutbox(Rc<RefCell<Vec<Message>>>);

impl Outbox for SimOutbox {
    fn send(&self, message: Message) {
        self.0.borrow_mut().push(message);
    }
}

/// What every node must agree on: the entry at each index and the state hash after it.
#[derive(Default)]
struct Truth {
    entries: BTreeMap<u64, Vec<u8>>,
    hashes: BTreeMap<u64, u64>,
    /// Snapshots restored (at a restart or from the leader).
    restores: u64,
}

struct Machine {
    node: u64,
    last_index: u64,
    hash: u64,
    truth: Rc<RefCell<Truth>>,
}

impl StateMachine for Machine {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) {
        assert!(index > self.last_index);
        let mut hash = self.hash ^ 0xcbf2_9ce4_8422_2325;
        for byte in index.to_le_bytes().iter().chain(data) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut truth = self.truth.borrow_mut();
        let known = truth.entries.entry(index).or_insert_with(|| data.to_vec());
        assert_eq!(
            known.as_slice(),
            data,
            "node {} applied a different entry at {index}",
            self.node
        );
        // Empty entries are not applied, so the hash is compared at applied indexes only.
        let known = *truth.hashes.entry(index).or_insert(hash);
        assert_eq!(
            known, hash,
            "node {} reached a different state at {index}",
            self.node
        );
        self.last_index = index;
        self.hash = hash;
    }

    fn snapshot(&self) -> Vec<u8> {
        [self.last_index, self.hash]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let field = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        self.last_index = field(0);
        self.hash = field(8);
        self.truth.borrow_mut().restores += 1;
        if let Some(known) = self.truth.borrow().hashes.get(&self.last_index) {
            assert_eq!(
                *known, self.hash,
                "node {} restored a different state at {}",
                self.node, self.last_index
            );
        }
        Ok(())
    }
}

type SimDriver = Driver<Machine, SimOutbox>;

struct Sim {
    rng: SplitMix,
    configs: Vec<Config>,
    nodes: Vec<Option<SimDriver>>,
    outboxes: Vec<Rc<RefCell<Vec<Message>>>>,
    in_flight: Vec<Message>,
    truth: Rc<RefCell<Truth>>,
    proposals: u64,
    restarts: u64,
    seed: u64,
}

impl Sim {
    async fn start_node(&mut self, at: usize) {
        let (_inbox, receiver) = local_channel::new_bounded(1);
        let raft_config = raft::Config {
            election_tick: 10,
            min_election_tick: 10,
            max_election_tick: 11,
            heartbeat_tick: 2,
            ..crate::raft_config(&self.configs[at])
        };
        let machine = Machine {
            node: at as u64 + 1,
            last_index: 0,
            hash: 0,
            truth: self.truth.clone(),
        };
        let outbox = SimOutbox(self.outboxes[at].clone());
        let driver = Driver::open(&self.configs[at], raft_config, machine, outbox, receiver).await;
        self.nodes[at] = Some(driver.expect("a node restarts from its directory"));
    }

    /// Runs `input` (or a tick) on node `at`, handles its Ready, and collects what it sent.
    async fn step_node(&mut self, at: usize, input: Option<Input>) {
        let Some(driver) = self.nodes[at].as_mut() else {
            return;
        };
        match input {
            Some(input) => {
                driver.handle_input(input);
            }
            None => driver.tick(),
        }
        driver
            .handle_ready()
            .await
            .expect("the simulated disk works");
        self.in_flight.append(&mut self.outboxes[at].borrow_mut());
        if self.in_flight.len() > IN_FLIGHT_MAX {
            self.in_flight.remove(0);
        }
    }

    async fn deliver_one(&mut self, drop_percent: u64) {
        if self.in_flight.is_empty() {
            return;
        }
        let at = self.rng.below(self.in_flight.len() as u64) as usize;
        let message = self.in_flight.swap_remove(at);
        if self.rng.below(100) < drop_percent {
            return;
        }
        let to = message.to as usize - 1;
        self.step_node(to, Some(Input::Message(Box::new(message))))
            .await;
    }

    async fn propose(&mut self, at: usize) {
        self.proposals += 1;
        let data = format!("seed-{}-proposal-{}", self.seed, self.proposals).into_bytes();
        let (done, _result) = oneshot::channel();
        self.step_node(at, Some(Input::Propose { data, done }))
            .await;
    }

    /// One random action: deliver (or lose) a message, tick, propose, crash or restart.
    async fn chaos_step(&mut self) {
        let node = self.rng.below(NODES) as usize;
        match self.rng.below(100) {
            0..=49 => {
                // Every tick asks for a read index (the contact's round trip, `contact.rs`), a
                // handful of messages: a delivery step delivers several, so the network keeps up
                // with them as a real one does instead of starving the log's own messages.
                for _ in 0..DELIVERIES_PER_STEP {
                    self.deliver_one(10).await;
                }
            }
            50..=84 => self.step_node(node, None).await,
            85..=94 => self.propose(node).await,
            95 => {
                // A crash: the driver and its RawNode vanish between two awaited steps; what
                // it persisted stays.
                self.nodes[node] = None;
                self.outboxes[node].borrow_mut().clear();
            }
            _ => {
                if self.nodes[node].is_none() {
                    self.restarts += 1;
                    self.start_node(node).await;
                }
            }
        }
    }

    fn applied(&self, at: usize) -> u64 {
        self.nodes[at]
            .as_ref()
            .map_or(0, |driver| driver.shared.applied_index.get())
    }
}

/// Three nodes started on directories under `base`.
async fn new_sim(seed: u64, base: &std::path::Path) -> Sim {
    let addresses: Vec<std::net::SocketAddr> = (0..NODES)
        .map(|at| format!("127.0.0.1:{}", 1 + at).parse().expect("an address"))
        .collect();
    let voters: Vec<Voter> = addresses
        .iter()
        .enumerate()
        .map(|(at, address)| Voter {
            id: at as u64 + 1,
            address: *address,
        })
        .collect();
    let configs: Vec<Config> = (1..=NODES)
        .map(|id| {
            let mut config = Config::new(
                id,
                voters.clone(),
                base.join(format!("seed-{seed}-node-{id}")),
                "sim",
            )
            .expect("a config");
            config.snapshot_every = 20;
            config
        })
        .collect();
    let mut sim = Sim {
        rng: SplitMix(seed),
        nodes: (0..NODES).map(|_| None).collect(),
        outboxes: (0..NODES)
            .map(|_| Rc::new(RefCell::new(Vec::new())))
            .collect(),
        configs,
        in_flight: Vec::new(),
        truth: Rc::new(RefCell::new(Truth::default())),
        proposals: 0,
        restarts: 0,
        seed,
    };
    for at in 0..NODES as usize {
        sim.start_node(at).await;
    }
    sim
}

async fn run_seed(seed: u64, base: &std::path::Path) {
    let mut sim = new_sim(seed, base).await;
    for _ in 0..STEPS {
        sim.chaos_step().await;
    }
    let (applied, last, restores) = {
        let truth = sim.truth.borrow();
        let last = truth.entries.keys().last().copied().unwrap_or(0);
        (truth.entries.len(), last, truth.restores)
    };
    eprintln!(
        "seed {seed}: {} proposals, {applied} entries applied up to index {last}, {} restarts, \
         {restores} snapshots restored",
        sim.proposals, sim.restarts
    );
    // Faults are frequent but not constant: a run that commits nothing checks nothing.
    assert!(
        applied >= 10,
        "seed {seed}: only {applied} entries were applied under faults"
    );
    heal_and_commit(&mut sim, seed).await;
}

/// Restarts every node, stops losing messages, and requires a new entry to commit everywhere.
async fn heal_and_commit(sim: &mut Sim, seed: u64) {
    for at in 0..NODES as usize {
        if sim.nodes[at].is_none() {
            sim.start_node(at).await;
        }
    }
    let mut proposed_at: Option<u64> = None;
    for step in 0..HEAL_STEPS_MAX {
        let node = sim.rng.below(NODES) as usize;
        if sim.rng.below(100) < 70 {
            sim.deliver_one(0).await;
        } else {
            sim.step_node(node, None).await;
        }
        let leader = (0..NODES as usize).find(|at| {
            sim.nodes[*at]
                .as_ref()
                .is_some_and(|driver| driver.shared.is_leader.get())
        });
        if step % 50 == 0 {
            if let Some(leader) = leader {
                sim.propose(leader).await;
                proposed_at.get_or_insert(sim.proposals);
            }
        }
        let committed_everywhere = proposed_at.is_some_and(|first| {
            let truth = sim.truth.borrow();
            let wanted = format!("seed-{seed}-proposal-{first}").into_bytes();
            truth
                .entries
                .iter()
                .find(|(_, data)| **data == wanted)
                .is_some_and(|(index, _)| (0..NODES as usize).all(|at| sim.applied(at) >= *index))
        });
        if committed_everywhere {
            return;
        }
    }
    panic!("seed {seed}: after healing, a new entry did not commit on every node");
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("QUORUM_SIM_SEED") {
        return vec![seed.parse().expect("QUORUM_SIM_SEED is a number")];
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock")
        .as_nanos() as u64;
    let mut rng = SplitMix(time);
    REGRESSION_SEEDS
        .iter()
        .copied()
        .chain((0..RANDOM_SEEDS).map(|_| rng.next()))
        .collect()
}

#[test]
fn committed_entries_never_diverge_under_loss_reordering_and_crashes() {
    let base = std::env::temp_dir().join(format!("sluice-quorum-sim-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("the simulation's directory");
    for seed in seeds() {
        eprintln!("quorum simulation seed {seed} (replay with QUORUM_SIM_SEED={seed})");
        let dir = base.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move { run_seed(seed, &dir).await })
            .expect("an executor")
            .join()
            .expect("the seed's run");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Ticks each node in turn, delivering after each tick every message in flight (and those they
/// cause) except the ones `lost` drops, in the order they were sent. Delivering between ticks
/// lets the first node to time out win its election (ticking all first splits every vote, the
/// election timeout being pinned).
async fn round(sim: &mut Sim, lost: impl Fn(&Message) -> bool) {
    for at in 0..NODES as usize {
        sim.step_node(at, None).await;
        // Raft answers messages with messages, but sends new ones only on ticks: this ends.
        for _ in 0..IN_FLIGHT_MAX {
            if sim.in_flight.is_empty() {
                break;
            }
            let message = sim.in_flight.remove(0);
            if !lost(&message) {
                let to = message.to as usize - 1;
                sim.step_node(to, Some(Input::Message(Box::new(message))))
                    .await;
            }
        }
    }
}

fn lease_at(sim: &Sim, at: usize) -> Option<Instant> {
    let driver = sim.nodes[at].as_ref().expect("a running node");
    driver.shared.lease.get().map(|lease| lease.at)
}

/// A follower whose messages are all lost still hears its leader, but it gains no contact: the
/// contact is credited only for a round trip, so it never outlives what the leader heard
/// (which is what the controller fences by). The leader, heard by the third node, keeps its.
async fn one_way_partition(base: &std::path::Path) {
    let mut sim = new_sim(1, base).await;
    let leader = settle(&mut sim).await;
    let follower = (leader + 1) % NODES as usize;
    let follower_id = follower as u64 + 1;
    assert!(
        lease_at(&sim, follower).is_some(),
        "the follower was in contact"
    );
    let cut = Instant::now();
    for _ in 0..100 {
        round(&mut sim, |message| message.from == follower_id).await;
    }
    let driver = sim.nodes[follower].as_ref().expect("the follower");
    let heard_leader = (driver.shared.peers.snapshot().iter())
        .find(|peer| peer.id == leader as u64 + 1)
        .and_then(|peer| peer.last_heard);
    assert!(
        heard_leader.is_some_and(|heard| heard > cut),
        "the follower hears its leader"
    );
    assert_eq!(driver.shared.leader_id.get(), leader as u64 + 1);
    assert!(
        lease_at(&sim, follower).is_some_and(|at| at < cut),
        "no contact after the cut"
    );
    assert!(
        lease_at(&sim, leader).is_some_and(|at| at > cut),
        "the leader keeps its majority"
    );
    // Heard again, it is in contact again, and learns the leader's commit index with it.
    for _ in 0..5 {
        round(&mut sim, |_| false).await;
    }
    assert!(
        lease_at(&sim, follower).is_some_and(|at| at > cut),
        "contact returns"
    );
}

#[test]
fn a_follower_its_leader_does_not_hear_gains_no_contact() {
    let base = std::env::temp_dir().join(format!("sluice-quorum-lease-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("the test's directory");
    let dir = base.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { one_way_partition(&dir).await })
        .expect("an executor")
        .join()
        .expect("the run");
    let _ = std::fs::remove_dir_all(&base);
}

/// Rounds until a leader is known and every node is in contact; returns the leader.
async fn settle(sim: &mut Sim) -> usize {
    for _ in 0..200 {
        round(sim, |_| false).await;
        let leader = (0..NODES as usize).find(|at| {
            sim.nodes[*at]
                .as_ref()
                .is_some_and(|driver| driver.shared.is_leader.get())
        });
        if let Some(leader) = leader {
            if (0..NODES as usize).all(|at| lease_at(sim, at).is_some()) {
                return leader;
            }
        }
    }
    let states: Vec<_> = (0..NODES as usize)
        .map(|at| {
            let driver = sim.nodes[at].as_ref().expect("a running node");
            let raft = &driver.node.raft;
            (
                raft.leader_id,
                raft.term,
                raft.raft_log.committed,
                driver.shared.lease.get(),
            )
        })
        .collect();
    panic!("no leader with every node in contact within 200 ticks: {states:?}");
}

/// A follower whose disk is full neither acknowledges nor stops: its append is retried and no
/// message leaves it meanwhile, while the other two commit; once there is space it persists the
/// entry, acknowledges it, applies it, and still holds it after a crash.
async fn full_disk_follower(base: &std::path::Path) {
    let mut sim = new_sim(2, base).await;
    let leader = settle(&mut sim).await;
    let follower = (leader + 1) % NODES as usize;
    let follower_id = follower as u64 + 1;
    sim.in_flight.clear();
    sim.propose(leader).await;
    let index = (sim.nodes[leader]
        .as_ref()
        .expect("the leader")
        .node
        .raft
        .raft_log)
        .last_index();
    let at = (sim.in_flight.iter())
        .position(|message| message.to == follower_id && !message.entries.is_empty())
        .expect("the leader's append to the follower");
    let append = sim.in_flight.remove(at);
    let mut driver = sim.nodes[follower].take().expect("the follower");
    let (full, refused) = (driver.disk.full.clone(), driver.disk.refused.clone());
    full.set(true);
    let waiting = glommio::spawn_local(async move {
        driver.handle_input(Input::Message(Box::new(append)));
        let result = driver.handle_ready().await;
        (driver, result)
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while refused.get() < 3 {
        assert!(
            Instant::now() < deadline,
            "the append was not retried: {} refusals",
            refused.get()
        );
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(
        sim.outboxes[follower].borrow().is_empty(),
        "a full follower sent a message"
    );
    for _ in 0..5 {
        round(&mut sim, |_| false).await;
    }
    let raft = &sim.nodes[leader].as_ref().expect("the leader").node.raft;
    assert!(raft.raft_log.committed >= index, "the other two commit");
    let matched = raft.prs().get(follower_id).map(|progress| progress.matched);
    assert!(
        matched.is_some_and(|matched| matched < index),
        "nothing acknowledged unwritten"
    );
    full.set(false);
    let (driver, result) = waiting.await;
    result.expect("the append resumes once there is space");
    sim.nodes[follower] = Some(driver);
    let acknowledged = sim.outboxes[follower].borrow().iter().any(|message| {
        message.get_msg_type() == raft::prelude::MessageType::MsgAppendResponse
            && !message.reject
            && message.index >= index
    });
    assert!(
        acknowledged,
        "the follower acknowledges the entry once it is durable"
    );
    for _ in 0..5 {
        round(&mut sim, |_| false).await;
    }
    assert!(
        sim.applied(follower) >= index,
        "the follower applies the entry"
    );
    sim.nodes[follower] = None;
    sim.outboxes[follower].borrow_mut().clear();
    sim.start_node(follower).await;
    let driver = sim.nodes[follower]
        .as_ref()
        .expect("the restarted follower");
    assert!(
        driver.disk.core().last_index() >= index,
        "the entry survives a crash"
    );
}

#[test]
fn a_follower_with_a_full_disk_acknowledges_nothing_and_resumes() {
    let base = std::env::temp_dir().join(format!("sluice-quorum-full-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("the test's directory");
    let dir = base.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { full_disk_follower(&dir).await })
        .expect("an executor")
        .join()
        .expect("the run");
    let _ = std::fs::remove_dir_all(&base);
}
