// The node's JSON API. A node that does not run the chain (a provider-only node) names its
// upstream; the dashboard then reads the chain from there (the API allows cross-origin reads).

/** An API error with the HTTP status and the node's explanation. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let base = '';

/** The origin chain data is read from ('' = this node). */
export const chainOrigin = () => base || location.origin;

async function getFrom(origin, path) {
  let r;
  try {
    r = await fetch(origin + path, { headers: { accept: 'application/json' } });
  } catch (e) {
    throw new ApiError(0, `cannot reach ${origin || location.origin}: ${e.message}`);
  }
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new ApiError(r.status, body.error ?? `${r.status} ${r.statusText}`);
  }
  return r.json();
}

/** GET a chain route, e.g. `get('/api/v1/jobs?limit=10')`. */
export const get = (path) => getFrom(base, path);

/** The URL of a chain route (for EventSource and links to raw JSON). */
export const url = (path) => chainOrigin() + path;

/** Learns what this node is and where to read the chain; returns `/api/v1/node`. */
export async function connect() {
  const node = await getFrom('', '/api/v1/node');
  if (!node.roles.includes('validator')) {
    if (!node.upstream) throw new ApiError(503, `node ${node.name} does not run the chain and names no upstream`);
    base = node.upstream.replace(/\/+$/, '');
  }
  return node;
}
