//! Kafka wire framing for Sluice, shared by the broker and the native client: the length prefix,
//! size limits checked before allocation, and request-header handling.
//!
//! Message codecs come from the `kafka-protocol` crate.

pub mod frame;
