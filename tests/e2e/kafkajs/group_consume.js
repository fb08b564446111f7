// A KafkaJS consumer group member against a Sluice broker: subscribe (fromBeginning), read COUNT
// records with eachMessage, commit the next offset of every partition it read, fetch the group's
// committed offsets with the admin client, and leave.
//
// Usage: node group_consume.js BOOTSTRAP TOPIC GROUP_ID COUNT
// Prints one JSON object on stdout: {messages: [{partition, offset, key, value}], joins: [...],
// committed: [{partition, offset, metadata}]}. The Python test checks it.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, groupId, countText] = process.argv.slice(2);
if (!bootstrap || !topic || !groupId || !countText) {
  console.error('usage: node group_consume.js BOOTSTRAP TOPIC GROUP_ID COUNT');
  process.exit(2);
}
const count = Number(countText);
const messages = [];
const joins = [];

const watchdog = setTimeout(() => {
  console.error(`group_consume.js: timed out with ${messages.length}/${count} messages; joins ${JSON.stringify(joins)}`);
  process.exit(3);
}, 60_000);

async function main() {
  const kafka = new Kafka({
    clientId: 'sluice-e2e-kafkajs-group',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
  });
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 6000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 100,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    joins.push({
      groupId: payload.groupId,
      memberId: payload.memberId,
      leaderId: payload.leaderId,
      isLeader: payload.isLeader,
      groupProtocol: payload.groupProtocol,
      memberAssignment: payload.memberAssignment,
    });
  });
  const crashes = [];
  let reached;
  let failed;
  const allRead = new Promise((resolve, reject) => {
    reached = resolve;
    failed = reject;
  });
  // A crash that KafkaJS does not restart from ends the wait with its error.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    crashes.push(String(payload.error));
    if (!payload.restart) failed(payload.error);
  });

  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      messages.push({
        partition,
        offset: Number(message.offset),
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString(),
      });
      if (messages.length >= count) reached();
    },
  });
  await allRead;

  const next = new Map();
  for (const m of messages) next.set(m.partition, Math.max(next.get(m.partition) || 0, m.offset + 1));
  await consumer.commitOffsets(
    [...next.entries()].map(([partition, offset]) => ({ topic, partition, offset: String(offset) })),
  );

  const admin = kafka.admin();
  await admin.connect();
  const fetched = await admin.fetchOffsets({ groupId, topics: [topic] });
  await admin.disconnect();
  await consumer.disconnect();

  const committed = fetched
    .filter((t) => t.topic === topic)
    .flatMap((t) => t.partitions)
    .map((p) => ({ partition: p.partition, offset: Number(p.offset), metadata: p.metadata }))
    .sort((a, b) => a.partition - b.partition);
  process.stdout.write(JSON.stringify({ messages, joins, committed, crashes }) + '\n');
}

main()
  .then(() => {
    clearTimeout(watchdog);
  })
  .catch((error) => {
    console.error('group_consume.js failed:', error && error.stack ? error.stack : error);
    process.exit(1);
  });
