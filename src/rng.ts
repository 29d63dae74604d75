/**
 * Deterministic random numbers: every random draw in volution comes from an
 * explicit seed. xoshiro128** seeded through splitmix32; its state can be
 * saved and restored exactly (checkpoints resume bit-for-bit).
 */
export class Rng {
  private s: Uint32Array;
  /** Box–Muller makes normals in pairs; the second waits here. */
  private spare: number | undefined;

  constructor(seed: number | Uint32Array) {
    if (seed instanceof Uint32Array) {
      this.s = Uint32Array.from(seed.subarray(0, 4));
      if (seed.length === 7 && seed[4]) this.spare = new Float64Array(seed.slice(5, 7).buffer)[0];
      return;
    }
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** The generator's full state, for checkpoints: `new Rng(rng.state)` continues the same stream. */
  get state(): Uint32Array {
    const out = new Uint32Array(7);
    out.set(this.s);
    if (this.spare !== undefined) {
      out[4] = 1;
      out.set(new Uint32Array(Float64Array.of(this.spare).buffer), 5);
    }
    return out;
  }

  /** A uint32. */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return (this.nextU32() * 2 ** 21 + (this.nextU32() >>> 11)) / 2 ** 53;
  }

  /** Standard normal (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const z = this.spare;
      this.spare = undefined;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(1 - this.uniform()));
    const t = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(t);
    return r * Math.cos(t);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** An independent generator derived from this one (for a sub-task). */
  fork(): Rng {
    return new Rng(Uint32Array.of(this.nextU32(), this.nextU32(), this.nextU32(), this.nextU32() | 1));
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * A generator that always draws the distribution's centre (uniform 0.5,
 * normal 0): building with it skips random initialisation, for models whose
 * weights are loaded right after (or only counted).
 */
export class CentreRng extends Rng {
  constructor() {
    super(0);
  }
  override uniform(): number {
    return 0.5;
  }
  override normal(): number {
    return 0;
  }
  override fork(): Rng {
    return this;
  }
}
