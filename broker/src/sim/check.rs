//! The invariants checked after every step, and the model they are checked against: what was
//! acknowledged with acks=all and what a consumer read.
//!
//! - A leader's high watermark never moves back (same broker life, same leader epoch).
//! - The leader epoch a broker applies never goes down; each log's epoch entries increase.
//! - Every record acknowledged with acks=all, and every record a consumer read, is in the log
//!   of the current leader at the same offset, and an acknowledged one exactly once.
//! - Below the leader's high watermark, the log of every ISR member is the leader's.

use std::collections::BTreeMap;

use super::controller::{index_of, TOPIC};
use super::model::Contents;
use super::world::World;
use crate::partition::Partition;

/// Every stored record of `partition`'s log, in offset order.
async fn read_contents(partition: &Partition) -> Result<Contents, String> {
    let log = &partition.log;
    let mut contents = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = (log.read(offset, 1 << 20).await)
            .map_err(|e| format!("reading {} at {offset}: {e}", partition.dir.display()))?;
        let mut rest = &bytes[..];
        assert!(!rest.is_empty(), "a read below the log end returns a batch");
        while !rest.is_empty() {
            let header = record_batch::BatchHeader::parse(rest).expect("whole batches");
            if header.base_offset >= offset {
                let entry = (header.base_offset, header.max_timestamp);
                contents.push((entry.0, entry.1, header.partition_leader_epoch));
            }
            offset = header.next_offset();
            rest = &rest[header.total_bytes()..];
        }
    }
    Ok(contents)
}

/// The contents of broker `index`'s log, read again only if the log may have changed.
async fn contents_of(world: &mut World, index: usize) -> Result<Contents, String> {
    let broker = &world.brokers[index];
    let partition = broker.partition.clone().expect("up");
    let key = (broker.incarnation, broker.mutations);
    if let Some((incarnation, mutations, contents)) = world.model.cache.get(&index) {
        if (*incarnation, *mutations) == key {
            return Ok(contents.clone());
        }
    }
    let contents = read_contents(&partition).await?;
    (world.model.cache).insert(index, (key.0, key.1, contents.clone()));
    Ok(contents)
}

/// Checks every invariant as things stand.
pub async fn check(world: &mut World) -> Result<(), String> {
    if let Some(broken) = world.model.broken.take() {
        return Err(broken);
    }
    for index in 0..world.brokers.len() {
        check_broker(world, index)?;
    }
    let Some(leader) = current_leader(world) else {
        return Ok(());
    };
    let contents = contents_of(world, leader).await?;
    check_records_kept(world, leader, &contents)?;
    check_isr_prefixes(world, leader, &contents).await
}

/// The high watermark of a leader and the epochs of one broker.
fn check_broker(world: &mut World, index: usize) -> Result<(), String> {
    let broker = &world.brokers[index];
    let Some(partition) = broker.partition.as_ref() else {
        return Ok(());
    };
    let id = broker.id;
    let epochs = partition.log.leader_epochs();
    if epochs
        .windows(2)
        .any(|w| w[0].0 >= w[1].0 || w[0].1 >= w[1].1)
    {
        return Err(format!(
            "broker {id}: leader epochs do not increase: {epochs:?}"
        ));
    }
    let replicas = partition.replicas.borrow();
    if broker.view.is_some() {
        let epoch = replicas.leader_epoch();
        let seen = world.model.epochs.entry(index).or_insert(epoch);
        if epoch < *seen {
            return Err(format!("broker {id}: leader epoch {epoch} after {seen}"));
        }
        *seen = epoch;
    }
    if !replicas.is_leader() {
        world.model.led.remove(&index);
        return Ok(());
    }
    let now = (
        broker.incarnation,
        replicas.leader_epoch(),
        partition.log.high_watermark(),
    );
    if let Some(before) = world.model.led.insert(index, now) {
        if (before.0, before.1) == (now.0, now.1) && now.2 < before.2 {
            return Err(format!(
                "broker {id}: high watermark moved back from {} to {} as leader at epoch {}",
                before.2, now.2, now.1
            ));
        }
    }
    Ok(())
}

/// The broker that leads in the committed metadata, if it is up and has applied that epoch.
fn current_leader(world: &World) -> Option<usize> {
    let assignment = world.controller.assignment();
    let index = world
        .brokers
        .iter()
        .position(|b| b.id == assignment.leader)?;
    let partition = world.brokers[index].partition.as_ref()?;
    let replicas = partition.replicas.borrow();
    (replicas.is_leader() && replicas.leader_epoch() == assignment.leader_epoch).then_some(index)
}

fn check_records_kept(world: &World, leader: usize, contents: &Contents) -> Result<(), String> {
    let id = world.brokers[leader].id;
    let at: BTreeMap<i64, i64> = contents.iter().map(|(o, r, _)| (*o, *r)).collect();
    let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
    for (_, record, _) in contents {
        *counts.entry(*record).or_default() += 1;
    }
    let model = &world.model;
    for (what, records) in [
        ("acknowledged", &model.acknowledged),
        ("consumed", &model.consumed),
    ] {
        for (offset, record) in records {
            if at.get(offset) != Some(record) {
                return Err(format!(
                    "record {record}, {what} at offset {offset}, is not there in leader {id}'s \
                     log (found {:?})",
                    at.get(offset)
                ));
            }
        }
    }
    for record in model.acknowledged.values() {
        if counts.get(record) != Some(&1) {
            return Err(format!(
                "acknowledged record {record} is in leader {id}'s log {:?} times",
                counts.get(record)
            ));
        }
    }
    Ok(())
}

/// Below the leader's high watermark, each ISR member (as the leader sees the ISR) holds the
/// leader's records.
async fn check_isr_prefixes(
    world: &mut World,
    leader: usize,
    contents: &Contents,
) -> Result<(), String> {
    let partition = world.brokers[leader].partition.clone().expect("up");
    let high_watermark = partition.log.high_watermark();
    let isr = partition.replicas.borrow().isr().to_vec();
    let leader_id = world.brokers[leader].id;
    for member in isr.into_iter().filter(|m| *m != leader_id) {
        let index = index_of(member);
        if !world.brokers[index].is_up() {
            continue;
        }
        let theirs = contents_of(world, index).await?;
        let below = |c: &Contents| -> Contents {
            c.iter()
                .copied()
                .filter(|(o, _, _)| *o < high_watermark)
                .collect()
        };
        let (mine, theirs) = (below(contents), below(&theirs));
        let common = if world.power_loss_simulated() {
            mine.len().min(theirs.len())
        } else {
            mine.len()
        };
        if theirs.get(..common) != mine.get(..common) {
            return Err(format!(
                "ISR member {member}'s log differs from leader {leader_id}'s below the high \
                 watermark {high_watermark}: {:?} vs {:?}",
                &theirs[..theirs.len().min(common)],
                &mine[..common]
            ));
        }
    }
    Ok(())
}

/// After the quiet steps: every broker is up and its log, below the leader's high watermark,
/// is the leader's; every acknowledged record is below that high watermark.
pub async fn check_converged(world: &mut World) -> Result<(), String> {
    let Some(leader) = current_leader(world) else {
        let views: Vec<_> = (world.brokers.iter())
            .map(|b| {
                (
                    b.id,
                    b.view
                        .as_ref()
                        .and_then(|v| v.assignment(TOPIC, 0).cloned()),
                )
            })
            .collect();
        return Err(format!(
            "no leader after the quiet steps: the controller has {:?}; the brokers apply {views:?}",
            world.controller.assignment()
        ));
    };
    let contents = contents_of(world, leader).await?;
    let partition = world.brokers[leader].partition.clone().expect("up");
    let high_watermark = partition.log.high_watermark();
    if let Some((offset, record)) = world.model.acknowledged.last_key_value() {
        if *offset >= high_watermark {
            return Err(format!(
                "acknowledged record {record} at {offset} is not below the final high watermark \
                 {high_watermark}"
            ));
        }
    }
    for index in 0..world.brokers.len() {
        let theirs = contents_of(world, index).await?;
        let below: Vec<_> = theirs
            .iter()
            .filter(|(o, _, _)| *o < high_watermark)
            .collect();
        let mine: Vec<_> = contents
            .iter()
            .filter(|(o, _, _)| *o < high_watermark)
            .collect();
        if below != mine {
            let broker = &world.brokers[index];
            let follow =
                (broker.follow.as_ref()).map(|f| (f.followed.leader_epoch, f.fetch_offset));
            return Err(format!(
                "after the quiet steps broker {}'s log differs from the leader's below \
                 {high_watermark}: {below:?} vs {mine:?}; it follows {follow:?}",
                broker.id
            ));
        }
    }
    Ok(())
}
