// KafkaJS against a Sluice broker: create a topic, produce keyed records with headers and
// timestamps (acks=all), and read the partition offsets back with the admin client.
//
// Usage: node roundtrip.js BOOTSTRAP TOPIC PARTITIONS COUNT
// Prints one JSON object on stdout: {created, sent: [...], results: [...], offsets: [...]}.
// KafkaJS's consumer needs consumer groups, so the Python test reads the records back with
// another client and compares them with `sent`.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, partitionsText, countText] = process.argv.slice(2);
if (!bootstrap || !topic || !partitionsText || !countText) {
  console.error('usage: node roundtrip.js BOOTSTRAP TOPIC PARTITIONS COUNT');
  process.exit(2);
}
const partitions = Number(partitionsText);
const count = Number(countText);
const baseTimestampMs = 1_600_000_000_000;

// The whole script is bounded: the Python test also has a timeout, this gives a clearer message.
const watchdog = setTimeout(() => {
  console.error('roundtrip.js: timed out');
  process.exit(3);
}, 60_000);

function message(i) {
  return {
    key: `js-key-${i}`,
    value: `js-value-${i}-${'x'.repeat(i % 7)}`,
    headers: { lib: 'kafkajs', seq: String(i) },
    timestamp: String(baseTimestampMs + i * 7),
    partition: i % partitions,
  };
}

async function main() {
  const kafka = new Kafka({
    clientId: 'sluice-e2e-kafkajs',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
  });

  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 10000,
  });
  const listed = await admin.listTopics();
  if (!listed.includes(topic)) throw new Error(`listTopics lacks ${topic}: ${JSON.stringify(listed)}`);

  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();
  const sent = [];
  const results = [];
  // Two sends, so that the second continues the offsets of the first.
  for (const [first, last] of [[0, Math.floor(count / 2)], [Math.floor(count / 2), count]]) {
    const messages = [];
    for (let i = first; i < last; i++) messages.push(message(i));
    const metadata = await producer.send({ topic, acks: -1, timeout: 10000, messages });
    sent.push(...messages);
    results.push(...metadata);
  }
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(topic);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  await admin.disconnect();

  process.stdout.write(JSON.stringify({ created, sent, results, offsets, metadata }) + '\n');
}

main()
  .then(() => {
    clearTimeout(watchdog);
  })
  .catch((error) => {
    console.error('roundtrip.js failed:', error && error.stack ? error.stack : error);
    process.exit(1);
  });
