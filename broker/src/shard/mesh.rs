//! The shard-to-shard transport: glommio's channel mesh carrying [`Request`]s and [`Reply`]s.
//!
//! Concurrency: each shard holds its own [`Mesh`]; nothing in it crosses threads except the
//! envelopes, which the mesh moves whole (no serialisation on one broker).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::message::{Reply, Request};
use super::{dispatch, Shard};

/// Messages in flight from one shard to another before the sender waits. Each message is small
/// (a request with its owned payload, or a reply); the bound turns a flood from other shards
/// into backpressure.
pub const INBOX_MESSAGES_MAX: usize = 1024;

/// What travels between shards over glommio's channel mesh. The mesh wakes the receiving
/// executor through its own notifier, so no task waker ever crosses a thread.
pub enum Envelope {
    Request { id: u64, request: Request },
    Reply { id: u64, reply: Reply },
}

/// This shard's end of the mesh: senders to every peer and the calls waiting for replies.
pub struct Mesh {
    senders: glommio::channels::channel_mesh::Senders<Envelope>,
    /// Mesh peer index of each shard id.
    peer_index: Vec<usize>,
    next_call_id: Cell<u64>,
    pending_calls: RefCell<HashMap<u64, futures_channel::oneshot::Sender<Reply>>>,
}

impl Mesh {
    pub fn new(
        senders: glommio::channels::channel_mesh::Senders<Envelope>,
        peer_index: Vec<usize>,
    ) -> Mesh {
        Mesh {
            senders,
            peer_index,
            next_call_id: Cell::new(0),
            pending_calls: RefCell::new(HashMap::new()),
        }
    }

    /// Shards in the mesh, this one included.
    pub fn shard_count(&self) -> usize {
        self.peer_index.len()
    }
}

impl Shard {
    /// Serves the messages from one peer until it goes away: requests run as their own tasks
    /// (in arrival order) and their replies go back; replies complete the waiting calls.
    pub async fn serve_peer(
        self: Rc<Self>,
        peer: usize,
        receiver: glommio::channels::shared_channel::ConnectedReceiver<Envelope>,
    ) {
        while let Some(envelope) = receiver.recv().await {
            match envelope {
                Envelope::Request { id, request } => {
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let reply = dispatch::handle(shard.clone(), request).await;
                        // The peer only goes away when the process stops.
                        let _ = shard
                            .mesh
                            .senders
                            .send_to(peer, Envelope::Reply { id, reply })
                            .await;
                    })
                    .detach();
                }
                Envelope::Reply { id, reply } => {
                    if let Some(waiting) = self.mesh.pending_calls.borrow_mut().remove(&id) {
                        // The caller may have gone (its connection closed); then it is unwanted.
                        let _ = waiting.send(reply);
                    }
                }
            }
        }
    }

    /// Runs `request` on shard `target` and returns its reply; runs it in place when `target`
    /// is this shard, where the request moves without a copy.
    pub async fn call(self: &Rc<Self>, target: usize, request: Request) -> Reply {
        if target == self.id {
            return dispatch::handle(self.clone(), request).await;
        }
        let mesh = &self.mesh;
        let id = mesh.next_call_id.get();
        mesh.next_call_id.set(id + 1);
        let (reply_tx, reply_rx) = futures_channel::oneshot::channel();
        mesh.pending_calls.borrow_mut().insert(id, reply_tx);
        let envelope = Envelope::Request { id, request };
        if mesh
            .senders
            .send_to(mesh.peer_index[target], envelope)
            .await
            .is_err()
        {
            panic!(
                "shard {target} left the mesh while shard {} is running",
                self.id
            );
        }
        reply_rx.await.expect("every request is answered")
    }
}
