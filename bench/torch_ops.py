"""PyTorch side of bench/ops.ts: times the same cases (forward, forward+backward) and prints JSON."""
import json, sys, time
import torch
import torch.nn.functional as F

cases = json.loads(sys.argv[1]); threads = int(sys.argv[2]); reps = int(sys.argv[3])
depth = int(sys.argv[4]) if len(sys.argv) > 4 else 1  # copies of the op chained in one function (bench/ops.ts --depth)
torch.set_num_threads(threads)
torch.manual_seed(0)

def layer(c):
    """One copy of the op: a function of its input, and its parameters."""
    if c["kind"] == "conv":
        w = torch.randn(*c["w"], requires_grad=True)
        return lambda x: F.conv2d(x, w, None, 1, c["padding"], 1, c["groups"]), [w]
    if c["kind"] == "attention":
        B, N, C = c["x"]; h = c["heads"]
        qkv = torch.nn.Linear(C, 3 * C); proj = torch.nn.Linear(C, C)
        def f(x):
            t = qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
            q, k, v = t[0], t[1], t[2]
            a = (q * (C // h) ** -0.5) @ k.transpose(-2, -1)
            return proj((a.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C))
        return f, [qkv.weight, qkv.bias, proj.weight, proj.bias]
    if c["kind"] == "layernorm":
        ln = torch.nn.LayerNorm(c["x"][-1])
        return ln, [ln.weight, ln.bias]
    if c["kind"] == "gelu":
        return F.gelu, []
    if c["kind"] == "maxpool":
        return lambda x: F.max_pool2d(x, 3, 2, 1), []
    bn = torch.nn.BatchNorm2d(c["x"][1]); bn.train()
    return bn, [bn.weight, bn.bias]

def build(c):
    x = torch.randn(*c["x"], requires_grad=True)
    layers = [layer(c) for _ in range(depth)]
    def f():
        y = x
        for fn, _ in layers: y = fn(y)
        return y
    return f, [x] + [p for _, ps in layers for p in ps]

def median(f):
    for _ in range(2): f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort(); return ts[len(ts) // 2]

out = []
for c in cases:
    f, params = build(c)
    with torch.no_grad():
        fwd = median(f)
    cot = torch.randn_like(f())
    def fb():
        for p in params: p.grad = None
        f().backward(cot)
    out.append({"name": c["name"], "fwd": fwd / depth, "fwdbwd": median(fb) / depth})
print(json.dumps(out))
