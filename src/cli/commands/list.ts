/** `volution list [pattern]`: the registered variants. */
import type { Command } from 'commander';
import { getVariant, listFamilies, listModels } from '../../models/registry.js';
import { type CliIO, json, table } from '../io.js';

export function registerList(program: Command, io: CliIO): void {
  program
    .command('list')
    .description('list the registered model variants (glob pattern, e.g. "uniformer*")')
    .argument('[pattern]', 'glob over variant names', '*')
    .option('--json', 'print JSON')
    .action((pattern: string, opts: { json?: boolean }) => {
      const rows = listModels(pattern).map((name) => {
        const v = getVariant(name);
        const p = v.pretrained;
        return { name, family: v.family, input_size: p.inputSize, interpolation: p.interpolation, crop_pct: p.cropPct, paper_top1: p.paperTop1 ?? null, weights_url: p.weights?.url ?? null, description: v.description ?? '' };
      });
      if (opts.json) return io.out(json(rows));
      if (rows.length === 0) return io.out(`no variant matches '${pattern}'; families: ${listFamilies().join(', ')}\n`);
      io.out(
        table(
          ['model', 'family', 'input', 'top-1', 'weights'],
          rows.map((r) => [r.name, r.family, r.input_size.slice(1).join('×'), r.paper_top1 === null ? '' : r.paper_top1.toFixed(1), r.weights_url ? 'published' : '']),
          ['left', 'left', 'left', 'right', 'left'],
        ),
      );
      io.out(`${rows.length} variant${rows.length === 1 ? '' : 's'}; families (build any config with --model <family> --config): ${listFamilies().join(', ')}\n`);
    });
}
