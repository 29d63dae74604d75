/** Runs the volution command line in-process and captures what it prints. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../src/cli/program.js';
import { FIXTURES } from '../helpers/fixtures.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...argv: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { out: (s) => void (stdout += s), err: (s) => void (stderr += s), errIsTTY: false });
  return { code, stdout, stderr };
}

export { tempDir } from '../helpers/tmp.js';

/** A fixture case's official constructor options, as `--config` JSON. */
export function fixtureConfig(name: string): string {
  return JSON.stringify((JSON.parse(readFileSync(join(FIXTURES, name, 'manifest.json'), 'utf8')) as { kwargs: object }).kwargs);
}

export const fixturePath = (name: string, file: string): string => join(FIXTURES, name, file);
