import os
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.kernels.linear import init_fp8_linear_kernel, _POSSIBLE_FP8_KERNELS, is_supported_and_can_implement_kernel
from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearLayerConfig
from vllm.model_executor.kernels.linear.scaled_mm.pytorch import PerTensorTorchFP8ScaledMMLinearKernel
from vllm.model_executor.layers.quantization.utils.quant_utils import kFp8DynamicTokenSym, kFp8StaticChannelSym, kFp8StaticTensorSym, kFp8DynamicTensorSym
from vllm.platforms import PlatformEnum, current_platform
cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=kFp8StaticTensorSym, activation_quant_key=kFp8DynamicTensorSym,
      weight_shape=(64, 128), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
try:
    PerTensorTorchFP8ScaledMMLinearKernel(cfg, ["weight", "weight_scale", "input_scale", "input_scale_ub"])
except Exception as e:
    print("without VllmConfig:", type(e).__name__, str(e)[:120])
vc = VllmConfig()
print("VllmConfig() compilation mode:", vc.compilation_config.mode, "custom_ops:", vc.compilation_config.custom_ops, "backend:", vc.compilation_config.backend)
print("AMX tile:", torch.cpu._is_amx_tile_supported(), "device capability:", current_platform.get_device_capability())
with set_current_vllm_config(vc):
    for ak, wk in [(kFp8DynamicTensorSym, kFp8StaticTensorSym), (kFp8StaticTensorSym, kFp8StaticTensorSym), (kFp8DynamicTokenSym, kFp8StaticChannelSym), (kFp8DynamicTokenSym, kFp8StaticTensorSym)]:
        c = FP8ScaledMMLinearLayerConfig(weight_quant_key=wk, activation_quant_key=ak, weight_shape=(64, 128), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
        reasons = [is_supported_and_can_implement_kernel(k, c, None)[1] or f"{k.__name__} OK" for k in _POSSIBLE_FP8_KERNELS[PlatformEnum.CPU]]
        k = init_fp8_linear_kernel(activation_quant_key=ak, weight_quant_key=wk, input_dtype=torch.bfloat16, out_dtype=torch.bfloat16, weight_shape=(64, 128))
        print(ak, wk, "->", type(k).__name__); [print("    ", r) for r in reasons]
