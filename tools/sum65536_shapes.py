"""DESIGN §10's sum on cuda at several output shapes and term orders (baselines/README.md).

    python tools/sum65536_shapes.py      (on a CUDA machine)

Row 0 of A: 2**16 ones and 4095 values 2**-5 (K padded with zeros to a multiple of 16), B
all 2**-5 where A is small and 1 where A is one: the exact dot is 65536 + 4095 * 2**-10 =
65539.999. Prints torch._scaled_mm's fp32 output for each (M = N, order, fast accumulation).
"""

import torch

K = 65536 + 4096
SMALL = 2.0**-5


def run(mn: int, small_first: bool, fast: bool) -> float:
    a = torch.zeros(mn, K)
    b = torch.zeros(K, mn)
    ones, small = (slice(4095, 4095 + 65536), slice(0, 4095)) if small_first else (
        slice(0, 65536), slice(65536, 65536 + 4095))
    a[:, ones], b[ones] = 1.0, 1.0
    a[:, small], b[small] = SMALL, SMALL
    a8 = a.to(torch.float8_e4m3fn).cuda()
    b8 = b.to(torch.float8_e4m3fn).cuda().t().contiguous().t()
    one = torch.tensor(1.0, device="cuda")
    y = torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.float32,
                         use_fast_accum=fast)
    return float(y[0, 0])


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    for fast in (False, True):
        for small_first in (False, True):
            row = [f"{run(mn, small_first, fast):.6f}" for mn in (16, 64, 256, 1024)]
            print(f"fast={fast!s:5} small_first={small_first!s:5} M=N=16,64,256,1024: {row}")
