// Formatting of chain values, and the job life-cycle rules shared by the views (the node's
// /metrics `agora_jobs{state}` follows the same rules, in src/api/metrics.rs).

import { h, link } from './dom.js';

/** The first 8 hex digits of a hash or account, with the full value as a tooltip. */
export const short = (hex) => (hex ? h('span', { class: 'mono', title: hex }, `${hex.slice(0, 8)}…`) : '—');

/** An account, linked to its explorer page. */
export const account = (id) => (id ? link(`account/${id}`, short(id)) : '—');

/** A block height, linked to its explorer page. */
export const block = (height) => link(`block/${height}`, `#${height}`);

/** A decimal amount string (base units, may exceed 2^53) with thousands separators. */
export const amount = (s) => (s === null || s === undefined ? '—' : String(s).replace(/\B(?=(\d{3})+(?!\d))/g, ','));

/** Parts per million as a percentage. */
export const ppm = (x) => `${(x / 1e4).toFixed(x % 10000 === 0 ? 0 : 1)} %`;

/** Milliseconds as a short duration. */
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** A unix-ms time relative to now. */
export const ago = (ms) => (ms > Date.now() ? `in ${duration(ms - Date.now())}` : `${duration(Date.now() - ms)} ago`);

/** A lease's status as text: `settled`, `failed: fraud`, ... */
export const leaseStatus = (l) => (typeof l.status === 'string' ? l.status : `failed: ${l.status.failed.replaceAll('_', ' ')}`);

/** The steps a job goes through, in order. */
export const PIPELINE = ['matching', 'running', 'audit', 'settled'];

/** Where one shard is: `matching`, `running`, `audit`, `settled` or `abandoned`. */
export function shardStage(shard, leases) {
  const s = shard.status;
  if (s.state === 'open') return 'matching';
  if (s.state === 'done') return 'settled';
  if (s.state === 'abandoned') return 'abandoned';
  const lease = leases.get(s.id);
  return !lease || lease.status === 'running' ? 'running' : 'audit';
}

/** Where a job is: its least advanced shard's stage; once finished, `settled` if every shard was paid. */
export function jobState(job, leases) {
  if (job.cancelled) return 'cancelled';
  const stages = job.shards.map((s) => shardStage(s, leases));
  if (job.finished) return stages.every((s) => s === 'settled') ? 'settled' : 'abandoned';
  return PIPELINE.find((p) => stages.includes(p)) ?? 'audit';
}

/** The pipeline with the current step marked. */
export function pipeline(state) {
  const at = PIPELINE.indexOf(state);
  return h('ol', { class: 'pipeline', 'data-state': state },
    PIPELINE.map((p, i) => h('li', { class: i < at ? 'past' : i === at ? 'now' : '' }, p)),
    at < 0 ? h('li', { class: 'now off' }, state) : null);
}

/** A provider's standing at `height`: ejected, slashed, inactive or active. */
export function providerState(p, height) {
  if (p.ejected_until > height) return { text: `ejected until #${p.ejected_until}`, kind: 'fraud' };
  if (p.trust.frauds > 0) return { text: `slashed ×${p.trust.frauds}`, kind: 'abandoned' };
  return p.active ? { text: 'active', kind: 'settled' } : { text: 'inactive', kind: 'off' };
}
