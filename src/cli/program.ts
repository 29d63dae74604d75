/**
 * The `volution` command: commander wiring, and one place that turns errors
 * into a one-line message and an exit status.
 */
import { Command, CommanderError } from 'commander';
import { VolutionError } from '../errors.js';
import { VOLUTION_VERSION } from '../io/model_dir.js';
import '../models/index.js';
import { registerBenchmark } from './commands/benchmark.js';
import { registerExport } from './commands/export.js';
import { registerForward } from './commands/forward.js';
import { registerInfo } from './commands/info.js';
import { registerList } from './commands/list.js';
import { registerPredict } from './commands/predict.js';
import { registerZoo } from './commands/zoo.js';
import { type CliIO, processIO } from './io.js';
import { registerTrain } from './train.js';
import { registerValidate } from './validate.js';

export function buildProgram(io: CliIO = processIO): Command {
  const program = new Command('volution')
    .description('Hybrid convolution + self-attention vision models (UniFormer, CeiT, MixFormer, ACmix, ViT): build, load, run, export.')
    .version(VOLUTION_VERSION)
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  registerList(program, io);
  registerInfo(program, io);
  registerForward(program, io);
  registerPredict(program, io);
  registerExport(program, io);
  registerBenchmark(program, io);
  registerZoo(program, io);
  registerTrain(program, io);
  registerValidate(program, io);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  program.addHelpText('after', '\nSet VOLUTION_DEBUG=1 (2, 3) for graph sizes, session creation and timings, and stack traces on errors.\n');
  return program;
}

/** Runs the command line on `argv` (without node and script); returns the exit status. */
export async function runCli(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  try {
    await buildProgram(io).parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // commander has already printed its own message (usage errors) or the help/version text.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1;
    const debug = Boolean(Number(process.env.VOLUTION_DEBUG ?? 0));
    if (err instanceof VolutionError && !debug) io.err(`error: ${err.message}\n`);
    else io.err(`error: ${debug && err instanceof Error ? err.stack : err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
