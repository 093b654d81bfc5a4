// Serving sessions: each with its terms, escrow and providers; one session with its
// providers' committed windows, what they charged, their audits, and the receipt challenges on
// them.

import { get } from './api.js';
import { chip, facts, h, link, section, table } from './dom.js';
import { account, ago, amount } from './fmt.js';

const topics = ['sessions'];

/** A member's state: serving, left (it left or was dismissed), or convicted (removed). */
const memberState = (m) =>
  m.removed ? chip('convicted', 'fraud') : m.left_ms != null ? chip('left', 'settled') : chip('serving', 'active');

/** A session's state: open (serving or taking its last windows), closed, final. */
const sessionState = (s) => chip(s.status === 'open' && s.until_ms < Date.now() ? 'ending' : s.status, s.status === 'open' ? 'running' : 'settled');

/** A window's audit: the receipts replayed, by whom, and the outcome; '—' if the draw passed it by. */
function windowAudit(w, audits) {
  const a = w.audit === null || w.audit === undefined ? undefined : audits.get(w.audit);
  if (!a) return w.audit == null ? '—' : `audit ${w.audit}`;
  return h('span', { 'data-audit': a.id }, `audit ${a.id} · ${a.items.length} replayed by `,
    h('span', {}, a.assignments.filter((x) => !x.replaced).map((x) => [account(x.auditor), ' '])),
    a.outcome ? chip(a.outcome, a.outcome) : chip('open', 'audit'));
}

const rates = (r) => `${amount(r.prompt_per_1k)} / ${amount(r.completion_per_1k)} per 1k tokens · ${amount(r.per_item)} per item`;

export const list = {
  topics,
  async load() {
    return get('/api/v1/sessions?limit=200');
  },
  render(sessions) {
    const rows = sessions.map((s) => ({
      attrs: { 'data-session': s.id },
      cells: [link(`session/${s.id}`, `session ${s.id}`), sessionState(s), s.terms.kind, s.terms.class,
        account(s.requester), h('span', {}, s.members.map((m) => [account(m.provider), ' ', memberState(m), ' '])),
        amount(s.terms.escrow), amount(s.paid), ago(s.until_ms)],
    }));
    return section(`Serving sessions (${sessions.length})`,
      table(['Session', 'State', 'Kind', 'Class', 'Requester', 'Providers', 'Escrow', 'Paid', 'Serves until'], rows,
        'No sessions yet (the gateway opens one on its first /v1 request when [gateway.session] is set).'));
  },
};

export const one = {
  topics,
  async load(id) {
    const d = await get(`/api/v1/sessions/${id}`);
    const ids = d.windows.map((w) => w.audit).filter((a) => a !== null && a !== undefined);
    d.audits = new Map((await Promise.all(ids.map((a) => get(`/api/v1/audits/${a}`)))).map((a) => [a.id, a]));
    return d;
  },
  render(d) {
    const s = d.session;
    const members = s.members.map((m) => [account(m.provider), memberState(m), String(m.next_seq), amount(m.charged),
      String(m.held), amount(m.reserved)]);
    const windows = d.windows.map((w) => ({
      attrs: { 'data-window': `${w.provider}/${w.first_seq}` },
      cells: [account(w.provider), `${w.first_seq}–${w.first_seq + w.commitment.receipts - 1}`, chip(w.status, w.status === 'refunded' ? 'fraud' : w.status === 'held' ? 'audit' : 'settled'),
        amount(w.charge), `#${w.committed_height}`, windowAudit(w, d.audits), String(w.challenges.length)],
    }));
    return h('div', {},
      section(`Session ${d.id}`, facts([
        ['State', sessionState(s)], ['Kind', s.terms.kind], ['Model', h('span', { class: 'mono' }, s.terms.model)],
        ['Class', s.terms.class], ['Requester', account(s.requester)], ['Prices', rates(s.terms.rates)],
        ['Escrow', `${amount(s.escrow)} held of ${amount(s.terms.escrow)} (${amount(s.committed)} in unpaid windows)`],
        ['Paid to providers', amount(s.paid)], ['Serves until', ago(s.until_ms)],
      ])),
      section('Providers', table(['Provider', 'State', 'Receipts committed', 'Charged', 'Unpaid windows', 'Collateral reserved'], members)),
      section(`Windows (${windows.length})`, table(['Provider', 'Receipts', 'Status', 'Charge', 'Committed', 'Audit', 'Challenges'], windows,
        'No window committed yet.')));
  },
};
