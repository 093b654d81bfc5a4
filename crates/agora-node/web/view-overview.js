// The network at a glance: chain tip and finality, validators, providers, slashes, recent
// blocks and ledger activity.

import { get } from './api.js';
import { lineChart } from './chart.js';
import { chip, facts, h, link, section, table } from './dom.js';
import { account, ago, amount, block, duration, providerState, short } from './fmt.js';
import { live } from './live.js';

export const topics = ['providers', 'validators', 'market', 'slashes', 'jobs'];
export const liveRender = true;

export async function load() {
  const [status, validators, providers, orders, audits] = await Promise.all([
    get('/api/v1/status'),
    get('/api/v1/validators'),
    get('/api/v1/providers'),
    get('/api/v1/orders?limit=1000'),
    get('/api/v1/audits?limit=1000'),
  ]);
  return { status, validators, providers, orders, audits };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function chainPanel({ status }) {
  const lat = live.latencies.map((l) => l.ms);
  const gaps = live.blocks.slice(0, -1).map((b, i) => b.timestamp_ms - live.blocks[i + 1].timestamp_ms);
  const s = status.supply;
  return section('Chain',
    facts([
      ['Chain', status.chain_id],
      ['Finalized height', h('span', { id: 'height' }, String(Math.max(live.height, status.height)))],
      ['Finality latency', lat.length ? `${duration(lat[lat.length - 1])} (median ${duration(median(lat))} of ${lat.length})` : 'waiting for a live block'],
      ['Block interval', gaps.length ? `${duration(gaps.reduce((a, b) => a + b, 0) / gaps.length)} average` : '—'],
      ['Mempool', `${status.mempool_txs} pending transactions`],
      ['Supply', `${amount(s.minted)} minted · ${amount(s.burned)} burned · ${amount(s.escrow)} in escrow`],
    ]),
    lat.length > 1 ? lineChart({
      series: [{ name: 'finality latency (ms)', cls: 's0', points: live.latencies.map((l) => ({ x: l.height, y: l.ms })) }],
      xLabel: 'height', yLabel: 'ms', height: 160,
    }) : null);
}

function validatorsPanel({ status, validators }) {
  const proposed = new Map();
  live.blocks.forEach((b) => proposed.set(b.proposer, (proposed.get(b.proposer) ?? 0) + 1));
  const rows = validators.map((v) => ({
    attrs: { 'data-validator': v.id },
    cells: [account(v.id), amount(v.stake), status.committee.includes(v.id) ? chip('committee', 'settled') : chip('standby', 'off'),
      v.jailed_until > status.height ? chip(`jailed until #${v.jailed_until}`, 'fraud') : '—',
      String(proposed.get(v.id) ?? 0)],
  }));
  return section(`Validators (${validators.length})`,
    table(['Account', 'Stake', 'Role', 'Jailed', `Proposed (last ${live.blocks.length})`], rows));
}

function providersPanel({ status, providers, orders }) {
  const asks = new Map();
  for (const o of orders) if (o.side === 'ask') asks.set(o.provider, [...(asks.get(o.provider) ?? []), o]);
  const rows = providers.map((p) => {
    const { profile: pr, trust: t } = p;
    const hw = pr.hardware;
    const st = providerState(p, status.height);
    const ask = (asks.get(p.id) ?? []).map((o) => `${o.class}: ${amount(o.min_unit_price)} × ${o.quantity}`);
    return {
      attrs: { 'data-provider': p.id },
      cells: [account(p.id), chip(st.text, st.kind), pr.region,
        `${pr.carbon_g_per_kwh} g/kWh`,
        h('span', { title: `benchmark ${hw.benchmark_score}` },
          `${hw.cpu_model}, ${hw.cores} cores, ${Math.round(hw.memory_mib / 1024)} GiB${hw.gpus.length ? `, ${hw.gpus.length} GPU` : ''}`),
        pr.classes.join(', '), pr.kinds.join(', '),
        `${pr.price_policy.mode} ${amount(pr.price_policy.price)}`,
        ask.length ? ask.join('; ') : '—',
        amount(p.collateral),
        h('span', { title: `streak ${t.clean_streak}, inconclusive ${t.audits_inconclusive}, forced audits ${t.forced_audits}` },
          `${t.leases_settled} settled · ${t.leases_failed} failed · ${t.audits_passed} audits passed · ${t.frauds} frauds`),
        amount(p.earned), block(p.last_seen)],
    };
  });
  return section(`Providers (${providers.length})`,
    table(['Account', 'State', 'Region', 'Carbon', 'Hardware', 'Classes', 'Kinds', 'Price policy', 'Open asks (price × device-s)',
      'Collateral', 'Trust record', 'Earned', 'Last seen'], rows));
}

function slashesPanel({ status, validators, providers, audits }) {
  const byId = new Map(providers.map((p) => [p.id, p]));
  const frauds = audits.filter((a) => a.outcome === 'fraud').map((a) => [
    'provider', account(a.provider), link(`lease/${a.lease}`, `lease ${a.lease}`),
    `audit ${a.id}: ${a.assignments.filter((x) => x.verdict === false).length} of ${a.assignments.length} auditors failed it`,
    byId.get(a.provider)?.ejected_until > status.height ? `ejected until #${byId.get(a.provider).ejected_until}` : 'ejection over',
  ]);
  const jailed = validators.filter((v) => v.jailed_until > 0).map((v) => [
    'validator', account(v.id), '—', 'consensus fault', `jailed until #${v.jailed_until}`,
  ]);
  return section('Slashes', table(['Who', 'Account', 'Lease', 'Why', 'Consequence'], [...frauds, ...jailed], 'No one has been slashed.'));
}

function blocksPanel() {
  return section('Recent blocks', table(['Height', 'Time', 'Txs', 'Events', 'Proposer', 'Digest'],
    live.blocks.slice(0, 12).map((b) => [block(b.height), ago(b.timestamp_ms), String(b.txs), String(b.events), account(b.proposer), short(b.digest)])));
}

function describe(e) {
  const { event, ...rest } = e;
  return Object.entries(rest).map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.length}]` : typeof v === 'string' && v.length === 64 ? `${v.slice(0, 8)}…` : JSON.stringify(v)}`).join(' ');
}

function activityPanel() {
  return section('Ledger activity (live)', table(['Height', 'Event', 'Details'],
    live.events.map(({ height, event }) => [block(height), chip(event.event.replaceAll('_', ' '), /slashed/.test(event.event) ? 'fraud' : 'off'), describe(event)]),
    'No ledger events since this page opened.'));
}

export function render(data) {
  return h('div', { class: 'grid' }, chainPanel(data), blocksPanel(), validatorsPanel(data), providersPanel(data),
    slashesPanel(data), activityPanel());
}
