import os
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import torch
from vllm.config import VllmConfig, set_current_vllm_config, CompilationConfig, CompilationMode
from vllm.model_executor.kernels.linear.scaled_mm.ScaledMMLinearKernel import FP8ScaledMMLinearLayerConfig
from vllm.model_executor.kernels.linear.scaled_mm.pytorch import ChannelWiseTorchFP8ScaledMMLinearKernel as C
from vllm.model_executor.layers.quantization.utils.quant_utils import kFp8DynamicTensorSym, kFp8StaticChannelSym
M,N,K=5,64,128
with set_current_vllm_config(VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE))):
    cfg = FP8ScaledMMLinearLayerConfig(weight_quant_key=kFp8StaticChannelSym, activation_quant_key=kFp8DynamicTensorSym, weight_shape=(N,K), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
    print(C.can_implement(cfg)); k = C(cfg, ["weight","weight_scale","input_scale","input_scale_ub"])
    L = torch.nn.Module(); L.weight = torch.nn.Parameter(torch.randn(N,K).to(torch.float8_e4m3fn).t(), requires_grad=False)
    L.weight_scale = torch.nn.Parameter(torch.full((N,1), 0.01), requires_grad=False); L.input_scale=None; L.input_scale_ub=None
    try: print(k.apply_weights(L, torch.randn(M,K,dtype=torch.bfloat16)).shape)
    except Exception as e: print("ERR", type(e).__name__, e)
    L.weight_scale = torch.nn.Parameter(torch.full((1,N), 0.01), requires_grad=False)
    cfg2 = FP8ScaledMMLinearLayerConfig(weight_quant_key=kFp8StaticChannelSym, activation_quant_key=kFp8StaticChannelSym.__class__(torch.float8_e4m3fn, __import__('vllm.model_executor.layers.quantization.utils.quant_utils', fromlist=['x']).kDynamicTokenScale), weight_shape=(N,K), input_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
    k2 = C(cfg2, ["weight","weight_scale","input_scale","input_scale_ub"])
    try: print("[1,N] Bs:", k2.apply_weights(L, torch.randn(M,K,dtype=torch.bfloat16)).shape)
    except Exception as e: print("[1,N] Bs ERR", type(e).__name__, str(e)[:150])
