//! Renders one frame of a small ray-traced animation.
//!
//! Input item: `key=value` text, e.g. `width=64 height=48 frame=3 frames=24 samples=4`.
//! Output item: the frame as a binary PPM (P6) image.
//! Arguments: `--bounces N` (reflection depth, default 2).
//!
//! Anti-aliasing jitter comes from WASI `random_get`, so the image depends on the seed the
//! runtime derives for the item, and is identical on every honest machine.

use agora_examples::{XorShift, param, read_input, wasi_seed, write_output};

#[derive(Clone, Copy)]
struct V(f64, f64, f64);

impl V {
    fn add(self, o: V) -> V {
        V(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
    fn sub(self, o: V) -> V {
        V(self.0 - o.0, self.1 - o.1, self.2 - o.2)
    }
    fn mul(self, k: f64) -> V {
        V(self.0 * k, self.1 * k, self.2 * k)
    }
    fn had(self, o: V) -> V {
        V(self.0 * o.0, self.1 * o.1, self.2 * o.2)
    }
    fn dot(self, o: V) -> f64 {
        self.0 * o.0 + self.1 * o.1 + self.2 * o.2
    }
    fn norm(self) -> V {
        self.mul(1.0 / self.dot(self).sqrt())
    }
}

struct Sphere {
    center: V,
    radius: f64,
    color: V,
    mirror: f64,
}

const LIGHT: V = V(-0.5, 1.0, -0.6);

fn hit(spheres: &[Sphere], origin: V, dir: V) -> Option<(f64, usize)> {
    let mut best: Option<(f64, usize)> = None;
    for (i, s) in spheres.iter().enumerate() {
        let oc = origin.sub(s.center);
        let b = oc.dot(dir);
        let disc = b * b - (oc.dot(oc) - s.radius * s.radius);
        if disc > 0.0 {
            let t = -b - disc.sqrt();
            if t > 1e-4 && best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, i));
            }
        }
    }
    best
}

fn trace(spheres: &[Sphere], origin: V, dir: V, depth: u32) -> V {
    let Some((t, i)) = hit(spheres, origin, dir) else {
        // Sky gradient.
        let k = 0.5 * (dir.1 + 1.0);
        return V(1.0, 1.0, 1.0).mul(1.0 - k).add(V(0.5, 0.7, 1.0).mul(k));
    };
    let s = &spheres[i];
    let p = origin.add(dir.mul(t));
    let n = p.sub(s.center).norm();
    let l = LIGHT.norm();
    let lit = if hit(spheres, p, l).is_some() { 0.0 } else { n.dot(l).max(0.0) };
    let local = s.color.mul(0.15 + 0.85 * lit);
    if depth == 0 || s.mirror == 0.0 {
        return local;
    }
    let r = dir.sub(n.mul(2.0 * dir.dot(n)));
    local.mul(1.0 - s.mirror).add(trace(spheres, p, r, depth - 1).had(V(1.0, 1.0, 1.0)).mul(s.mirror))
}

fn main() {
    let text = read_input();
    let args: Vec<String> = std::env::args().collect();
    let bounces = args.iter().position(|a| a == "--bounces").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2);
    let width = param(&text, "width", 64.0) as usize;
    let height = param(&text, "height", 48.0) as usize;
    let samples = param(&text, "samples", 4.0).max(1.0) as usize;
    let frame = param(&text, "frame", 0.0);
    let frames = param(&text, "frames", 24.0).max(1.0);
    assert!(width * height <= 1 << 22, "image too large");

    let angle = 2.0 * std::f64::consts::PI * frame / frames;
    let eye = V(3.0 * angle.sin(), 1.0, -3.0 * angle.cos());
    let forward = V(0.0, 0.3, 0.0).sub(eye).norm();
    let right = V(forward.2, 0.0, -forward.0).norm();
    let up = V(
        right.1 * forward.2 - right.2 * forward.1,
        right.2 * forward.0 - right.0 * forward.2,
        right.0 * forward.1 - right.1 * forward.0,
    );
    let spheres = [
        Sphere { center: V(0.0, -1000.0, 0.0), radius: 1000.0, color: V(0.6, 0.6, 0.55), mirror: 0.0 },
        Sphere { center: V(0.0, 0.5, 0.0), radius: 0.5, color: V(0.9, 0.2, 0.2), mirror: 0.3 },
        Sphere { center: V(1.1, 0.35, 0.4), radius: 0.35, color: V(0.2, 0.4, 0.9), mirror: 0.6 },
        Sphere { center: V(-1.0, 0.3, 0.5), radius: 0.3, color: V(0.2, 0.8, 0.3), mirror: 0.0 },
    ];

    let mut rng = XorShift::new(wasi_seed());
    let mut out = format!("P6\n{width} {height}\n255\n").into_bytes();
    for y in 0..height {
        for x in 0..width {
            let mut c = V(0.0, 0.0, 0.0);
            for _ in 0..samples {
                let u = ((x as f64 + rng.next_f64()) / width as f64 - 0.5) * width as f64 / height as f64;
                let v = 0.5 - (y as f64 + rng.next_f64()) / height as f64;
                let dir = forward.add(right.mul(u)).add(up.mul(v)).norm();
                c = c.add(trace(&spheres, eye, dir, bounces));
            }
            for ch in [c.0, c.1, c.2] {
                let g = (ch / samples as f64).clamp(0.0, 1.0).sqrt();
                out.push((g * 255.0 + 0.5) as u8);
            }
        }
    }
    write_output(&out);
}
