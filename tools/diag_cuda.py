"""Diagnose bound use on cuda: terms of the bound at the worst element, and DESIGN §10's
max |err| / sum|a b| against K for e4m3 random data (fp32 out), fast accumulation off/on."""
import sys

import numpy as np

from golden.bounds import element_bound, extended, ulp
from golden.cases import Case, build
from kernel.registry import get_backend

for backend in ("torch", "torch-fast"):
    ad = get_backend(backend)
    prof = ad.profile("cuda")
    for cid in sys.argv[1:]:
        c = Case.from_id(cid)
        d = build(c, 0)
        y = ad.run(d, "cuda").values
        bias = None if d.bias is None else d.bias.reshape(1, -1)
        mag = d.mag()
        size = mag * d.absdot  # |sa sb| sum|A||B|, [M, N]
        bnd = element_bound(d.expected, d.absdot, mag, bias, c.K, c.out, prof)
        err = np.abs(extended(y, c.out) - extended(d.expected, c.out))
        use = np.where(err == 0, 0, err / bnd)
        i = np.unravel_index(np.nanargmax(use), use.shape)
        acc = float(size[i] * prof.eps_acc(c.K))
        print(backend, c.id)
        print(f"  worst {i}: got {y[i]!r} exp {d.expected[i]!r} err {err[i]:.4g} bound {bnd[i]:.4g}"
              f" use {use[i]:.3f}; ulp(exp) {float(ulp(d.expected[i], c.out)):.4g}"
              f" acc-term {acc:.4g} bias {0 if bias is None else float(bias[0, i[1]]):.4g}"
              f" |sa sb|sum|ab| {float(size[i]):.4g}")
    import torch
    rng = np.random.default_rng(0)
    for k in (256, 1024, 4096, 16384):
        a = torch.randn(64, k, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(256, k, device="cuda").to(torch.float8_e4m3fn)
        one = torch.tensor(1.0, device="cuda")
        y = torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.float32,
                             use_fast_accum=backend == "torch-fast").double().cpu().numpy()
        A, B = a.double().cpu().numpy(), b.double().cpu().numpy().T
        exact = A @ B  # exact in float64 for e4m3 (DESIGN §4)
        rel = np.abs(y - exact) / (np.abs(A) @ np.abs(B))
        print(f"  {backend} K={k}: max|err|/sum|ab| = {rel.max():.3g}  eps_acc(K) = {prof.eps_acc(k):.3g}")
