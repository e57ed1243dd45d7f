import os
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.platforms import current_platform
from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearLayerConfig
from vllm.model_executor.kernels.linear.scaled_mm.pytorch import (
    PerTensorTorchFP8ScaledMMLinearKernel, ChannelWiseTorchFP8ScaledMMLinearKernel)
from vllm.model_executor.layers.quantization.utils.quant_utils import (
    kFp8StaticTensorSym, kFp8DynamicTensorSym, kFp8DynamicTokenSym, kFp8StaticChannelSym)

print("platform", type(current_platform).__name__, current_platform.fp8_dtype())
torch.manual_seed(0)
M, N, K = 5, 64, 128
x = torch.randn(M, K, dtype=torch.bfloat16)
w_nk = (torch.randn(N, K) * 0.1)

def make_layer(w_nk, per_channel, static_scale=None):
    if per_channel:
        ws = (w_nk.abs().amax(dim=1, keepdim=True) / 448.0).float()   # [N,1] like compressed-tensors
    else:
        ws = (w_nk.abs().max() / 448.0).float()                        # 0-D like fp8.py after PWAL
    wq = (w_nk / ws).clamp(-448, 448).to(torch.float8_e4m3fn)          # [N,K]
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(wq.t(), requires_grad=False)     # [K,N] column-major view (as the loaders hand it)
    layer.weight_scale = torch.nn.Parameter(ws, requires_grad=False)
    layer.input_scale = None if static_scale is None else torch.nn.Parameter(static_scale, requires_grad=False)
    layer.input_scale_ub = None
    return layer

def ref(x, layer, xq, xs, ws):
    return (xq.float() @ layer.weight.float()) * xs * ws.reshape(1, -1)

from vllm.config import CompilationConfig, CompilationMode
VC = VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE))
print("custom_ops", VC.compilation_config.custom_ops)
with set_current_vllm_config(VC):
    cc = VllmConfig().compilation_config
    for cls, akey, wkey, per_channel, xs_static in [
        (PerTensorTorchFP8ScaledMMLinearKernel, kFp8DynamicTensorSym, kFp8StaticTensorSym, False, None),
        (PerTensorTorchFP8ScaledMMLinearKernel, kFp8StaticTensorSym, kFp8StaticTensorSym, False, torch.tensor(0.02)),
        (ChannelWiseTorchFP8ScaledMMLinearKernel, kFp8DynamicTokenSym, kFp8StaticChannelSym, True, None),
        (ChannelWiseTorchFP8ScaledMMLinearKernel, kFp8DynamicTokenSym, kFp8StaticTensorSym, False, None),
    ]:
        cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=wkey, activation_quant_key=akey,
                                           weight_shape=(N, K), input_dtype=torch.bfloat16,
                                           out_dtype=torch.bfloat16)
        print(cls.__name__, "is_supported", cls.is_supported(), "can_implement", cls.can_implement(cfg))
        k = cls(cfg, layer_param_names=["weight", "weight_scale", "input_scale", "input_scale_ub"])
        layer = make_layer(w_nk, per_channel, xs_static)
        k.process_weights_after_loading(layer)
        y = k.apply_weights(layer, x, bias=None)
        # reproduce activation quantization the way QuantFP8.forward_native does
        xq, xs = k.quant_fp8(x, layer.input_scale, None)
        print("  padding", k.get_output_padding(), "quant_fp8 fwd", k.quant_fp8._forward_method.__name__,
              "xq", tuple(xq.shape), xq.dtype, "xs", tuple(xs.shape))
        r = ref(x, layer, xq[:M], xs, layer.weight_scale).to(torch.bfloat16)
        print("  y", tuple(y.shape), y.dtype, "max|y-ref|", (y.float() - r.float()).abs().max().item(),
              "max|y-x@w|", (y.float() - x.float() @ w_nk.t()).abs().max().item())
        y3 = k.apply_weights(layer, x.view(1, M, K), bias=torch.ones(N, dtype=torch.bfloat16))
        print("  3-D + bias ->", tuple(y3.shape))
