// The explorer: blocks, transactions, accounts and leases, reached from links and the search box.

import { ApiError, get, url } from './api.js';
import { chip, facts, h, link, section, table } from './dom.js';
import { account, ago, amount, block, leaseStatus, ppm, short } from './fmt.js';

const eventText = (e) => {
  const { event, ...rest } = e;
  return h('span', {}, chip(event.replaceAll('_', ' '), /slashed|failed/.test(event) ? 'fraud' : 'off'), ' ', JSON.stringify(rest));
};

/** `#/block/H` */
export const blockView = {
  topics: [],
  load: (height) => get(`/api/v1/blocks/${height}`),
  render(r) {
    const hd = r.block.header;
    const receipts = r.receipts.map((rc, i) => [link(`tx/${rc.tx}`, short(rc.tx)), account(rc.sender),
      r.block.txs[i].tx.payload.type, amount(r.block.txs[i].tx.fee), rc.ok ? chip('ok', 'settled') : chip(rc.error, 'fraud'),
      h('div', {}, rc.events.map((e) => h('div', {}, eventText(e))))]);
    return h('div', { class: 'grid' },
      section(`Block #${hd.height}`, h('p', {}, hd.height > 1 ? link(`block/${hd.height - 1}`, '← previous') : null, hd.height > 1 ? ' · ' : null,
        link(`block/${hd.height + 1}`, 'next →'), ' · ', h('a', { href: url(`/api/v1/blocks/${hd.height}/finalization`) }, 'finalization certificate')),
      facts([
        ['Digest', short(r.digest)], ['Time', `${new Date(hd.timestamp_ms).toISOString()} (${ago(hd.timestamp_ms)})`],
        ['Proposer', account(hd.proposer)], ['Parent', short(hd.parent)], ['Seed', short(hd.seed)],
        ['State root (after the parent)', short(hd.state_root)], ['State root after this block', short(r.state_root)],
        ['Transactions', String(r.block.txs.length)], ['Evidence', String(r.block.evidence.length)],
      ])),
      section('Transactions', table(['Tx', 'Sender', 'Type', 'Fee', 'Result', 'Events'], receipts, 'No transactions.')),
      section('Block events', table(['Event'], r.events.map((e) => [eventText(e)]), 'No block events.')));
  },
};

/** `#/tx/HASH` */
export const txView = {
  topics: ['chain'],
  load: async (id) => {
    const st = await get(`/api/v1/txs/${id}`);
    const b = st.status === 'finalized' ? await get(`/api/v1/blocks/${st.height}`) : null;
    return { id, st, tx: b?.block.txs[st.index] };
  },
  render({ id, st, tx }) {
    if (st.status !== 'finalized') return section(`Transaction ${id.slice(0, 16)}…`, h('p', {}, `Status: ${st.status}.`));
    return section(`Transaction ${id.slice(0, 16)}…`, facts([
      ['Status', st.receipt.ok ? chip('finalized', 'settled') : chip(`failed: ${st.receipt.error}`, 'fraud')],
      ['Block', h('span', {}, block(st.height), ` position ${st.index}`)],
      ['Sender', account(tx.tx.sender)], ['Nonce', String(tx.tx.nonce)], ['Fee', amount(tx.tx.fee)],
      ['Payload', h('pre', {}, JSON.stringify(tx.tx.payload, null, 2))],
      ['Events', h('div', {}, st.receipt.events.map((e) => h('div', {}, eventText(e))))],
    ]));
  },
};

/** `#/account/ID` */
export const accountView = {
  topics: ['chain'],
  load: async (id) => {
    const [a, jobs, leases] = await Promise.all([get(`/api/v1/accounts/${id}`),
      get(`/api/v1/jobs?account=${id}&limit=50`), get(`/api/v1/leases?account=${id}&limit=50`)]);
    return { a, jobs, leases };
  },
  render({ a, jobs, leases }) {
    return h('div', { class: 'grid' },
      section('Account', facts([
        ['Id', h('span', { class: 'mono' }, a.account)], ['Balance', amount(a.state.balance)], ['Nonce', String(a.state.nonce)],
        ['Validator stake', a.validator ? amount(a.validator.stake) : '—'],
        ['Provider', a.provider ? `${a.provider.profile.region}, collateral ${amount(a.provider.collateral)}, earned ${amount(a.provider.earned)}` : '—'],
        ['As of', block(a.height)],
      ])),
      section('Jobs', table(['Job', 'Kind', 'Shards', 'Submitted'],
        jobs.map((j) => [link(`job/${j.id}`, `job ${j.id}`), j.manifest.params.kind, String(j.shards.length), block(j.submitted_height)]), 'No jobs.')),
      section('Leases', table(['Lease', 'Job', 'Role', 'Status', 'Price'],
        leases.map((l) => [link(`lease/${l.id}`, String(l.id)), link(`job/${l.job}`, `job ${l.job}`),
          l.provider === a.account ? 'provider' : 'requester', leaseStatus(l), amount(l.buyer_price)]), 'No leases.')));
  },
};

/** `#/lease/ID` */
export const leaseView = {
  topics: ['jobs'],
  load: (id) => get(`/api/v1/leases/${id}`).then((l) => ({ id, l })),
  render({ id, l }) {
    const v = l.verification;
    return section(`Lease ${id}`, facts([
      ['Job', link(`job/${l.job}`, `job ${l.job}, shard ${l.shard}`)], ['Status', chip(leaseStatus(l), typeof l.status === 'string' ? l.status : 'fraud')],
      ['Provider', account(l.provider)], ['Requester', account(l.requester)], ['Class', l.class],
      ['Device-s', String(l.quantity)], ['Price buyer / seller', `${amount(l.buyer_price)} / ${amount(l.seller_price)}`],
      ['Escrow held', amount(l.escrow)], ['Started', block(l.start_height)], ['Deadline', ago(l.deadline_ms)],
      ['Commitment', l.commitment ? h('span', {}, short(l.commitment.root), ` (${l.commitment.item_count} items) at `, block(l.committed_height)) : '—'],
      ['Audit', `${ppm(v.audit_ppm)} chance, ${v.sample} items → ${ppm(v.detection_ppm)} detection; ${v.audited ? `audited (audit ${l.audit ?? 'pending'})` : 'not audited'}`],
      ['Settlement', l.settlement ? h('span', {}, `provider ${amount(l.settlement.provider_paid)}, auditors ${amount(l.settlement.auditors_paid)}, refund ${amount(l.settlement.requester_refund)}, burned ${amount(l.settlement.burned)} at `, block(l.settlement.height)) : '—'],
    ]));
  },
};

/** Where a search leads: a height, a transaction (if the node knows it) or an account. */
export async function searchRoute(q) {
  const s = q.trim().toLowerCase();
  if (/^\d+$/.test(s)) return `block/${s}`;
  if (!/^[0-9a-f]{64}$/.test(s)) throw new ApiError(400, 'search for a block height, a transaction hash or an account (64 hex digits)');
  const tx = await get(`/api/v1/txs/${s}`);
  return tx.status === 'unknown' ? `account/${s}` : `tx/${s}`;
}
