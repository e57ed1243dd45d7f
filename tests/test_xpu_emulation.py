"""The CPU contract emulation of vllm-xpu-kernels' ``_xpu_C`` FP8 GEMM ops (kernel/xpu_emulation.py).

Contract violations raise XpuContractError naming the argument; each scale route returns the
golden answer (``scaled_mm_exact`` for per-tensor/token/channel; an independent float64
computation on exactly representable data for the grouped routes); CALLS records the route.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden.matmul import scaled_mm_exact
from kernel import xpu_emulation as xe
from kernel.xpu_emulation import XpuContractError

E4, E5 = torch.float8_e4m3fn, torch.float8_e5m2
BF, HF, F32 = torch.bfloat16, torch.float16, torch.float32
FMT = {E4: "e4m3fn", E5: "e5m2", BF: "bf16", HF: "fp16"}
M, K, N = 5, 64, 32


@pytest.fixture(scope="module", autouse=True)
def _install():
    xe.install()


def ops():
    return torch.ops._xpu_C


def gen(seed):
    return torch.Generator().manual_seed(seed)


def fp8(shape, dtype=E4, seed=0, ints=False):
    """Random FP8 tensor: normal values (non-trivial rounding) or small integers (exact sums)."""
    g = gen(seed)
    x = torch.randint(-8, 9, shape, generator=g).float() if ints else 2 * torch.randn(shape, generator=g)
    return x.to(dtype)


def scale(shape, seed=1, pow2=False):
    g = gen(seed)
    if pow2:
        return torch.pow(2.0, torch.randint(-3, 4, shape, generator=g).float())
    return torch.rand(shape, generator=g) + 0.5


def weight(dtype=E4, seed=2, ints=False, k=K, n=N):
    """The loaders' weight: a [K,N] column-major view of a contiguous [N,K] tensor."""
    return fp8((n, k), dtype, seed, ints).t()


def codes(t):
    return t.view(torch.uint8).numpy()


def vals(t):
    return t.double().numpy()


def exact_ref(a, b, sa, sb, group_k, bias, dtype):
    """Independent float64 ``sum_g sa[:,g] sb[g,:] (A_g @ B_g) + bias`` for data whose result
    is exact in float32 (small integers times powers of two), rounded once to ``dtype``."""
    k = a.shape[1]
    sa, sb = np.broadcast_to(sa, (a.shape[0], k // group_k)), np.broadcast_to(sb, (k // group_k, b.shape[1]))
    y = sum(sa[:, [g]] * sb[[g], :] * (a[:, g * group_k:(g + 1) * group_k] @ b[g * group_k:(g + 1) * group_k])
            for g in range(k // group_k))
    y = y + (0.0 if bias is None else bias)
    assert np.array_equal(y.astype(np.float32), y), "test data not exact in float32"
    return torch.from_numpy(y).float().to(dtype)


def close_to(y, ref64):
    """``y`` is ``ref64`` (a float64 approximation of the exact value) rounded to y's dtype."""
    half_ulp = 2.0 ** -(9 if y.dtype == BF else 12)
    np.testing.assert_array_less(np.abs(vals(y) - ref64), half_ulp * 2 * np.abs(ref64) + 1e-30)


# --- install --------------------------------------------------------------------------------


def test_install_idempotent_and_installed():
    lib = xe._LIB
    xe.install()
    xe.install()
    assert xe.installed() and xe._LIB is lib
    for name in xe.SCHEMAS:
        assert hasattr(ops(), name)
    assert xe.LABEL.startswith("emulated")


def test_install_refuses_to_shadow_foreign_op():
    saved = xe._LIB
    xe._LIB = None  # the ops now look as if someone else (vllm_xpu_kernels) defined them
    try:
        with pytest.raises(RuntimeError, match="refuses to shadow"):
            xe.install()
        assert not xe.installed()
    finally:
        xe._LIB = saved


# --- routes give the golden answer ------------------------------------------------------------

SA = {"none": None, "[]": (), "[1]": (1,), "[M,1]": (M, 1), "[M]": (M,)}
SB = {"none": None, "[]": (), "[1]": (1,), "[N]": (N,), "[1,N]": (1, N), "[N,1]": (N, 1)}


@pytest.mark.parametrize("sb", SB)
@pytest.mark.parametrize("sa", SA)
def test_fp8_gemm_scale_routes_match_golden(sa, sb):
    A, B = fp8((M, K), seed=3), weight(seed=4)
    As = None if SA[sa] is None else scale(SA[sa], 5)
    Bs = None if SB[sb] is None else scale(SB[sb], 6)
    bias = torch.randn(N, generator=gen(7)).to(BF)
    xe.clear_calls()
    y = ops().fp8_gemm(A, B, BF, As, Bs, bias)
    ref = scaled_mm_exact(codes(A), "e4m3fn", codes(B), "e4m3fn",
                          1.0 if As is None else As.numpy(), 1.0 if Bs is None else Bs.numpy(),
                          vals(bias), "bf16")
    assert y.dtype == BF and y.shape == (M, N) and y.is_contiguous()
    assert np.array_equal(vals(y), ref)
    call = xe.CALLS[-1]
    assert call["a_route"] == ("per-token" if sa in ("[M,1]", "[M]") else "per-tensor")
    assert call["b_route"] == ("per-channel" if sb in ("[N]", "[1,N]", "[N,1]") else "per-tensor")
    assert call["route"] == f"{call['a_route']}/{call['b_route']}"
    assert call["b_layout"] == "nt" and call["bias_kind"] == "n" and "error" not in call


@pytest.mark.parametrize("bias_dtype", [None, F32, BF, HF])
@pytest.mark.parametrize("out", [BF, HF, None])
@pytest.mark.parametrize("dtype", [E4, E5])
def test_fp8_gemm_formats_and_outputs_match_golden(dtype, out, bias_dtype):
    A, B = fp8((M, K), dtype, seed=8), weight(dtype, seed=9)
    As, Bs = scale((M, 1), 10), scale((N, 1), 11)
    bias = None if bias_dtype is None else torch.randn(N, generator=gen(12)).to(bias_dtype)
    y = ops().fp8_gemm(A, B, out, As, Bs, bias)
    out_dtype = HF if out is None else out  # out_dtype None means fp16
    ref = scaled_mm_exact(codes(A), FMT[dtype], codes(B), FMT[dtype], As.numpy(), Bs.numpy(),
                          None if bias is None else vals(bias), FMT[out_dtype])
    assert y.dtype == out_dtype and np.array_equal(vals(y), ref)


def test_b_scale_shapes_are_all_per_channel():
    A, B = fp8((M, K), seed=13), weight(seed=14)
    s = scale((N,), 15)
    ys = [ops().fp8_gemm(A, B, BF, scale((M, 1)), s.reshape(shape), None)
          for shape in [(N,), (1, N), (N, 1)]]
    assert all(torch.equal(ys[0], y) for y in ys[1:])


def test_b_stride_orders_give_identical_results():
    A, B_nt = fp8((M, K), seed=16), weight(seed=17)
    B_nn = B_nt.contiguous()
    assert B_nt.stride(-2) == 1 and B_nn.stride(-1) == 1
    args = (BF, scale((M, 1)), scale((N,)), None)
    xe.clear_calls()
    y_nt, y_nn = ops().fp8_gemm(A, B_nt, *args), ops().fp8_gemm(A, B_nn, *args)
    assert torch.equal(y_nt, y_nn)
    assert [c["b_layout"] for c in xe.CALLS] == ["nt", "nn"]


@pytest.mark.parametrize("as_shape", [(6, 1), (2, 3, 1), (6,)])
def test_3d_a(as_shape):
    A3, B = fp8((2, 3, K), seed=18), weight(seed=19)
    As = scale(as_shape, 20)
    y3 = ops().fp8_gemm(A3, B, HF, As, scale((N,)), None)
    y2 = ops().fp8_gemm(A3.reshape(6, K), B, HF, As.reshape(6, 1), scale((N,)), None)
    assert y3.shape == (2, 3, N) and torch.equal(y3.reshape(6, N), y2)
    assert xe.CALLS[-2]["a_route"] == "per-token"


def test_3d_b_with_batch_one():
    A3, B = fp8((1, M, K), seed=21), weight(seed=22)
    y = ops().fp8_gemm(A3, B.unsqueeze(0), BF, None, None, None)
    assert torch.equal(y[0], ops().fp8_gemm(A3[0], B, BF, None, None, None))


def test_empty_bias_is_no_bias():
    A, B = fp8((M, K), seed=23), weight(seed=24)
    xe.clear_calls()
    y0 = ops().fp8_gemm(A, B, BF, None, scale((N,)), None)
    y1 = ops().fp8_gemm(A, B, BF, None, scale((N,)), torch.Tensor())
    assert torch.equal(y0, y1) and xe.CALLS[-1]["bias_kind"] == "none"


@pytest.mark.parametrize("shape,kind", [((1,), "scalar"), ((), "scalar"), ((N,), "n"),
                                        ((1, N), "n"), ((M, N), "mn"), ((M, 1), "m")])
def test_bias_kinds(shape, kind):
    A, B = fp8((M, K), seed=25, ints=True), weight(seed=26, ints=True)
    bias = torch.randint(-20, 21, shape, generator=gen(27)).float()
    y = ops().fp8_gemm(A, B, BF, None, None, bias)
    full = np.broadcast_to(bias.numpy().reshape(shape if kind != "scalar" else (1, 1)), (M, N))
    assert torch.equal(y, exact_ref(vals(A), vals(B), 1.0, 1.0, K, full, BF))
    assert xe.CALLS[-1]["bias_kind"] == kind


@pytest.mark.parametrize("k", [1, 2, 3])
def test_row_bias_with_tiny_k(k):
    A, B = fp8((M, k), seed=80, ints=True), weight(seed=81, ints=True, k=k)
    bias = torch.randn(M, 1, generator=gen(82)).to(BF)  # random bf16: exact in float32 sums
    y = ops().fp8_gemm(A, B, HF, scale((M, 1), 83, pow2=True), None, bias)
    full = np.broadcast_to(vals(bias), (M, N))
    As = scale((M, 1), 83, pow2=True).numpy()
    assert torch.equal(y, exact_ref(vals(A), vals(B), As, 1.0, k, full, HF))


def test_bias_n_with_one_row_is_read_as_mn():
    A, B = fp8((1, K), seed=28), weight(seed=29)
    bias = torch.randn(N, generator=gen(30))
    y = ops().fp8_gemm(A, B, BF, None, None, bias)
    assert xe.CALLS[-1]["bias_kind"] == "mn"  # get_bias_type tests numel == m*n first: same values
    assert torch.equal(y, ops().fp8_gemm(A, B, BF, None, None, bias.reshape(1, 1, N)[0]))


@pytest.mark.parametrize("out", [BF, HF])
def test_fp8_gemm_block_route(out):
    kb, nb = 4, 2  # K=64 in 4 groups of 16; N=32 in 2 blocks of 16
    A, B = fp8((M, K), seed=31, ints=True), weight(seed=32, ints=True)
    As, Bs = scale((M, kb), 33, pow2=True), scale((kb, nb), 34, pow2=True)
    bias = torch.randint(-9, 10, (N,), generator=gen(35)).to(BF)
    xe.clear_calls()
    y = ops().fp8_gemm(A, B, out, As, Bs, bias)
    ref = exact_ref(vals(A), vals(B), As.numpy(), np.repeat(Bs.numpy(), N // nb, axis=1), K // kb,
                    vals(bias), out)
    assert torch.equal(y, ref)
    assert xe.CALLS[-1]["route"] == "block/block"


def test_fp8_gemm_out_writes_into_out():
    A, B = fp8((M, K), seed=36), weight(seed=37)
    args = (BF, scale((M, 1)), scale((N,)), torch.randn(N, generator=gen(38)))
    out = torch.empty(M, N, dtype=BF)
    r = ops().fp8_gemm_out(out, A, B, *args)
    assert r.data_ptr() == out.data_ptr() and torch.equal(out, ops().fp8_gemm(A, B, *args))


def test_zero_rows():
    A, B = fp8((0, K)), weight()
    y = ops().fp8_gemm(A, B, BF, torch.ones(0, 1), scale((N,)), None)
    assert y.shape == (0, N) and y.dtype == BF
    A0 = torch.from_numpy(np.zeros((0, K), np.uint8)).view(E4)  # NumPy gives strides (0, 0)
    assert ops().fp8_gemm(A0, B, BF, None, None, None).shape == (0, N)


# --- fp8_gemm_w8a16 ---------------------------------------------------------------------------


@pytest.mark.parametrize("a_dtype", [BF, HF])
@pytest.mark.parametrize("s_shape", [(1, N), (N,)])
def test_w8a16_per_channel(s_shape, a_dtype):
    x, B = torch.randn(M, K, generator=gen(40)).to(a_dtype), weight(seed=41)
    s = scale((N,), 42)
    bias = torch.randn(N, generator=gen(43)).to(a_dtype)
    xe.clear_calls()
    y = ops().fp8_gemm_w8a16(x, B, s.reshape(s_shape), bias)
    assert y.dtype == a_dtype and y.shape == (M, N)
    close_to(y, vals(x) @ (vals(B) * s.double().numpy()) + vals(bias))
    call = xe.CALLS[-1]
    assert call["route"] == "unquantized/per-channel" and call["a_dtype"] == str(a_dtype)[6:]
    if s_shape == (N,):
        assert torch.equal(y, ops().fp8_gemm_w8a16(x, B, s.reshape(1, N), bias))


def test_w8a16_per_tensor_and_default_scale_and_3d():
    x, B = torch.randn(2, 3, K, generator=gen(44)).to(BF), weight(E5, seed=45)
    y1 = ops().fp8_gemm_w8a16(x, B, torch.tensor(1.0), None)
    y0 = ops().fp8_gemm_w8a16(x, B, None, None)
    assert y0.shape == (2, 3, N) and torch.equal(y0, y1)
    assert xe.CALLS[-1]["route"] == "unquantized/per-tensor"
    close_to(y0.reshape(6, N), vals(x.reshape(6, K)) @ vals(B))


def test_w8a16_n1_scale_is_a_block_scale():
    """vllm-xpu-kernels #440: a per-channel [N,1] scale takes the block route."""
    x = torch.randn(M, K, generator=gen(46)).to(BF)
    with pytest.raises(XpuContractError, match=r"B_scale.*Weight block scale dims must divide"):
        ops().fp8_gemm_w8a16(x, weight(n=24), scale((24, 1)), None)  # K=64 % 24 != 0
    with pytest.raises(XpuContractError, match=r"B_scale.*out of bounds.*\[N,1\]"):
        ops().fp8_gemm_w8a16(x, weight(n=K), scale((K, 1)), None)  # K == N: blk 1, reads K*N
    assert "error" in xe.CALLS[-1] and xe.CALLS[-1]["route"] is None


def test_w8a16_consistent_block_scale():
    blk = 16
    x = torch.randint(-8, 9, (M, K), generator=gen(47)).to(BF)
    B = weight(seed=48, ints=True)
    s = scale((K // blk, N // blk), 49, pow2=True)  # [4, 2]: blk = K/4 = 16 = N/2
    y = ops().fp8_gemm_w8a16(x, B, s, None)
    full = np.repeat(np.repeat(s.numpy(), blk, axis=0), blk, axis=1)
    assert torch.equal(y, exact_ref(vals(x), vals(B) * full, 1.0, 1.0, K, None, BF))
    assert xe.CALLS[-1]["route"] == "unquantized/block"


# --- fp8_bmm ----------------------------------------------------------------------------------


def test_bmm_matches_fp8_gemm_per_batch():
    A, B = fp8((2, M, K), seed=50), torch.stack([weight(seed=51), weight(seed=52)])
    As, Bs, bias = scale((2, M), 53), scale((2, N), 54), torch.randn(N, generator=gen(55))
    y = ops().fp8_bmm(A, B, BF, As, Bs, bias)
    assert y.shape == (2, M, N) and xe.CALLS[-1]["route"] == "per-token/per-channel"
    for i in range(2):
        assert torch.equal(y[i], ops().fp8_gemm(A[i], B[i], BF, As[i].reshape(M, 1), Bs[i], bias))


def test_bmm_block_matches_fp8_gemm_block():
    A, B = fp8((2, M, K), seed=56), torch.stack([weight(seed=57), weight(seed=58)])
    As, Bs = scale((2, M, 4), 59), scale((2, 4, 2), 60)
    y = ops().fp8_bmm(A, B, HF, As, Bs, torch.tensor([0.5]))
    assert xe.CALLS[-1]["route"] == "block/block"
    for i in range(2):
        assert torch.equal(y[i], ops().fp8_gemm(A[i], B[i], HF, As[i], Bs[i], torch.tensor([0.5])))


def test_bmm_1d_b_scale_with_batch_one():
    A, B = fp8((1, M, K), seed=61), weight(seed=62).unsqueeze(0)
    s = scale((N,), 63)
    assert torch.equal(ops().fp8_bmm(A, B, BF, None, s, None),
                       ops().fp8_bmm(A, B, BF, None, s.reshape(1, N), None))


# --- contract violations ----------------------------------------------------------------------


def _noncontig(shape):
    return torch.rand(*shape, 2)[..., 0]  # same shape, last stride 2


_A, _B = fp8((M, K), seed=70), weight(seed=71)
_X = torch.randn(M, K, generator=gen(72)).to(BF)
_A3, _B3 = fp8((2, M, K), seed=73), torch.stack([weight(seed=74)] * 2)
_S = lambda *shape: torch.ones(shape)  # noqa: E731

# (op, args, argument named, expected text)
VIOLATIONS = {
    # fp8_gemm
    "A-1d": ("fp8_gemm", (fp8((K,)), _B, BF, None, None, None), "A", "only support 2D and 3D inputs"),
    "A-4d": ("fp8_gemm", (fp8((1, 1, M, K)), _B, BF, None, None, None), "A", "2D and 3D inputs"),
    "B-1d": ("fp8_gemm", (_A, fp8((K,)), BF, None, None, None), "B", "2D and 3D weights"),
    "B-3d-A-2d": ("fp8_gemm", (_A, _B3, BF, None, None, None), "A", "3D input when using batched"),
    "B-batch-mismatch": ("fp8_gemm", (fp8((3, M, K)), _B3, BF, None, None, None), "B",
                         "batches to match"),
    "B-batched": ("fp8_gemm", (_A3, _B3, BF, None, None, None), "B", "reads only B[0]"),
    "A_scale-noncontig": ("fp8_gemm", (_A, _B, BF, _noncontig((M, 1)), None, None), "A_scale",
                          "A_scale must be contiguous for fp8 matmul"),
    "B_scale-noncontig": ("fp8_gemm", (_A, _B, BF, None, _noncontig((N,)), None), "B_scale",
                          "B_scale must be contiguous for fp8 matmul"),
    "bias-noncontig": ("fp8_gemm", (_A, _B, BF, None, None, _noncontig((N,))), "bias",
                       "bias must be contiguous for fp8 matmul"),
    "dtype-mixed": ("fp8_gemm", (_A, weight(E5), BF, None, None, None), "B",
                    "input and weight must be f8_e5m2 or f8_e4m3fn for fp8 matmul"),
    "dtype-A-bf16": ("fp8_gemm", (_X, _B, BF, None, None, None), "A",
                     "input and weight must be f8_e5m2 or f8_e4m3fn"),
    "out-fp32": ("fp8_gemm", (_A, _B, F32, None, None, None), "out_dtype",
                 "output must be float16 or bfloat16 for fp8 matmul"),
    "A_scale-fp16": ("fp8_gemm", (_A, _B, BF, _S(M, 1).half(), None, None), "A_scale", "float32"),
    "B_scale-bf16": ("fp8_gemm", (_A, _B, BF, None, _S(N).to(BF), None), "B_scale", "float32"),
    "B-strided": ("fp8_gemm", (_A, fp8((K, 2 * N))[:, ::2], BF, None, None, None), "B",
                  "row-major (stride(-1)==1) or column-major"),
    "K-mismatch": ("fp8_gemm", (_A, weight(k=K + 16), BF, None, None, None), "B", "K mismatch"),
    "A-col-major": ("fp8_gemm", (fp8((K, M)).t(), _B, BF, None, None, None), "A", "unit stride"),
    "A-3d-permuted": ("fp8_gemm", (fp8((M, 2, K)).transpose(0, 1), _B, BF, None, None, None),
                      "A", "leading dimension"),
    "A_scale-numel": ("fp8_gemm", (_A, _B, BF, _S(M + 1, 1), None, None), "A_scale",
                      "out of bounds"),
    "A_scale-1xM-block": ("fp8_gemm", (_A, _B, BF, _S(1, M), _S(N, 1), None), "A_scale",
                          "Mismatch group size in input and weight."),
    "block-B_scale-1d": ("fp8_gemm", (_A, _B, BF, _S(M, 4), _S(4), None), "B_scale", "2-D"),
    "block-divide": ("fp8_gemm", (_A, _B, BF, _S(M, 3), _S(3, 1), None), "B_scale",
                     "Weight block scale dims must divide [K, N]"),
    "block-rows": ("fp8_gemm", (_A, _B, BF, _S(M + 1, 4), _S(4, 2), None), "A_scale",
                   "out of bounds"),
    "B_scale-numel": ("fp8_gemm", (_A, _B, BF, None, _S(N + 1), None), "B_scale", "out of bounds"),
    "B_scale-block-shape": ("fp8_gemm", (_A, _B, BF, None, _S(2, N // 2), None), "B_scale",
                            "silent misread"),
    "bias-shape": ("fp8_gemm", (_A, _B, BF, None, None, _S(N + 1)), "bias",
                   "unsupported bias dim in matmul"),
    "bias-fp64": ("fp8_gemm", (_A, _B, BF, None, None, _S(N).double()), "bias",
                  "Unsupported data type for bias"),
    # fp8_gemm_out
    "out-shape": ("fp8_gemm_out", (torch.empty(M, N + 1, dtype=BF), _A, _B, BF, None, None, None),
                  "out", "expects out of shape"),
    "out-dtype": ("fp8_gemm_out", (torch.empty(M, N, dtype=HF), _A, _B, BF, None, None, None),
                  "out", "expects out of dtype"),
    "out-tensor-fp32": ("fp8_gemm_out", (torch.empty(M, N), _A, _B, None, None, None, None), "out_dtype",
                 "output must be float16 or bfloat16"),
    # fp8_gemm_w8a16
    "w16-B_scale-noncontig": ("fp8_gemm_w8a16", (_X, _B, _noncontig((N,)), None), "B_scale",
                              "B_scale must be contiguous for fp8 matmul"),
    "w16-bias-noncontig": ("fp8_gemm_w8a16", (_X, _B, None, _noncontig((N,))), "bias",
                           "bias must be contiguous for fp8 matmul"),
    "w16-A-fp32": ("fp8_gemm_w8a16", (_X.float(), _B, None, None), "A", "Unsupported data type"),
    "w16-A-fp8": ("fp8_gemm_w8a16", (_A, _B, None, None), "A", "Unsupported data type"),
    "w16-B-bf16": ("fp8_gemm_w8a16", (_X, _X.t(), None, None), "B",
                   "weight must be f8_e5m2 or f8_e4m3fn for fp8 matmul"),
    "w16-A-1d": ("fp8_gemm_w8a16", (_X[0], _B, None, None), "A", "2D and 3D inputs"),
    "w16-B-strided": ("fp8_gemm_w8a16", (_X, fp8((K, 2 * N))[:, ::2], None, None), "B",
                      "column-major"),
    "w16-K-mismatch": ("fp8_gemm_w8a16", (_X, weight(k=K + 16), None, None), "B", "K mismatch"),
    "w16-N1-divide": ("fp8_gemm_w8a16", (_X, weight(n=24), _S(24, 1), None), "B_scale",
                      "Weight block scale dims must divide [K, N]"),
    "w16-N1-K==N": ("fp8_gemm_w8a16", (_X, weight(n=K), _S(K, 1), None), "B_scale",
                    "out of bounds"),
    "w16-block-inconsistent": ("fp8_gemm_w8a16", (_X, _B, _S(4, 4), None), "B_scale",
                               "reads (K/blk)*(N/blk) = 4*2 = 8"),
    "w16-B_scale-numel": ("fp8_gemm_w8a16", (_X, _B, _S(N + 1), None), "B_scale", "out of bounds"),
    "w16-B_scale-fp64": ("fp8_gemm_w8a16", (_X, _B, _S(N).double(), None), "B_scale", "float32"),
    "w16-bias-shape": ("fp8_gemm_w8a16", (_X, _B, None, _S(3)), "bias",
                       "unsupported bias dim in matmul"),
    # fp8_bmm
    "bmm-A-2d": ("fp8_bmm", (_A, _B3, BF, None, None, None), "A",
                 "fp8_bmm expects A to be a 3D tensor"),
    "bmm-B-2d": ("fp8_bmm", (_A3, _B, BF, None, None, None), "B",
                 "fp8_bmm expects B to be a 3D tensor"),
    "bmm-batch": ("fp8_bmm", (fp8((3, M, K)), _B3, BF, None, None, None), "B", "batches to match"),
    "bmm-A_scale-noncontig": ("fp8_bmm", (_A3, _B3, BF, _noncontig((2, M)), None, None), "A_scale",
                              "A_scale must be contiguous for fp8 matmul"),
    "bmm-out-fp32": ("fp8_bmm", (_A3, _B3, F32, None, None, None), "out_dtype",
                     "output must be float16 or bfloat16"),
    "bmm-bias-mn": ("fp8_bmm", (_A3, _B3, BF, None, None, _S(2 * M, N)), "bias",
                    "Batched fp8 matmul only supports empty, scalar, or [N] bias."),
    "bmm-bias-m": ("fp8_bmm", (_A3, _B3, BF, None, None, _S(2 * M, 1)), "bias",
                   "Batched fp8 matmul only supports empty, scalar, or [N] bias."),
    "bmm-bias-N-one-row": ("fp8_bmm", (fp8((1, 1, K)), _B3[:1], BF, None, None, _S(N)), "bias",
                           "only supports empty, scalar, or [N] bias"),
    "bmm-bias-noncontig": ("fp8_bmm", (_A3, _B3, BF, None, None, _noncontig((N,))), "bias",
                           "no bias contiguity check"),
    "bmm-A_scale-rows": ("fp8_bmm", (_A3, _B3, BF, _S(2, M + 1), None, None), "A_scale",
                         "[B, M]"),
    "bmm-A_scale-1d": ("fp8_bmm", (_A3, _B3, BF, _S(2 * M), None, None), "A_scale",
                       "Unsupported batched src scale rank"),
    "bmm-A_scale-groups": ("fp8_bmm", (_A3, _B3, BF, _S(2, M, 3), None, None), "A_scale",
                           "gK dividing K"),
    "bmm-B_scale-1d-batch2": ("fp8_bmm", (_A3, _B3, BF, None, _S(N), None), "B_scale", "(batch 1)"),
    "bmm-B_scale-2d": ("fp8_bmm", (_A3, _B3, BF, None, _S(2, N + 1), None), "B_scale", "[B, N]"),
    "bmm-B_scale-block": ("fp8_bmm", (_A3, _B3, BF, None, _S(2, 3, 1), None), "B_scale",
                          "dividing [K, N]"),
    "bmm-B_scale-4d": ("fp8_bmm", (_A3, _B3, BF, None, _S(2, 1, 2, N), None), "B_scale",
                       "Unsupported batched weight scale rank"),
    "bmm-mixed-groups": ("fp8_bmm", (_A3, _B3, BF, _S(2, M, 2), _S(2, 4, 1), None), "A_scale",
                         "not emulated"),
}


@pytest.mark.parametrize("violation", VIOLATIONS)
def test_contract_violation_raises(violation):
    op, args, arg, text = VIOLATIONS[violation]
    xe.clear_calls()
    with pytest.raises(XpuContractError) as info:
        getattr(ops(), op)(*args)
    msg = str(info.value)
    assert msg.startswith(f"_xpu_C.{op}: ") and f"{arg}" in msg.split(": ")[1], msg
    assert text in msg, msg
    assert xe.CALLS[-1]["op"] == op and xe.CALLS[-1]["error"] == msg


def test_calls_record():
    xe.clear_calls()
    assert xe.CALLS == []
    ops().fp8_gemm_w8a16(_X, _B, _S(1, N), None)
    (call,) = xe.CALLS
    assert call == {**call, "op": "fp8_gemm_w8a16", "route": "unquantized/per-channel",
                    "a_shape": (M, K), "a_stride": (K, 1), "a_dtype": "bfloat16",
                    "b_shape": (K, N), "b_stride": (1, K), "b_dtype": "float8_e4m3fn",
                    "b_layout": "nt", "a_scale_shape": None, "b_scale_shape": (1, N),
                    "bias_shape": None, "bias_kind": "none", "out_dtype": "bfloat16"}
    assert "error" not in call
