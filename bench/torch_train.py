#!/usr/bin/env python3
"""One PyTorch CPU train step of the official UniFormer-S, CeiT-T or MixFormer-B0 code, timed.

bench/train.ts runs this next to its own step when given `--torch <dir>`: <dir> holds the
official model files, unmodified (volution does not ship them):
  uniformer.py          Sense-X/UniFormer, image_classification/models/uniformer.py
  ceit_model.py         coeusguo/ceit, ceit_model.py
  mixformer_pytorch.py  juniorkowal/mixformer-lambdalayers, models/mixformer_pytorch.py
                        (a PyTorch port of PaddleClas's MixFormer; there is no official PyTorch code)
They import timm (`pip install timm`).

  python3 bench/torch_train.py --official DIR --model ceit_tiny --batch 8 --threads 2 [--opt adamw|sgd]

The step is the one bench/train.ts times: forward, cross-entropy (label smoothing 0.1),
backward, global-norm clipping at 5, AdamW; or with --opt sgd plain cross-entropy and SGD
with momentum 0.9. The script builds the model, runs one warm-up step and prints
{"ready": true, "torch": version}; then every line "step" on standard input runs one step
and prints {"ms": ...}, until standard input closes. bench/train.ts alternates these steps
with its own, so both see the same moment of this shared machine.
"""
import argparse
import contextlib
import json
import sys
import time
import warnings


def build(name):
    import torch
    if name == "uniformer_small":
        from uniformer import uniformer_small
        return uniformer_small(num_classes=1000)
    if name == "ceit_tiny":
        from ceit_model import ceit_tiny_patch16_224
        return ceit_tiny_patch16_224(num_classes=1000)
    if name == "mixformer_b0":
        from mixformer_pytorch import MixFormer_B0
        model = MixFormer_B0(class_num=1000)
        # The port initialises Linear weights with std 1 (PaddleClas: 0.02), which blows the
        # logits up to ~1e3; re-initialise as PaddleClas does (the cost of a step is unchanged).
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
        return model
    raise SystemExit(f"no official PyTorch model for {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--opt", choices=["adamw", "sgd"], default="adamw")
    a = ap.parse_args()
    sys.path.insert(0, a.official)
    warnings.filterwarnings("ignore")
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):  # CeiT prints while it builds: stdout stays one JSON line
        model = build(a.model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.randn(a.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (a.batch,))
    adamw = a.opt == "adamw"
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05) if adamw else torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1 if adamw else 0.0)
        loss.backward()
        if adamw:
            torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss.item()

    step()  # warm-up, as bench/train.ts's first step
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            continue
        t0 = time.perf_counter()
        step()
        print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3}), flush=True)


if __name__ == "__main__":
    main()
