/** `volution info <model>`: size, cost and preprocessing of a variant or config. */
import type { Command } from 'commander';
import { countMacs, macsByScope, stageOf } from '../../ir/analysis.js';
import { effectivePretrained } from '../../io/model_dir.js';
import { createModel, resolveConfig } from '../../models/registry.js';
import { trace } from '../../tensor/function.js';
import { type CliIO, formatCount, formatInt, json, table } from '../io.js';
import { parseConfig } from '../options.js';

interface StageRow {
  stage: string;
  params: number;
  macs: number;
}

/** The stage of a parameter: that of the module owning it. */
function paramStage(key: string): string {
  const dot = key.lastIndexOf('.');
  return stageOf(dot < 0 ? '' : key.slice(0, dot));
}

export function registerInfo(program: Command, io: CliIO): void {
  program
    .command('info')
    .description('parameters, MACs, preprocessing and weights of a variant (or a family with --config)')
    .argument('<model>', 'variant or family name')
    .option('--config <json|file>', 'config overrides (official snake_case options) as JSON or a JSON file')
    .option('--json', 'print JSON')
    .action((name: string, opts: { config?: string; json?: boolean }) => {
      const overrides = opts.config === undefined ? {} : parseConfig(opts.config);
      const { family, variant } = resolveConfig(name, overrides);
      const model = createModel(name, overrides).eval();
      const pretrained = effectivePretrained(name, model);
      const input = [1, ...pretrained.inputSize];
      const graph = trace((x) => model.call(x), [{ dtype: 'float32', shape: input, name: 'input' }]).graph;
      const stages = new Map<string, StageRow>();
      const row = (stage: string) => stages.get(stage) ?? stages.set(stage, { stage, params: 0, macs: 0 }).get(stage)!;
      for (const [key, p] of model.namedParameters()) row(paramStage(key)).params += p.data.size;
      for (const s of macsByScope(graph)) row(s.scope).macs += s.macs;
      const scale = Math.floor(pretrained.inputSize[1] / pretrained.cropPct);
      const result = {
        name,
        family: family.name,
        description: variant?.description ?? family.description,
        params: model.numParams(),
        macs: countMacs(graph),
        input,
        preprocessing: { resize: scale, crop: pretrained.inputSize.slice(1), interpolation: pretrained.interpolation, crop_pct: pretrained.cropPct, mean: pretrained.mean, std: pretrained.std },
        num_classes: model.numClasses,
        weights: pretrained.weights ?? null,
        paper_top1: pretrained.paperTop1 ?? null,
        config: model.config,
        stages: [...stages.values()].map((s) => ({ ...s, stage: s.stage || '(model)' })),
      };
      if (opts.json) return io.out(json(result));
      const fmt3 = (v: readonly number[]) => `[${v.map((x) => x.toFixed(3)).join(', ')}]`;
      const lines = [
        `${name}  (family ${family.name})`,
        `  ${result.description}`,
        `  parameters    ${formatInt(result.params)} (${formatCount(result.params)})`,
        `  MACs          ${formatCount(result.macs)} at ${input.join('×')}`,
        `  input         ${pretrained.inputSize.join('×')}: resize shorter side to ${scale} (${pretrained.interpolation}), centre crop ${pretrained.inputSize.slice(1).join('×')} (crop_pct ${pretrained.cropPct})`,
        `  normalise     mean ${fmt3(pretrained.mean)}, std ${fmt3(pretrained.std)}`,
        `  classes       ${model.numClasses}`,
        `  weights       ${pretrained.weights ? `${pretrained.weights.url} (${pretrained.weights.format}${pretrained.weights.top1 === undefined ? '' : `, top-1 ${pretrained.weights.top1}`})` : 'none published'}`,
        ...(pretrained.paperTop1 === undefined ? [] : [`  paper top-1   ${pretrained.paperTop1}`]),
        ...(variant && opts.config === undefined ? [] : [`  config        ${JSON.stringify(model.config)}`]),
        '',
      ];
      io.out(lines.join('\n'));
      io.out(table(['stage', 'params', 'MACs'], result.stages.map((s) => [s.stage, formatCount(s.params), formatCount(s.macs)]), ['left', 'right', 'right']));
    });
}
