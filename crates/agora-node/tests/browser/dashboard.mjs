// Drives a node's web dashboard in real headless Chromium (playwright-core, the system's
// /usr/bin/chromium) against a running devnet: the overview shows the validators and
// providers, the job submitted by the caller appears in the jobs list and reaches "settled"
// on its own page (with its state proofs checked against finalized headers), the explorer
// pages open, a provider-only node's dashboard shows the chain of its upstream, and no page
// logs a console error or throws. Screenshots of every page go to --out.
//
// With `--job -` the job id is read from standard input once the jobs page is open (the script
// prints a line "dashboard: ready for a job" first), and the job must then appear on that page
// as it is submitted, pushed by the live event stream with no reload.
//
// Run by crates/agora-node/tests/dashboard.rs; by hand:
//   npm ci --prefix crates/agora-node/tests/browser
//   node crates/agora-node/tests/browser/dashboard.mjs --url http://127.0.0.1:PORT \
//     --validators 4 --providers ID1,ID2 --job 1 --out /tmp/shots [--also PROVIDER_URL] [--timeout 180]
// Each option may also be given as an environment variable: DASHBOARD_URL, DASHBOARD_VALIDATORS,
// DASHBOARD_PROVIDERS, DASHBOARD_JOB, DASHBOARD_OUT, DASHBOARD_ALSO, DASHBOARD_TIMEOUT; the
// browser binary is $CHROMIUM (default /usr/bin/chromium). Exits 0 on success, 1 with a
// message on stderr on any failure.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const started = Date.now();
const log = (msg) => console.log(`[dashboard +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};

function options() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.DASHBOARD_URL },
      validators: { type: 'string', default: process.env.DASHBOARD_VALIDATORS },
      providers: { type: 'string', default: process.env.DASHBOARD_PROVIDERS },
      job: { type: 'string', default: process.env.DASHBOARD_JOB },
      out: { type: 'string', default: process.env.DASHBOARD_OUT },
      also: { type: 'string', default: process.env.DASHBOARD_ALSO ?? '' },
      timeout: { type: 'string', default: process.env.DASHBOARD_TIMEOUT ?? '180' },
    },
  });
  for (const k of ['url', 'validators', 'providers', 'job', 'out']) {
    if (!values[k]) fail(`missing --${k} (or DASHBOARD_${k.toUpperCase()})`);
  }
  const validators = Number(values.validators);
  const job = values.job === '-' ? null : Number(values.job);
  const timeoutS = Number(values.timeout);
  if (!Number.isInteger(validators) || validators < 1) fail(`--validators must be a positive integer, not ${values.validators}`);
  if (job !== null && !(Number.isInteger(job) && job >= 0)) fail(`--job must be a job id or -, not ${values.job}`);
  if (!(timeoutS > 0)) fail(`--timeout must be a number of seconds, not ${values.timeout}`);
  return {
    url: values.url.replace(/\/+$/, ''),
    validators,
    providers: values.providers.split(',').map((s) => s.trim()).filter(Boolean),
    job,
    out: values.out,
    also: values.also.split(',').map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean),
    timeoutMs: timeoutS * 1000,
  };
}

async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch (e) {
    fail(`cannot load playwright-core (${e.message}); install it with: npm ci --prefix crates/agora-node/tests/browser`);
  }
}

/** Everything a page reported that counts as an error. */
const problems = [];

/** Opens a page that records console errors, uncaught exceptions and failed requests. */
async function newPage(context, label) {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const where = m.location()?.url ? ` (${m.location().url}:${m.location().lineNumber})` : '';
      problems.push(`${label}: console error: ${m.text()}${where}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${label}: uncaught exception: ${e.stack ?? e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? 'failed';
    // An event stream or fetch cut short by the page's own navigation or closing is not an error.
    if (why !== 'net::ERR_ABORTED') problems.push(`${label}: request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${label}: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  return page;
}

/** Fails at once with the page's own explanation if it rendered its error panel. */
async function noErrorPanel(page, what) {
  const err = page.locator('section.error');
  if (await err.count()) fail(`${what}: the dashboard shows an error: ${(await err.first().innerText()).replace(/\s+/g, ' ')}`);
}

/** Waits for `target` (a selector or a locator) to show, or fails naming `what`. */
async function expectVisible(page, target, what, timeout = 30_000) {
  const locator = typeof target === 'string' ? page.locator(target) : target;
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    await noErrorPanel(page, what);
    fail(`${what}: ${target} did not appear within ${timeout / 1000} s`);
  }
}

/**
 * Polls `fn(arg)` in the page until it returns something truthy, or fails with `what`.
 * (Not `page.waitForFunction`: that compiles the predicate inside the page, which the
 * dashboard's Content-Security-Policy rightly refuses, logging a console error.)
 */
async function until(page, fn, arg, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) fail(`${what} (waited ${timeout / 1000} s)`);
    await page.waitForTimeout(250);
  }
}

async function shot(page, dir, name) {
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  log(`screenshot ${path}`);
}

/** Navigates within the single-page app. */
async function go(page, route) {
  await page.evaluate((r) => {
    location.hash = r;
  }, route);
}

async function checkOverview(page, o) {
  await expectVisible(page, '#tip .dot.on', 'the live block stream');
  await expectVisible(page, '[data-validator]', 'the validators panel');
  await expectVisible(page, '[data-provider]', 'the providers panel');
  const validators = await page.locator('[data-validator]').count();
  if (validators !== o.validators) fail(`the overview lists ${validators} validators, expected ${o.validators}`);
  const heading = page.getByRole('heading', { name: `Validators (${o.validators})` });
  if (!(await heading.count())) fail(`no "Validators (${o.validators})" heading on the overview`);
  const shown = await page.locator('[data-provider]').evaluateAll((rows) => rows.map((r) => r.dataset.provider));
  for (const id of o.providers) {
    if (!shown.includes(id)) fail(`provider ${id} is not on the overview (it shows ${shown.join(', ') || 'none'})`);
  }
  if (shown.length !== o.providers.length) fail(`the overview lists ${shown.length} providers, expected ${o.providers.length}`);
  // Every provider row says it is active (registered, heartbeating, not ejected).
  const states = await page.locator('[data-provider] td:nth-child(2)').allInnerTexts();
  if (!states.every((s) => s.trim() === 'active')) fail(`providers are not all active: ${states.join(', ')}`);
  // The chain panel reports a height the stream has reached.
  const height = Number(await page.locator('#height').innerText());
  if (!(height > 0)) fail(`the overview shows finalized height ${height}`);
  await page.locator('text=Recent blocks').first().waitFor();
  log(`overview: ${validators} validators, ${shown.length} providers, height ${height}`);
}

/** Waits until the job page says `settled`, logging each state it passes through. */
async function waitSettled(page, o) {
  const sel = `[data-job="${o.job}"][data-state]`;
  const deadline = Date.now() + o.timeoutMs;
  const seen = [];
  for (;;) {
    await noErrorPanel(page, `job ${o.job}'s page`);
    const state = await page.locator(sel).first().getAttribute('data-state', { timeout: 1000 }).catch(() => null);
    if (state && seen[seen.length - 1] !== state) {
      seen.push(state);
      log(`job ${o.job}: ${state}`);
    }
    if (state === 'settled') return seen;
    if (state === 'abandoned' || state === 'cancelled') fail(`job ${o.job} ended ${state}, not settled (states seen: ${seen.join(' → ')})`);
    if (Date.now() > deadline) fail(`job ${o.job} did not reach "settled" within ${o.timeoutMs / 1000} s (states seen: ${seen.join(' → ') || 'none'})`);
    await page.waitForTimeout(500);
  }
}

/** The first line of standard input. */
async function readLine() {
  const rl = createInterface({ input: process.stdin });
  try {
    for await (const line of rl) return line.trim();
  } finally {
    rl.close();
  }
  fail('standard input closed before a job id was given');
}

async function checkJob(page, o, dir) {
  await go(page, '#/jobs');
  await expectVisible(page, page.getByRole('heading', { name: /^Jobs \(\d+\)$/ }), 'the jobs page');
  if (o.job === null) {
    // The job is submitted now, while this page is open: it must show up by itself.
    console.log('dashboard: ready for a job');
    const line = await readLine();
    o.job = Number(line);
    if (!Number.isInteger(o.job) || o.job < 0) fail(`expected a job id on standard input, got ${JSON.stringify(line)}`);
    const since = Date.now();
    await expectVisible(page, `tr[data-job="${o.job}"]`, `job ${o.job} on the open jobs page (live update)`, 60_000);
    if (!(await page.evaluate(() => location.hash === '#/jobs'))) fail('the jobs page navigated away by itself');
    log(`job ${o.job} appeared on the open jobs page ${((Date.now() - since) / 1000).toFixed(1)} s after its id was given`);
  } else {
    await expectVisible(page, `tr[data-job="${o.job}"]`, `job ${o.job} in the jobs list`);
  }
  log(`jobs list: job ${o.job} is ${await page.locator(`tr[data-job="${o.job}"]`).getAttribute('data-state')}`);
  await shot(page, dir, '02-jobs');

  await page.locator(`tr[data-job="${o.job}"] a[href="#/job/${o.job}"]`).click();
  await expectVisible(page, `[data-job="${o.job}"] .pipeline`, `job ${o.job}'s page`);
  await shot(page, dir, '03-job');
  const seen = await waitSettled(page, o);

  // Settled: every shard's stage chip says so, a provider was paid, and every state proof's
  // root matches the next finalized header (checked by the page as blocks arrive).
  await page.locator(`[data-job="${o.job}"][data-state="settled"] .proof-check`).first().waitFor();
  await until(page, () => {
    const checks = [...document.querySelectorAll('.proof-check')];
    return checks.length > 0 && checks.every((c) => c.dataset.verified !== undefined);
  }, null, `job ${o.job}'s state proofs were not checked against finalized headers`);
  const checks = await page.locator('.proof-check').evaluateAll((cs) => cs.map((c) => [c.dataset.verified, c.innerText]));
  const bad = checks.filter(([v]) => v !== 'true');
  if (bad.length) fail(`job ${o.job}: state proofs do not match finalized headers: ${bad.map(([, t]) => t).join('; ')}`);
  const paid = await page.locator('dt:text-is("Paid to providers") + dd').innerText();
  if (!(Number(paid.replaceAll(',', '')) > 0)) fail(`job ${o.job} is settled but shows ${paid} paid to providers`);
  const stages = await page.locator('section:has(h2:text-is("Shards")) td:nth-child(4) .chip').allInnerTexts();
  if (!stages.length || !stages.every((s) => s === 'settled')) fail(`job ${o.job}'s shards are not all settled: ${stages.join(', ')}`);
  log(`job ${o.job}: settled after ${seen.join(' → ')}; ${paid} paid to providers; ${checks.length} state proofs match`);
  await shot(page, dir, '04-job-settled');

  await go(page, '#/jobs');
  await expectVisible(page, `tr[data-job="${o.job}"][data-state="settled"]`, `job ${o.job} settled in the jobs list`);
  await shot(page, dir, '05-jobs-settled');
}

async function checkExplorer(page, o, dir) {
  // A lease of the job, reached from the job page.
  await go(page, `#/job/${o.job}`);
  await expectVisible(page, `[data-job="${o.job}"] a[href^="#/lease/"]`, `job ${o.job}'s lease links`);
  const submitted = (await page.locator('dt:text-is("Submitted") + dd').innerText()).trim().replace(/^#/, '');
  await page.locator(`[data-job="${o.job}"] a[href^="#/lease/"]`).first().click();
  await expectVisible(page, page.getByRole('heading', { name: /^Lease \d+$/ }), 'the lease page');
  const status = await page.locator('dt:text-is("Status") + dd').innerText();
  if (status.trim() !== 'settled') fail(`the job's lease shows status ${status}`);
  await shot(page, dir, '06-explorer-lease');

  // The provider's account, reached from the lease.
  await page.locator('dt:text-is("Provider") + dd a').click();
  await expectVisible(page, 'h2:text-is("Account")', 'the provider account page');
  const acct = (await page.locator('dt:text-is("Id") + dd').innerText()).trim();
  if (!o.providers.includes(acct)) fail(`the lease's provider ${acct} is not one of the devnet's providers`);
  await shot(page, dir, '07-explorer-account');

  // The block that carried the job's submission, found with the search box, and its first
  // transaction.
  await page.locator('#search input[name="q"]').fill(submitted);
  await page.locator('#search input[name="q"]').press('Enter');
  await expectVisible(page, `h2:text-is("Block #${submitted}")`, `block ${submitted} (searched for)`);
  const txs = page.locator('section:has(h2:text-is("Transactions")) tbody tr');
  if (!(await txs.count())) fail(`block ${submitted}, where job ${o.job} was submitted, shows no transactions`);
  await shot(page, dir, '08-explorer-block');
  await txs.first().locator('a[href^="#/tx/"]').click();
  await expectVisible(page, page.getByRole('heading', { name: /^Transaction [0-9a-f]{16}…$/ }), 'the transaction page');
  const txStatus = (await page.locator('dt:text-is("Status") + dd').innerText()).trim();
  if (txStatus !== 'finalized') fail(`the transaction page shows status ${txStatus}`);
  await shot(page, dir, '09-explorer-tx');

  // The other pages render without errors.
  const others = [['#/market', 'h2', '10-market'], ['#/governance', 'h2', '11-governance'], ['#/sessions', 'h2', '12-sessions']];
  for (const [route, heading, name] of others) {
    await go(page, route);
    await until(page, (r) => location.hash === r && !document.querySelector('#main > p.empty'), route,
      `${route} stayed on "Loading…"`);
    await expectVisible(page, `#main ${heading}`, `the ${route} page`);
    await noErrorPanel(page, `the ${route} page`);
    await shot(page, dir, name);
  }
}

/** A provider-only node's dashboard reads the chain of its upstream and says so. */
async function checkProviderNode(context, o, url, i, dir) {
  const page = await newPage(context, `provider node ${url}`);
  await page.goto(`${url}/#/`);
  await expectVisible(page, '#notice', `${url}'s upstream notice`);
  const notice = await page.locator('#notice').innerText();
  if (!notice.includes('does not run the chain')) fail(`${url}: unexpected notice: ${notice}`);
  await expectVisible(page, '[data-validator]', `${url}'s validators panel (from its upstream)`);
  const n = await page.locator('[data-validator]').count();
  if (n !== o.validators) fail(`${url}: the overview lists ${n} validators, expected ${o.validators}`);
  await expectVisible(page, '#tip .dot.on', `${url}'s live block stream (from its upstream)`);
  log(`provider node ${url}: shows its upstream's chain (${n} validators)`);
  await shot(page, dir, `13-provider-node-${i}`);
  await page.close();
}

async function main() {
  const o = options();
  mkdirSync(o.out, { recursive: true });
  const { chromium } = await loadPlaywright();
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  let browser;
  try {
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  } catch (e) {
    fail(`cannot launch Chromium at ${executablePath} (install it with: apt-get install chromium): ${e.message}`);
  }
  log(`Chromium ${browser.version()} at ${executablePath}; dashboard ${o.url}`);
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await newPage(context, 'dashboard');
    const resp = await page.goto(`${o.url}/`);
    if (!resp || !resp.ok()) fail(`GET ${o.url}/ answered ${resp?.status()}`);
    if ((await page.title()) !== 'Agora') fail(`the page title is ${JSON.stringify(await page.title())}, not "Agora"`);
    await checkOverview(page, o);
    await shot(page, o.out, '01-overview');
    await checkJob(page, o, o.out);
    await checkExplorer(page, o, o.out);
    // The overview again, now with the job's activity.
    await go(page, '#/');
    await expectVisible(page, '[data-validator]', 'the overview (again)');
    await shot(page, o.out, '12-overview-after');
    for (const [i, url] of o.also.entries()) await checkProviderNode(context, o, url, i, o.out);
    await page.close();
    // Anything logged up to here counts; closing the browser cuts streams short, which does not.
    if (problems.length) fail(`the dashboard reported ${problems.length} error(s):\n  ${problems.join('\n  ')}`);
  } catch (e) {
    // What the page looked like when it failed.
    if (page && !page.isClosed()) await shot(page, o.out, 'failure').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  log(`ok: screenshots in ${o.out}`);
}

main().catch((e) => {
  const msg = e instanceof Failure ? e.message : e.stack ?? String(e);
  console.error(`dashboard test FAILED: ${msg}`);
  if (problems.length && !(e instanceof Failure && msg.includes('reported'))) {
    console.error(`errors the pages reported meanwhile:\n  ${problems.join('\n  ')}`);
  }
  process.exit(1);
});
