//! The native batching producer (`client::producer`) against the real broker binary: every
//! codec and acks level, keyed records in the Java client's partitions, and idempotent
//! retries across a kill -9 of the broker.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::producer::{Delivery, DeliveryCallback, Producer, ProducerConfig};
use client::{Client, ProduceRecord, TIMESTAMP_LATEST};
use common::Broker;
use kafka_protocol::records::Compression;

/// What the delivery callback saw: (partition, base offset or error text, tags).
type Deliveries = Arc<Mutex<Vec<(i32, Result<i64, String>, Vec<u64>)>>>;

fn collector() -> (Deliveries, DeliveryCallback) {
    let deliveries: Deliveries = Arc::default();
    let sink = deliveries.clone();
    let callback: DeliveryCallback = Arc::new(move |delivery: &Delivery<'_>| {
        sink.lock().unwrap().push((
            delivery.partition,
            delivery.result.map_err(|error| error.to_string()),
            delivery.tags.to_vec(),
        ));
    });
    (deliveries, callback)
}

fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    let mut client = Client::connect(&broker.addr.to_string()).unwrap();
    client.create_topic(topic, partitions, 1, &[]).unwrap();
}

/// Keys cycle through `key-0` .. `key-16`; this is where the Java client puts `key-i` in a
/// three-partition topic (`toPositive(murmur2(key)) % 3`), as librdkafka's `murmur2_random`
/// partitioner and kafka-python's default partitioner place them, computed by those clients
/// rather than by Sluice's own partitioner.
const KEY_PARTITIONS_OF_THREE: [i32; 17] = [1, 0, 2, 2, 0, 2, 2, 1, 1, 0, 2, 1, 2, 1, 1, 0, 1];

fn keyed_record(index: u64) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(format!("key-{}", index % 17))),
        // Compressible and distinct.
        value: Some(Bytes::from(format!(
            "value {index:08} {}",
            "abc".repeat(40)
        ))),
        headers: vec![("index".into(), Some(Bytes::from(index.to_string())))],
        timestamp_ms: 1_700_000_000_000 + index as i64,
    }
}

/// Every record of a partition, in offset order, through the client's fetch (which
/// decompresses).
fn read_partition(broker: &Broker, topic: &str, partition: i32) -> Vec<(i64, ProduceRecord)> {
    let mut client = Client::connect(&broker.addr.to_string()).unwrap();
    let end = client
        .list_offsets(topic, partition, TIMESTAMP_LATEST)
        .unwrap();
    let mut offset = 0;
    let mut records = Vec::new();
    while offset < end {
        let fetched = client
            .fetch(topic, partition, offset, 100, 4 << 20)
            .unwrap();
        assert!(fetched.error.is_none(), "{:?}", fetched.error);
        for record in fetched.records {
            records.push((
                record.offset,
                ProduceRecord {
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                    timestamp_ms: record.timestamp,
                },
            ));
        }
        assert!(fetched.next_offset > offset, "fetch makes progress");
        offset = fetched.next_offset;
    }
    records
}

/// Produces `count` keyed records and checks that each partition holds exactly the records whose
/// key the Java partitioner maps to it, in send order, at the offsets the deliveries reported.
fn round_trip(broker: &Broker, topic: &str, config: ProducerConfig, count: u64) {
    let partitions = 3;
    create_topic(broker, topic, partitions);
    let (deliveries, callback) = collector();
    let producer = Producer::connect(&broker.addr.to_string(), config, callback).unwrap();
    for index in 0..count {
        let record = keyed_record(index);
        let partition = producer.send(topic, None, record.clone(), index).unwrap();
        assert_eq!(partition, KEY_PARTITIONS_OF_THREE[(index % 17) as usize]);
    }
    producer.flush();
    let stats = producer.stats();
    producer.close();
    let deliveries = deliveries.lock().unwrap().clone();
    let delivered: usize = deliveries.iter().map(|(_, _, tags)| tags.len()).sum();
    assert_eq!(delivered as u64, count);
    assert!(
        stats.batches < count,
        "records were batched: {stats:?} for {count}"
    );
    let mut offset_of_tag = BTreeMap::new();
    for (partition, result, tags) in &deliveries {
        let base = result.clone().expect("every batch is acknowledged");
        for (delta, tag) in tags.iter().enumerate() {
            offset_of_tag.insert(*tag, (*partition, base + delta as i64));
        }
    }
    for partition in 0..partitions {
        let stored = read_partition(broker, topic, partition);
        let expected: Vec<u64> = (0..count)
            .filter(|&index| offset_of_tag[&index].0 == partition)
            .collect();
        assert_eq!(stored.len(), expected.len(), "partition {partition}");
        for ((offset, record), index) in stored.iter().zip(expected) {
            assert_eq!(*record, keyed_record(index), "partition {partition}");
            assert_eq!(offset_of_tag[&index], (partition, *offset));
        }
    }
}

#[test]
fn every_codec_and_acks_level_round_trips() {
    let broker = Broker::start("producer-codecs", 2);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for (index, compression) in codecs.into_iter().enumerate() {
        for acks in [1, -1] {
            let config = ProducerConfig {
                acks,
                compression,
                batch_bytes: 4 * 1024,
                linger: Duration::from_millis(2),
                ..ProducerConfig::default()
            };
            let topic = format!("codec-{index}-acks{acks}");
            round_trip(&broker, &topic, config, 3_000);
        }
    }
}

#[test]
fn idempotent_pipelined_round_trip() {
    let broker = Broker::start("producer-idempotent", 2);
    let config = ProducerConfig {
        idempotence: true,
        compression: Compression::Zstd,
        batch_bytes: 2 * 1024,
        in_flight_max: 5,
        ..ProducerConfig::default()
    };
    round_trip(&broker, "idempotent", config, 5_000);
}

#[test]
fn acks_zero_stores_records_without_answers() {
    let broker = Broker::start("producer-acks0", 1);
    let topic = "fire-and-forget";
    create_topic(&broker, topic, 1);
    let (deliveries, callback) = collector();
    let config = ProducerConfig {
        acks: 0,
        compression: Compression::Lz4,
        batch_bytes: 1024,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr.to_string(), config, callback).unwrap();
    let count = 2_000;
    for index in 0..count {
        producer
            .send(topic, Some(0), keyed_record(index), index)
            .unwrap();
    }
    producer.close();
    let deliveries = deliveries.lock().unwrap();
    assert!(deliveries
        .iter()
        .all(|(_, result, _)| result.as_ref() == Ok(&-1)));
    // Nothing acknowledges the appends, so wait for them to show up.
    let mut client = Client::connect(&broker.addr.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.list_offsets(topic, 0, TIMESTAMP_LATEST).unwrap() < count as i64 {
        assert!(Instant::now() < deadline, "acks=0 records never stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stored = read_partition(&broker, topic, 0);
    let values: Vec<_> = stored.into_iter().map(|(_, record)| record).collect();
    let expected: Vec<_> = (0..count).map(keyed_record).collect();
    assert_eq!(values, expected);
}

#[test]
fn idempotent_producer_keeps_order_and_stores_once_across_kill_9() {
    let mut broker = Broker::start("producer-kill9", 1);
    let topic = "survivor";
    create_topic(&broker, topic, 1);
    let (deliveries, callback) = collector();
    let config = ProducerConfig {
        idempotence: true,
        batch_bytes: 1024,
        linger: Duration::from_millis(1),
        retries_max: 100,
        retry_backoff: Duration::from_millis(50),
        retry_backoff_max: Duration::from_millis(500),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr.to_string(), config, callback).unwrap();
    let count = 6_000u64;
    for index in 0..count {
        producer
            .send(topic, Some(0), keyed_record(index), index)
            .unwrap();
        if index == count / 2 {
            // Wait for some acknowledgements, then kill the broker with batches in flight.
            let deadline = Instant::now() + Duration::from_secs(20);
            while deliveries.lock().unwrap().is_empty() {
                assert!(Instant::now() < deadline, "no acknowledgement");
                std::thread::sleep(Duration::from_millis(5));
            }
            broker.kill_and_restart();
        }
    }
    producer.flush();
    let stats = producer.stats();
    producer.close();
    let deliveries = deliveries.lock().unwrap().clone();
    let mut acknowledged = 0;
    for (_, result, tags) in &deliveries {
        assert!(result.is_ok(), "{result:?}");
        acknowledged += tags.len() as u64;
    }
    assert_eq!(acknowledged, count);
    let stored: Vec<_> = read_partition(&broker, topic, 0)
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    let expected: Vec<_> = (0..count).map(keyed_record).collect();
    assert_eq!(stored.len(), expected.len(), "stats {stats:?}");
    assert!(
        stats.resends > 0,
        "the kill made batches go again: {stats:?}"
    );
    assert!(stored == expected, "records stored once and in order");
}
