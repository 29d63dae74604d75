/**
 * Train mode without randomness: the fixtures' gradient reports (and
 * `volution forward --train`) run train-mode BatchNorm with every dropout
 * and drop-path rate at 0, so one forward and backward is deterministic.
 */
import type { Module } from '../nn/module.js';
import { DropPath, Dropout } from '../nn/layers.js';

/**
 * Sets every Dropout and DropPath rate in `model` to 0 and returns a
 * function that puts the rates back.
 */
export function zeroDropRates(model: Module): () => void {
  const saved: [{ p: number }, number][] = [];
  for (const [, m] of model.namedModules()) {
    if (m instanceof Dropout || m instanceof DropPath) {
      const w = m as unknown as { p: number };
      saved.push([w, w.p]);
      w.p = 0;
    }
  }
  return () => {
    for (const [w, p] of saved) w.p = p;
  };
}
