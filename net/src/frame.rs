//! Length-prefixed Kafka frames.
