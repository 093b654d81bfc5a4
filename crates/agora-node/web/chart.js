// Line charts as inline SVG: numeric x and y, "nice" axis ticks, a legend, and a tooltip on
// every point. Enough for price history and latency; no dependency.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/**
 * About `n` round tick values within [lo, hi]; with `cover`, the first is at or below `lo` and
 * the last at or above `hi`, so an axis drawn from the first to the last shows every value.
 */
export function ticks(lo, hi, n = 5, cover = false) {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const eps = step * 1e-9;
  const out = [];
  let t = (cover ? Math.floor((lo + eps) / step) : Math.ceil((lo - eps) / step)) * step;
  for (; t <= hi + eps; t += step) out.push(Number(t.toPrecision(12)));
  if (cover && out[out.length - 1] < hi - eps) out.push(Number(t.toPrecision(12)));
  return out;
}

/**
 * A chart of `series` = [{name, cls, points: [{x, y}]}]; `xLabel`/`yLabel` name the axes and
 * `format(y)` prints y values. Returns an <svg> that scales to its container's width.
 */
export function lineChart({ series, xLabel, yLabel, format = String, width = 640, height = 220, yFromZero = true }) {
  const pts = series.flatMap((s) => s.points);
  // Room on top for the y label and the legend, and on the right for the last x tick.
  const pad = { l: 56, r: 28, t: 28, b: 34 };
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': `${yLabel} by ${xLabel}` });
  if (pts.length === 0) return root;
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) === Math.min(...xs) ? Math.min(...xs) + 1 : Math.max(...xs)];
  const yt = ticks(yFromZero ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys), 5, true);
  const [y0, y1] = [yt[0], yt[yt.length - 1] === yt[0] ? yt[0] + 1 : yt[yt.length - 1]];
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  for (const t of yt) {
    root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t), class: 'gridline' }));
    root.append(svg('text', { x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end', class: 'tick' }, format(t)));
  }
  for (const t of ticks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
    root.append(svg('text', { x: X(t), y: height - pad.b + 16, 'text-anchor': 'middle', class: 'tick' }, String(t)));
  }
  root.append(svg('text', { x: width - pad.r, y: height - 4, 'text-anchor': 'end', class: 'axis' }, xLabel));
  root.append(svg('text', { x: 4, y: 14, class: 'axis' }, yLabel));
  series.forEach((s, i) => {
    const sorted = [...s.points].sort((a, b) => a.x - b.x);
    root.append(svg('polyline', { points: sorted.map((p) => `${X(p.x)},${Y(p.y)}`).join(' '), class: `line ${s.cls}` }));
    for (const p of sorted) {
      root.append(svg('circle', { cx: X(p.x), cy: Y(p.y), r: 3, class: `dot ${s.cls}` },
        svg('title', {}, `${s.name}: ${format(p.y)} at ${xLabel} ${p.x}`)));
    }
    // The legend sits above the plot, right-aligned, clear of the lines and the y label.
    const lx = width - pad.r - (series.length - i) * 140;
    root.append(svg('rect', { x: lx, y: 5, width: 10, height: 10, class: `key ${s.cls}` }));
    root.append(svg('text', { x: lx + 14, y: 14, class: 'legend' }, s.name));
  });
  return root;
}
