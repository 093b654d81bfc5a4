// Follows finalized blocks on the event stream (/api/v1/events), reconnecting with `?from=`
// so no block is missed, and tells subscribers which kinds of objects changed.

import { url } from './api.js';

const KEEP_BLOCKS = 24;
const KEEP_EVENTS = 40;
const KEEP_LATENCIES = 90;

/** What the stream has shown so far. */
export const live = {
  connected: false,
  height: 0,
  /** Recent blocks, newest first: {height, digest, timestamp_ms, proposer, txs, events}. */
  blocks: [],
  /** Finality latency of live blocks: {height, ms} (arrival here minus the header timestamp). */
  latencies: [],
  /** Recent ledger events, newest first: {height, event}. */
  events: [],
};

// Event name prefixes → topics views subscribe to.
const TOPICS = [
  [/^provider_/, 'providers'],
  [/^(ask_|bid_|order_|cleared)/, 'market'],
  [/^(job_|lease_|shard_|bid_|result_|audit_|key_)/, 'jobs'],
  [/^(proposal_|vote)/, 'governance'],
  [/^(session_|window_|receipt_|challenge_|serving_|audit_)/, 'sessions'],
  [/^(bonded|unlocking|released|committee_|validator_)/, 'validators'],
  [/slashed$/, 'slashes'],
];

const listeners = new Set();
const waiters = [];
let pending = new Set();
let flushTimer = null;
let liveFrom = Infinity;

/** Calls `fn(topics)` (a Set, always containing 'chain') at most once a second; returns an unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Resolves once block `height` is finalized. */
export function waitFor(height) {
  return height <= live.height ? Promise.resolve() : new Promise((resolve) => waiters.push({ height, resolve }));
}

function changed(topics) {
  topics.forEach((t) => pending.add(t));
  if (flushTimer) return;
  flushTimer = setTimeout(() => {
    flushTimer = null;
    const ts = pending;
    pending = new Set();
    listeners.forEach((fn) => fn(ts));
  }, 1000);
}

function onBlock(record) {
  const header = record.block.header;
  const events = [...record.receipts.flatMap((r) => r.events), ...record.events];
  live.height = header.height;
  live.blocks.unshift({
    height: header.height,
    digest: record.digest,
    timestamp_ms: header.timestamp_ms,
    proposer: header.proposer,
    txs: record.block.txs.length,
    events: events.length,
  });
  live.blocks.length = Math.min(live.blocks.length, KEEP_BLOCKS);
  if (header.height >= liveFrom) {
    live.latencies.push({ height: header.height, ms: Math.max(0, Date.now() - header.timestamp_ms) });
    if (live.latencies.length > KEEP_LATENCIES) live.latencies.shift();
  }
  const topics = new Set(['chain']);
  for (const e of events) {
    for (const [re, topic] of TOPICS) if (re.test(e.event)) topics.add(topic);
    if (e.event !== 'fee_burned') live.events.unshift({ height: header.height, event: e });
  }
  live.events.length = Math.min(live.events.length, KEEP_EVENTS);
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (waiters[i].height <= live.height) waiters.splice(i, 1)[0].resolve();
  }
  changed(topics);
}

/** Streams from `from` (older blocks fill the recent lists; blocks after `tip` count as live). */
export function start(from, tip) {
  liveFrom = tip + 1;
  let retry = 500;
  const open = (next) => {
    const es = new EventSource(url(`/api/v1/events?from=${next}`));
    es.addEventListener('open', () => {
      live.connected = true;
      retry = 500;
      changed(['chain']);
    });
    es.addEventListener('block', (m) => onBlock(JSON.parse(m.data)));
    es.addEventListener('error', () => {
      // Reconnect ourselves from the next height (a plain EventSource retry would replay from `from`).
      es.close();
      live.connected = false;
      changed(['chain']);
      setTimeout(() => open(Math.max(next, live.height + 1)), retry);
      retry = Math.min(retry * 2, 10_000);
    });
  };
  open(from);
}
