// Entry point: finds the chain, starts the live stream, and renders the view named by the
// URL hash (#/, #/market, #/jobs, #/job/12, #/sessions, #/session/4, #/governance, #/block/5,
// #/tx/…, #/account/…, #/lease/3), re-rendering when the stream says its objects changed.

import { chainOrigin, connect, get } from './api.js';
import { h } from './dom.js';
import { duration } from './fmt.js';
import { live, start, subscribe } from './live.js';
import { accountView, blockView, leaseView, searchRoute, txView } from './view-explorer.js';
import * as governance from './view-governance.js';
import * as job from './view-job.js';
import * as jobs from './view-jobs.js';
import * as market from './view-market.js';
import * as overview from './view-overview.js';
import * as sessions from './view-sessions.js';

const VIEWS = {
  '': overview, market, jobs, job, governance, sessions: sessions.list, session: sessions.one,
  block: blockView, tx: txView, account: accountView, lease: leaseView,
};

/** Views also reload this often, for changes no event announces (e.g. provider heartbeats). */
const RELOAD_MS = 15_000;

const main = document.getElementById('main');
const tip = document.getElementById('tip');
const notice = document.getElementById('notice');
let current = { gen: 0 };
let loading = false;
let again = false;

function route() {
  const [name = '', arg] = location.hash.replace(/^#\/?/, '').split('/');
  return { name, arg: arg && decodeURIComponent(arg), view: VIEWS[name] };
}

function showError(e) {
  main.replaceChildren(h('section', { class: 'error' }, h('h2', {}, 'Cannot show this page'), h('p', {}, e.message)));
}

/** Loads and renders the current route; `quiet` keeps the old page until the new one is ready. */
async function render(quiet = false) {
  const { name, arg, view } = route();
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === name));
  const gen = current.gen + 1;
  current = { gen, view, arg, data: null, loadedAt: Date.now() };
  if (!view) return showError(new Error(`no page called "${name}"`));
  if (!quiet) main.replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
  loading = true;
  try {
    const data = await view.load(arg);
    if (gen !== current.gen) return;
    Object.assign(current, { data, loadedAt: Date.now() });
    main.replaceChildren(view.render(data, arg));
  } catch (e) {
    if (gen === current.gen) showError(e);
  } finally {
    if (gen === current.gen) loading = false;
  }
  if (again && gen === current.gen) {
    again = false;
    render(true);
  }
}

function renderTip() {
  const lat = live.latencies[live.latencies.length - 1];
  tip.replaceChildren(
    h('span', { class: `dot ${live.connected ? 'on' : 'off'}`, title: live.connected ? 'live' : 'reconnecting' }),
    live.height ? `#${live.height}` : '…',
    lat ? ` · finality ${duration(lat.ms)}` : '',
  );
}

/** Reloads the page when its objects changed (one load at a time), or re-renders live parts. */
function onChange(topics) {
  renderTip();
  const { view, data, arg, loadedAt } = current;
  if (!view) return;
  if (Date.now() - loadedAt > RELOAD_MS || view.topics.some((t) => topics.has(t))) {
    if (loading) again = true;
    else render(true);
  } else if (view.liveRender && data) {
    main.replaceChildren(view.render(data, arg));
  }
}

document.getElementById('search').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.q;
  try {
    location.hash = `#/${await searchRoute(input.value)}`;
    input.value = '';
  } catch (e) {
    showError(e);
  }
});

async function boot() {
  try {
    const node = await connect();
    if (chainOrigin() !== location.origin) {
      notice.hidden = false;
      notice.replaceChildren(`This node (${node.name}, ${node.roles.join(', ')}) does not run the chain; showing the chain of its upstream `,
        h('a', { href: chainOrigin() }, chainOrigin()), '.');
    }
    const status = await get('/api/v1/status');
    start(Math.max(1, status.height - 23), status.height);
  } catch (e) {
    tip.textContent = 'offline';
    return showError(e);
  }
  subscribe(onChange);
  window.addEventListener('hashchange', () => render());
  render();
}

boot();
