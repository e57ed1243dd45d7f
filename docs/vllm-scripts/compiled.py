import os
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
import torch
from vllm.config import VllmConfig, set_current_vllm_config, CompilationConfig, CompilationMode
from vllm.platforms import current_platform
from vllm.model_executor.layers.quantization.input_quant_fp8 import QuantFP8
from vllm.model_executor.layers.quantization.utils.quant_utils import GroupShape
print("simple_compile_backend:", current_platform.simple_compile_backend)
for name, vc in [("VllmConfig()", VllmConfig()), ("mode=NONE", VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE)))]:
    with set_current_vllm_config(vc):
        q = QuantFP8(static=False, group_shape=GroupShape.PER_TOKEN, num_token_padding=17)
        fm = q._forward_method
        print(name, "mode", vc.compilation_config.mode, "fwd:", type(fm).__name__, getattr(fm, "__qualname__", None), "is bound forward_native:", getattr(fm, "__func__", None) is QuantFP8.forward_native)
        x = torch.randn(5, 128, dtype=torch.bfloat16)
        a, s = q(x); b, t = q.forward_native(x)
        print("   same bits as eager forward_native:", torch.equal(a.view(torch.uint8), b.view(torch.uint8)), torch.equal(s, t))
