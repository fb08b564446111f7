//! Every shard's cut-off check: every [`CUT_OFF_CHECK_MS`] it reads the broker's contact with
//! its metadata quorum (`crate::quorum_contact`). A broker out of contact for longer than its
//! lease (`--session-timeout-ms` less the polls and a margin, so that it ends before the
//! controller may fence it: see `quorum_contact.rs`) has been, or will be, fenced, and another broker is elected leader of
//! its partitions, so from then on it acts as no partition's leader: Produce and Fetch answer
//! NOT_LEADER_OR_FOLLOWER, waiting acks=all producers too, and Metadata names it neither
//! leader nor broker (`handlers/metadata.rs`), so that clients ask another broker. Once in
//! contact again it acts on the snapshot it then learns (a new leader elected: it truncates
//! and follows).

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::quorum_contact::CUT_OFF_CHECK_MS;
use crate::shard::Shard;

/// Starts the check on `shard`, unless the quorum is this broker alone (never cut off).
pub fn spawn(shard: Rc<Shard>) {
    if shard.quorum_contact.is_alone() {
        return;
    }
    let task = async move {
        let session_timeout = Duration::from_millis(shard.config.session_timeout_ms);
        loop {
            glommio::timer::sleep(Duration::from_millis(CUT_OFF_CHECK_MS)).await;
            let cut_off = (shard.quorum_contact).is_cut_off(Instant::now(), session_timeout);
            if cut_off != shard.cut_off.get() {
                set_cut_off(&shard, cut_off).await;
            }
        }
    };
    glommio::spawn_local(task).detach();
}

async fn set_cut_off(shard: &Rc<Shard>, cut_off: bool) {
    shard.cut_off.set(cut_off);
    if cut_off {
        log::warn!(
            "shard {}: out of contact with the metadata quorum for longer than the lease \
             (the session timeout less the polls and a margin); leading nothing until contact \
             returns",
            shard.id
        );
    } else {
        log::info!(
            "shard {}: in contact with the metadata quorum again",
            shard.id
        );
    }
    for (topic, index) in shard.owned_partitions() {
        if let Some(partition) = shard.partition(&topic, index) {
            partition.cut_off_changed();
        }
        glommio::yield_if_needed().await;
    }
}
