// KafkaJS idempotent producer against a Sluice broker: InitProducerId, then sequenced batches.
//
// Usage: node idempotent.js BOOTSTRAP TOPIC PARTITIONS COUNT
// Sends COUNT records (value "seq=<i>", partition i % PARTITIONS) in batches of 100 with
// acks=-1, prints "progress <n>" after each batch and {"sent": COUNT} at the end on stdout; the
// Python test reads the records back (and may restart the broker in between).
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, partitionsText, countText] = process.argv.slice(2);
const partitions = Number(partitionsText);
const count = Number(countText);
const watchdog = setTimeout(() => {
  console.error('idempotent.js: timed out');
  process.exit(3);
}, 60_000);

async function main() {
  const kafka = new Kafka({
    clientId: 'sluice-e2e-idempotent',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  // KafkaJS allows one request in flight for an idempotent producer.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  for (let first = 0; first < count; first += 100) {
    const messages = [];
    for (let i = first; i < Math.min(first + 100, count); i++) {
      messages.push({ value: `seq=${i}`, partition: i % partitions });
    }
    await producer.send({ topic, acks: -1, messages });
    process.stdout.write(`progress ${first + messages.length}\n`);
  }
  await producer.disconnect();
  process.stdout.write(JSON.stringify({ sent: count }) + '\n');
}

main()
  .then(() => clearTimeout(watchdog))
  .catch((error) => {
    console.error('idempotent.js failed:', error && error.stack ? error.stack : error);
    process.exit(1);
  });
