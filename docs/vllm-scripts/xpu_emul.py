import os
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearLayerConfig
from vllm.model_executor.kernels.linear.scaled_mm.xpu import XPUW8A8FP8LinearKernel, XPUW8A16FP8LinearKernel
from vllm.model_executor.layers.quantization.utils.quant_utils import (
    kFp8DynamicTokenSym, kFp8StaticChannelSym, kFp8StaticTensorSym, QuantKey, kStaticTensorScale)

# --- CPU contract emulation of _xpu_C ops (routing as in csrc/xpu/onednn/*) ---
lib = torch.library.Library("_xpu_C", "DEF")
lib.define("fp8_gemm(Tensor A, Tensor B, ScalarType? out_dtype, Tensor? A_scale_, Tensor? B_scale_, Tensor? bias_) -> Tensor")
lib.define("fp8_gemm_w8a16(Tensor A, Tensor B, Tensor? B_scale_, Tensor? bias_) -> Tensor")
calls = []
def fp8_gemm(A, B, out_dtype, As, Bs, bias):
    calls.append(("fp8_gemm", tuple(A.shape), tuple(B.shape), B.stride(), None if As is None else tuple(As.shape),
                  None if Bs is None else tuple(Bs.shape), out_dtype))
    assert As is None or As.is_contiguous(); assert Bs is None or Bs.is_contiguous()
    assert A.dtype == B.dtype and A.dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
    out_dtype = out_dtype or torch.float16
    As = torch.ones(1) if As is None else As; Bs = torch.ones(1) if Bs is None else Bs
    assert not (As.dim() == 2 and As.size(1) > 1), "block path not emulated here"
    N = B.shape[-1]; A2 = A.reshape(-1, A.shape[-1])
    sa = As.reshape(1, 1) if As.numel() == 1 else As.reshape(-1, 1)      # per-token: M values
    sb = Bs.reshape(1, 1) if Bs.numel() == 1 else Bs.reshape(1, N)       # mask 1<<1: N values in memory order
    y = (A2.float() @ B.float()) * sa * sb
    if bias is not None and bias.numel() > 0: y = y + bias.float()
    return y.to(out_dtype).reshape(*A.shape[:-1], N)
def fp8_gemm_w8a16(A, B, Bs, bias):
    calls.append(("fp8_gemm_w8a16", tuple(A.shape), tuple(B.shape), B.stride(), None if Bs is None else tuple(Bs.shape)))
    N = B.shape[-1]; K = A.shape[-1]
    Bs = torch.ones(1, dtype=A.dtype) if Bs is None else Bs
    if Bs.dim() == 2 and Bs.size(0) > 1:       # read as block scale [K/g, N/g] (0.1.16.2 rule)
        assert K % Bs.size(0) == 0 and N % Bs.size(1) == 0, "TORCH_CHECK: block scale dims must divide [K,N]"
        raise RuntimeError(f"block route taken for scale {tuple(Bs.shape)}")
    sb = Bs.reshape(1, 1) if Bs.numel() == 1 else Bs.reshape(1, N)
    y = (A.reshape(-1, K).float() @ (B.float() * sb.float()))
    if bias is not None: y = y + bias.float()
    return y.to(A.dtype).reshape(*A.shape[:-1], N)
lib.impl("fp8_gemm", fp8_gemm, "CPU")
lib.impl("fp8_gemm_w8a16", fp8_gemm_w8a16, "CPU")

class EmuW8A8(XPUW8A8FP8LinearKernel):
    @classmethod
    def is_supported(cls, compute_capability=None):
        return True, None          # explicit: emulated op on CPU, platform is NOT xpu
class EmuW8A16(XPUW8A16FP8LinearKernel):
    @classmethod
    def is_supported(cls, compute_capability=None):
        return True, None

torch.manual_seed(0)
for (N, K) in [(64, 128), (128, 128)]:
    M = 5
    x = torch.randn(M, K, dtype=torch.bfloat16); w = torch.randn(N, K) * 0.1
    ws = (w.abs().amax(1, keepdim=True) / 448).float()            # [N,1] compressed-tensors channel scale
    wq = (w / ws).to(torch.float8_e4m3fn)
    with set_current_vllm_config(VllmConfig()):
        for cls, wkey in [(EmuW8A8, kFp8StaticChannelSym), (EmuW8A16, kFp8StaticChannelSym)]:
            cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=wkey, activation_quant_key=kFp8DynamicTokenSym,
                  weight_shape=(N, K), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
            layer = torch.nn.Module()
            layer.weight = torch.nn.Parameter(wq.t(), requires_grad=False)   # [K,N] col-major, as CT/fp8.py hand it
            layer.weight_scale = torch.nn.Parameter(ws.clone(), requires_grad=False)
            layer.input_scale = None; layer.input_scale_ub = None
            k = cls(cfg, ["weight", "weight_scale", "input_scale", "input_scale_ub"])
            k.process_weights_after_loading(layer)
            print(f"N={N} K={K} {cls.__bases__[0].__name__}: after PWAL weight {tuple(layer.weight.shape)} stride {layer.weight.stride()} "
                  f"scale {tuple(layer.weight_scale.shape)} contig {layer.weight_scale.is_contiguous()}")
            calls.clear()
            try:
                y = k.apply_weights(layer, x, None)
                err = (y.float() - x.float() @ (wq.float() * ws).t()).abs().max().item()
                print("   call", calls[-1], "y", tuple(y.shape), y.dtype, "max|y - x@Wdq|", round(err, 4))
            except Exception as e:
                print("   call", calls[-1] if calls else None, "ERROR", type(e).__name__, e)
# e5m2 key is not in the XPU W8A8 supported set (set membership compares the whole QuantKey):
e5 = QuantKey(torch.float8_e5m2, kStaticTensorScale, symmetric=True)
cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=e5, activation_quant_key=e5, weight_shape=(64,128),
      input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
print("XPUW8A8.can_implement(e5m2 keys):", XPUW8A8FP8LinearKernel.can_implement(cfg))
cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=kFp8StaticTensorSym, activation_quant_key=kFp8StaticTensorSym,
      weight_shape=(64,128), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
print("XPUW8A16.can_implement(W8A8 static-tensor config):", XPUW8A16FP8LinearKernel.can_implement(cfg))
print("XPUW8A8.is_supported() on CPU platform:", XPUW8A8FP8LinearKernel.is_supported())
