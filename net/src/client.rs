//! Native blocking Kafka client.
