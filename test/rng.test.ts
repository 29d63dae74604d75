import { describe, expect, it } from 'vitest';
import { Rng } from '../src/rng.js';

describe('Rng', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const xs = Array.from({ length: 5 }, () => a.uniform());
    expect(Array.from({ length: 5 }, () => b.uniform())).toEqual(xs);
    expect(new Rng(8).uniform()).not.toBe(xs[0]);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });
  it('restores its exact stream from state, even between the two normals of a pair', () => {
    const r = new Rng(3);
    r.normal();
    const saved = r.state;
    const next = [r.normal(), r.normal(), r.uniform()];
    const resumed = new Rng(saved);
    expect([resumed.normal(), resumed.normal(), resumed.uniform()]).toEqual(next);
  });
  it('draws normals with mean ≈ 0 and variance ≈ 1', () => {
    const r = new Rng(1);
    const n = 20000;
    const xs = Array.from({ length: n }, () => r.normal());
    const mean = xs.reduce((a, b) => a + b) / n;
    const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(v - 1)).toBeLessThan(0.05);
  });
});
