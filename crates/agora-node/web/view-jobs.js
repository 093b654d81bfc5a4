// Every job with its state through matching → running → audit → settled.

import { get } from './api.js';
import { chip, h, link, section, table } from './dom.js';
import { account, amount, block, jobState, pipeline, shardStage } from './fmt.js';

export const topics = ['jobs'];

export async function load() {
  const [jobs, leases] = await Promise.all([get('/api/v1/jobs?limit=200'), get('/api/v1/leases?limit=1000')]);
  return { jobs, leases: new Map(leases.map((l) => [l.id, l])) };
}

export function render({ jobs, leases }) {
  const rows = jobs.map((j) => {
    const state = jobState(j, leases);
    return {
      attrs: { 'data-job': j.id, 'data-state': state },
      cells: [link(`job/${j.id}`, `job ${j.id}`), pipeline(state),
        h('span', { class: 'shards' }, j.shards.map((s, i) => chip(`${i}: ${shardStage(s, leases)}`, shardStage(s, leases)))),
        j.manifest.params.kind, j.manifest.class, account(j.requester), amount(j.manifest.max_unit_price), block(j.submitted_height)],
    };
  });
  return section(`Jobs (${jobs.length})`,
    table(['Job', 'State', 'Shards', 'Kind', 'Class', 'Requester', 'Max price', 'Submitted'], rows, 'No jobs yet (submit one with: agora job submit job.toml).'));
}
