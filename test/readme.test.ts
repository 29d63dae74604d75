/**
 * The README's library examples must run as written: every ```ts block of
 * its "Quick start" section runs as a module against the sources (the
 * package name `volution` resolved to src/index.ts), and what it prints is
 * compared with its own `// …` comments.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(`${ROOT}README.md`, 'utf8');
const section = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 1));
const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe('README examples', () => {
  it('has examples to run', () => expect(blocks.length).toBeGreaterThanOrEqual(3));
  blocks.forEach((code, i) => {
    it(`Quick start example ${i + 1} runs and prints what its comments say`, () => {
      const file = `${ROOT}.readme-example-${i}.mts`;
      writeFileSync(file, code.replaceAll("from 'volution'", `from '${ROOT}src/index.ts'`));
      try {
        const out = execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
        const expected = [...code.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]!.replace(/[[\]',…]/g, ' ').split(/\s+/).filter(Boolean));
        const printed = out.trim().split('\n');
        expected.forEach((words, k) => {
          const line = printed[k]!.replace(/[[\]',]/g, ' ');
          for (const w of words) expect(line, `example ${i + 1}, line ${k + 1}`).toContain(w);
        });
      } finally {
        rmSync(file, { force: true });
      }
    });
  });
});
