// Governance: proposals with their votes, and the protocol parameters they can change.

import { get } from './api.js';
import { chip, h, section, table } from './dom.js';
import { account, amount, block } from './fmt.js';

export const topics = ['governance'];

export async function load() {
  const [proposals, params] = await Promise.all([get('/api/v1/proposals?limit=1000'), get('/api/v1/params')]);
  return { proposals, params };
}

export function render({ proposals, params }) {
  const rows = proposals.map((p) => ({
    attrs: { 'data-proposal': p.id },
    cells: [String(p.id), account(p.proposer), p.description || '—',
      p.changes.map((c) => `${c.name} = ${c.value}`).join(', '),
      chip(p.status, p.status === 'passed' ? 'settled' : p.status === 'rejected' ? 'fraud' : 'audit'), block(p.end_height),
      h('span', {}, p.ballots.map((b) => h('span', { class: 'auditor' }, account(b.voter), ' ', chip(b.approve ? 'yes' : 'no', b.approve ? 'settled' : 'fraud')))),
      p.status === 'open' ? 'tallied at close' : `${amount(p.yes)} yes / ${amount(p.no)} no`],
  }));
  return h('div', { class: 'grid' },
    section(`Proposals (${proposals.length})`, table(['Id', 'Proposer', 'Description', 'Changes', 'Status', 'Closes', 'Votes', 'Stake'], rows,
      'No proposals yet (validators propose with: agora gov propose).')),
    section('Parameters', table(['Name', 'Value', 'Min', 'Max', 'Meaning'],
      params.map((p) => [h('code', {}, p.name), p.value ?? '—', p.min, p.max, p.doc]))));
}
