// The order book and clearing-price history of every resource class.

import { get } from './api.js';
import { lineChart } from './chart.js';
import { facts, h, link, section, table } from './dom.js';
import { account, ago, amount, block } from './fmt.js';

export const topics = ['market', 'providers'];

export async function load() {
  const [market, orders] = await Promise.all([get('/api/v1/market'), get('/api/v1/orders?limit=1000')]);
  return { market, orders };
}

function classPanel(m, orders) {
  const asks = orders.filter((o) => o.side === 'ask' && o.class === m.class)
    .sort((a, b) => Number(a.min_unit_price) - Number(b.min_unit_price));
  const bids = orders.filter((o) => o.side === 'bid' && o.class === m.class)
    .sort((a, b) => Number(b.max_unit_price) - Number(a.max_unit_price));
  const last = m.recent[m.recent.length - 1];
  const chart = m.recent.length ? lineChart({
    series: [
      { name: 'buyer price', cls: 's0', points: m.recent.map((c) => ({ x: c.height, y: Number(c.buyer_price) })) },
      { name: 'seller price', cls: 's1', points: m.recent.map((c) => ({ x: c.height, y: Number(c.seller_price) })) },
    ],
    xLabel: 'height', yLabel: 'price / device-s', format: (y) => amount(Math.round(y)),
  }) : h('p', { class: 'empty' }, 'This class has not cleared yet.');
  return section(`Class ${m.class}`,
    h('div', { 'data-class': m.class },
      facts([
        ['Best ask', amount(m.best_ask)],
        ['Best bid', amount(m.best_bid)],
        ['Offered / wanted', `${m.offered} / ${m.wanted} device-s`],
        ['Last clearing', last ? h('span', {}, `${amount(last.buyer_price)} (buyers) / ${amount(last.seller_price)} (sellers) at `, block(last.height)) : '—'],
        ['Traded ever', `${m.total_volume} device-s`],
      ]),
      h('h3', {}, `Clearing prices (last ${m.recent.length})`), chart,
      h('div', { class: 'cols' },
        h('div', {}, h('h3', {}, `Asks (${asks.length})`), table(['Order', 'Provider', 'Price', 'Device-s', 'Expires'],
          asks.map((o) => [String(o.id), account(o.provider), amount(o.min_unit_price), String(o.quantity), ago(o.expiry_ms)]), 'No asks.')),
        h('div', {}, h('h3', {}, `Bids (${bids.length})`), table(['Order', 'Job', 'Price', 'Device-s', 'Escrow'],
          bids.map((o) => [String(o.id), link(`job/${o.job}`, `job ${o.job} / shard ${o.shard}`), amount(o.max_unit_price), String(o.quantity), amount(o.escrow)]), 'No bids.')))));
}

export function render({ market, orders }) {
  if (market.length === 0) return section('Market', h('p', { class: 'empty' }, 'No resource class has orders or history yet.'));
  return h('div', { class: 'grid' }, market.map((m) => classPanel(m, orders)));
}
