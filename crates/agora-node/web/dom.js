// Building DOM nodes. Text is always inserted as text (never parsed as HTML), so data from
// the chain cannot inject markup.

/** An element: `h('a', {href: '#/'}, 'text', childNode, [more])`. `on*` attributes bind listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A link to a dashboard route. */
export const link = (route, text, attrs = {}) => h('a', { href: `#/${route}`, ...attrs }, text);

/** A titled panel. */
export const section = (title, ...body) => h('section', {}, h('h2', {}, title), ...body);

/**
 * A table; `rows` are arrays of cells, or `{cells, attrs}` to set row attributes. An empty
 * table becomes a sentence saying so.
 */
export function table(headers, rows, empty = 'None yet.') {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => {
      const { cells, attrs } = Array.isArray(r) ? { cells: r, attrs: {} } : r;
      return h('tr', attrs, cells.map((c) => h('td', {}, c)));
    })),
  ));
}

/** Label/value pairs as a definition list. */
export const facts = (pairs) =>
  h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

/** A small coloured label; `kind` picks the colour class. */
export const chip = (text, kind = text) => h('span', { class: `chip ${String(kind).replace(/[^a-z_-]/gi, '')}` }, text);
