// One job as a receipt: terms, each shard's lease, provider, price and audit, the money, and
// state proofs checked against the finalized header that commits to them.

import { get } from './api.js';
import { chip, facts, h, link, section, table } from './dom.js';
import { account, amount, block, duration, jobState, leaseStatus, pipeline, ppm, shardStage, short } from './fmt.js';
import { waitFor } from './live.js';

export const topics = ['jobs'];

/** Most shards whose final lease gets a state proof on the page. */
const MAX_PROOFS = 16;

export async function load(id) {
  const [job, leaseList, providers] = await Promise.all([
    get(`/api/v1/jobs/${id}`),
    get(`/api/v1/leases?job=${id}&order=asc&limit=1000`),
    get('/api/v1/providers'),
  ]);
  const audits = await Promise.all(leaseList.filter((l) => l.audit !== null).map((l) => get(`/api/v1/audits/${l.audit}`)
    .then((a) => ({ id: l.audit, ...a }))));
  const done = job.shards.filter((s) => s.status.state === 'done').slice(0, MAX_PROOFS).map((s) => s.status.id);
  const proofs = await Promise.all([['job', id], ...done.map((l) => ['lease', l])]
    .map(([kind, key]) => get(`/api/v1/proofs/${kind}/${key}`).then((p) => ({ kind, key, ...p }))));
  return {
    id, job, proofs,
    leases: new Map(leaseList.map((l) => [l.id, l])),
    audits: new Map(audits.map((a) => [a.id, a])),
    providers: new Map(providers.map((p) => [p.id, p])),
  };
}

const sum = (xs) => xs.reduce((a, b) => a + BigInt(b), 0n).toString();

function shardRows({ job, leases, audits, providers }) {
  return job.shards.map((s, i) => {
    const spec = job.manifest.shards[i];
    const l = leases.get(s.history[s.history.length - 1]);
    const stage = shardStage(s, leases);
    if (!l) return [String(i), String(spec.item_count), String(spec.quantity), chip(stage), '—', '—', '—', '—', '—', '—', '—', '—'];
    const v = l.verification;
    const outcome = l.audit !== null ? audits.get(l.audit)?.outcome ?? 'open' : (l.commitment ? (v.audited ? 'pending' : 'not drawn') : '—');
    return [String(i), String(spec.item_count), String(spec.quantity), chip(stage),
      link(`lease/${l.id}`, `lease ${l.id}`),
      h('span', {}, account(l.provider), ` ${providers.get(l.provider)?.profile.region ?? ''}`),
      `${amount(l.buyer_price)} / ${amount(l.seller_price)}`,
      l.commitment ? duration(l.commitment.metering.wall_ms) : '—',
      l.commitment ? ppm(v.audit_ppm) : '—',
      l.commitment ? `${v.sample} items → ${ppm(v.detection_ppm)}` : '—',
      outcome === '—' ? '—' : chip(outcome, outcome),
      l.settlement ? amount(l.settlement.provider_paid) : '—'];
  });
}

function leaseRows({ leases }) {
  return [...leases.values()].map((l) => [link(`lease/${l.id}`, String(l.id)), String(l.shard), account(l.provider),
    chip(leaseStatus(l), typeof l.status === 'string' ? l.status : 'fraud'), block(l.start_height),
    l.commitment ? h('span', {}, short(l.commitment.root), ' at ', block(l.committed_height)) : '—',
    l.commitment ? `${duration(l.commitment.metering.wall_ms)}, fuel ${amount(l.commitment.metering.fuel)}` : '—',
    l.verification.audited ? `audit ${l.audit ?? 'pending'}` : '—',
    l.settlement ? `paid ${amount(l.settlement.provider_paid)}, refund ${amount(l.settlement.requester_refund)}` : '—']);
}

function auditRows({ audits }) {
  return [...audits.values()].map((a) => [String(a.id), link(`lease/${a.target.lease}`, `lease ${a.target.lease}`), `${a.items.length} items`,
    h('span', {}, a.assignments.map((x) => h('span', { class: 'auditor' }, account(x.auditor), ' ',
      x.replaced ? chip('replaced', 'off') : x.verdict === null ? chip('waiting', 'off') : chip(x.verdict ? 'pass' : 'fail', x.verdict ? 'settled' : 'fraud')))),
    a.escalated ? 'escalated to 3' : '—', a.outcome ? chip(a.outcome, a.outcome) : chip('open', 'audit')]);
}

/** A proof's row; the check against block height+1's header fills in once that block is final. */
function proofRow(p) {
  const check = h('span', { class: 'proof-check' }, `waiting for block #${p.height + 1}`);
  waitFor(p.height + 1)
    .then(() => get(`/api/v1/blocks/${p.height + 1}`))
    .then((b) => {
      const ok = b.block.header.state_root === p.root;
      check.replaceChildren(chip(ok ? `root matches block #${p.height + 1}` : `root differs from block #${p.height + 1}`, ok ? 'settled' : 'fraud'));
      check.dataset.verified = String(ok);
    })
    .catch((e) => check.replaceChildren(`cannot check: ${e.message}`));
  return [`${p.kind} ${p.key}`, p.value ? `value present (${p.value.length / 2} bytes)` : 'absent', block(p.height), short(p.root),
    `${p.proof.length / 2} bytes`, check];
}

export function render(data) {
  const { id, job, leases, proofs } = data;
  const m = job.manifest;
  const state = jobState(job, leases);
  const settled = [...leases.values()].filter((l) => l.settlement).map((l) => l.settlement);
  const failedRefunds = [...leases.values()].filter((l) => typeof l.status !== 'string').length;
  return h('div', { class: 'grid', 'data-job': id, 'data-state': state },
    section(`Job ${id}`, pipeline(state), facts([
      ['State', chip(state)],
      ['Requester', account(job.requester)],
      ['Kind / model', h('span', {}, `${m.params.kind} `, short(m.model))],
      ['Class', m.class],
      ['Shards', `${m.shards.length} (${m.shards.reduce((a, s) => a + s.item_count, 0)} items)`],
      ['Max price', `${amount(m.max_unit_price)} per device-second`],
      ['Verification', m.policy.mode],
      ['Constraints', Object.entries(m.constraints).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ') || 'none'],
      ['Inputs', m.encrypted ? 'encrypted' : 'plaintext'],
      ['Submitted', block(job.submitted_height)],
      ['Paid to providers', amount(sum(settled.map((s) => s.provider_paid)))],
      ['Paid to auditors', amount(sum(settled.map((s) => s.auditors_paid)))],
      ['Refunded', amount(sum(settled.map((s) => s.requester_refund)))],
      ['Burned', amount(sum(settled.map((s) => s.burned)))],
      ['Failed leases', String(failedRefunds)],
    ])),
    section('Shards', table(['Shard', 'Items', 'Device-s', 'Stage', 'Lease', 'Provider', 'Price buyer / seller', 'Run time',
      'Audit probability', 'Sample → detection', 'Audit', 'Paid'], shardRows(data))),
    section('Leases', table(['Lease', 'Shard', 'Provider', 'Status', 'Started', 'Commitment', 'Metering', 'Audit', 'Settlement'], leaseRows(data), 'Not matched yet.')),
    section('Audits', table(['Audit', 'Lease', 'Sample', 'Auditors', 'Escalation', 'Outcome'], auditRows(data), 'No audits yet.')),
    section('State proofs', h('p', {}, 'Proofs of the current ledger objects; each root must appear as the state root of the next finalized header.'),
      table(['Object', 'Value', 'At height', 'Root', 'Proof', 'Check'], proofs.map(proofRow))));
}
