//! Kafka wire protocol for Sluice: framing and limits shared by the broker and the native client,
//! RecordBatch v2 building for the client, and the native blocking client used by the CLI.
//!
//! Message codecs come from the `kafka-protocol` crate; this crate owns framing (length prefix,
//! size limits checked before allocation) and request-header handling.

pub mod client;
pub mod frame;
