"""Real models and building blocks through a render's ``check_module_contract``.

Models and layers that nobody here wrote (torchvision, timm, tiny Hugging Face transformers
built from configs, and these libraries' building blocks) are checked one by one; a correct
module must pass. Run with a Python that has torch, torchvision 0.28, timm and transformers
(``nox -s real_models`` makes one)::

    python tools/real_models.py [--src RENDER/src] [--set quick|full] [--only NAME ...]
                                [--json REPORT.json] [--markdown REPORT.md] [--workers 2]
                                [--timeout 300]

Without ``--src`` the template is rendered (copier, default answers) into a temporary
folder. Each case runs in a worker process with one torch thread, under a time limit.
The JSON report holds, per case: passed, the findings (rule, where, problem), an error of
the harness itself (a model that could not be built, a timeout), the wall and CPU seconds
of the check and of one forward+backward of the model on the same inputs, their ratio (in
CPU seconds, which a shared machine's load does not inflate), and the seconds and calls of
each of the checker's probes (timed from outside, by wrapping ``_Checker``'s methods).
The printed summary: counts, findings by rule and by kind, median and maximum cost;
``--markdown`` writes the same grouped for people, ``--from-json`` rewrites it from a
report without running anything.

``--profile NAME ...`` prints where one check's time goes (probes, calls, deep copies)
and what each of its operations costs alone (a forward on meta, in float16, under the
checker's watches; a deep copy; a pickle round trip). cProfile cannot do it: the
checker's ``_LocalNames`` replaces the profiler with ``sys.setprofile``.

PyPI's torchvision for Linux is a CUDA build whose C extension cannot load beside a CPU
torch; its pure-Python models import once ``torchvision._meta_registrations`` is stubbed,
which this script does when (only when) the extension fails to load. Nothing is
downloaded: every model is built with random weights.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import functools
import importlib
import inspect
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent

# -- the cases ------------------------------------------------------------------------------

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One module to check: how to build it and what to feed it (batch >= 2)."""

    name: str
    library: str  # torchvision, timm, transformers, block
    build: Callable[[], Any]
    inputs: Callable[[], Inputs]
    loss: Callable[[Any], Any] | None = None
    init: str | None = (
        None  # the library's init method, where it is not reset_parameters
    )
    # factory(**factory_kwargs) where the module takes device= and dtype=; "auto": try it.
    factory: Callable[..., Any] | str | None = None
    quick: bool = False  # in the quick set (tests/test_real_models.py)
    why: str = ""  # what the case stands for (quick set: the false positive it guards)


def _torch():
    import torch

    return torch


def _images(size: int, batch: int = 2, channels: int = 3) -> Callable[[], Inputs]:
    return lambda: ((_torch().randn(batch, channels, size, size),), {})


def _tokens(length: int = 8, vocab: int = 99, **extra: Callable[[], Any]):
    def inputs() -> Inputs:
        torch = _torch()
        kwargs = {"input_ids": torch.randint(3, vocab, (2, length))}
        kwargs.update({key: make() for key, make in extra.items()})
        return (), kwargs

    return inputs


def _logits(output: Any) -> Any:
    return output.logits.sum()


# torchvision ------------------------------------------------------------------------------


def _tv(name: str, **kwargs: Any) -> Callable[[], Any]:
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


def _tv_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10,
    )  # fmt: skip


def _segmentation(name: str) -> Callable[[], Any]:
    def build():
        import torchvision

        return torchvision.models.get_model(
            name, weights=None, weights_backbone=None, num_classes=4
        )

    return build


def _out(output: Any) -> Any:
    return output["out"].sum()


def _flows(output: Any) -> Any:
    return sum(flow.sum() for flow in output)


def _video() -> Inputs:
    return (_torch().randn(2, 3, 4, 32, 32),), {}


def _two_images() -> Inputs:
    torch = _torch()
    return (torch.randn(2, 3, 128, 128), torch.randn(2, 3, 128, 128)), {
        "num_flow_updates": 2
    }


TORCHVISION = [
    Case("tv.mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small", num_classes=10),
         _images(32), quick=True, why="a torchvision CNN (batch norm, SE, hardswish)"),
    Case("tv.resnet18", "torchvision", _tv("resnet18", num_classes=10), _images(64)),
    Case("tv.resnet50", "torchvision", _tv("resnet50", num_classes=10), _images(64)),
    Case("tv.resnext50_32x4d", "torchvision", _tv("resnext50_32x4d", num_classes=10), _images(64)),
    Case("tv.mobilenet_v2", "torchvision", _tv("mobilenet_v2", num_classes=10), _images(64)),
    Case("tv.mobilenet_v3_large", "torchvision", _tv("mobilenet_v3_large", num_classes=10),
         _images(64)),
    Case("tv.efficientnet_b0", "torchvision", _tv("efficientnet_b0", num_classes=10), _images(64)),
    Case("tv.efficientnet_v2_s", "torchvision", _tv("efficientnet_v2_s", num_classes=10),
         _images(64)),
    Case("tv.regnet_x_400mf", "torchvision", _tv("regnet_x_400mf", num_classes=10), _images(64)),
    Case("tv.regnet_y_400mf", "torchvision", _tv("regnet_y_400mf", num_classes=10), _images(64)),
    Case("tv.convnext_tiny", "torchvision", _tv("convnext_tiny", num_classes=10), _images(64)),
    Case("tv.densenet121", "torchvision", _tv("densenet121", num_classes=10), _images(64)),
    Case("tv.shufflenet_v2_x0_5", "torchvision", _tv("shufflenet_v2_x0_5", num_classes=10),
         _images(64)),
    Case("tv.squeezenet1_1", "torchvision", _tv("squeezenet1_1", num_classes=10), _images(64)),
    Case("tv.mnasnet0_5", "torchvision", _tv("mnasnet0_5", num_classes=10), _images(64)),
    Case("tv.googlenet", "torchvision", _tv("googlenet", num_classes=10, init_weights=True),
         _images(64), loss=lambda out: sum(o.sum() for o in out if o is not None)
         if isinstance(out, tuple) else out.sum()),
    Case("tv.inception_v3", "torchvision", _tv("inception_v3", num_classes=10, init_weights=True, aux_logits=False),
         _images(128), loss=lambda out: sum(o.sum() for o in out if o is not None)
         if isinstance(out, tuple) else out.sum()),
    Case("tv.alexnet", "torchvision", _tv("alexnet", num_classes=10), _images(64)),
    Case("tv.vgg11_bn", "torchvision", _tv("vgg11_bn", num_classes=10), _images(32)),
    Case("tv.vit_tiny_config", "torchvision", _tv_vit, _images(32)),
    Case("tv.swin_t", "torchvision", _tv("swin_t", num_classes=10), _images(64)),
    Case("tv.swin_v2_t", "torchvision", _tv("swin_v2_t", num_classes=10), _images(64)),
    Case("tv.maxvit_t", "torchvision", _tv("maxvit_t", num_classes=10), _images(224)),
    Case("tv.r3d_18", "torchvision", _tv("r3d_18", num_classes=10), _video),
    Case("tv.fcn_resnet50", "torchvision", _segmentation("fcn_resnet50"), _images(64), loss=_out),
    Case("tv.deeplabv3_mobilenet_v3_large", "torchvision",
         _segmentation("deeplabv3_mobilenet_v3_large"), _images(64), loss=_out),
    Case("tv.lraspp_mobilenet_v3_large", "torchvision",
         _segmentation("lraspp_mobilenet_v3_large"), _images(64), loss=_out),
    Case("tv.raft_small", "torchvision", _tv("raft_small"), _two_images, loss=_flows),
]  # fmt: skip

# timm -------------------------------------------------------------------------------------


def _timm(name: str, **kwargs: Any) -> Callable[..., Any]:
    def build(**factory_kwargs: Any):
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs,
                                 **factory_kwargs)  # fmt: skip

    return build


def _timm_case(
    name: str, size: int, quick: bool = False, why: str = "", **kwargs: Any
) -> Case:
    build = _timm(name, **kwargs)
    return Case(f"timm.{name}", "timm", build, _images(size), init="init_weights",
                factory="auto", quick=quick, why=why)  # fmt: skip


TIMM = [
    _timm_case("eva02_tiny_patch14_224", 56, img_size=56, quick=True,
               why="timm rope: _apply keeps its non-persistent float32 bands float32"),
    _timm_case("vit_small_patch16_rope_224", 64, img_size=64),
    _timm_case("vit_base_patch16_rope_reg1_gap_256", 64, img_size=64),
    _timm_case("vit_tiny_patch16_224", 64, img_size=64),
    _timm_case("deit_tiny_patch16_224", 64, img_size=64),
    _timm_case("test_vit", 64, img_size=64),
    _timm_case("test_vit_relpos", 64, img_size=64),
    _timm_case("test_vit2", 64, img_size=64),
    _timm_case("test_vit3", 64, img_size=64),
    _timm_case("test_convnext", 64),
    _timm_case("test_convnext2", 64),
    _timm_case("test_efficientnet", 64),
    _timm_case("test_efficientnet_evos", 64),
    _timm_case("test_efficientnet_gn", 64),
    _timm_case("test_efficientnet_ln", 64),
    _timm_case("test_byobnet", 64),
    _timm_case("test_coatnet", 64, img_size=64),
    _timm_case("test_maxvit", 64, img_size=64),
    _timm_case("test_nfnet", 64),
    _timm_case("test_resnet", 64),
    _timm_case("test_mambaout", 64),
    _timm_case("convnext_atto", 64),
    _timm_case("convnextv2_atto", 64),
    _timm_case("resnet18", 64),
    _timm_case("resnet50d", 64),
    _timm_case("efficientnet_b0", 64),
    _timm_case("tf_efficientnet_b0", 64),
    _timm_case("mobilenetv3_small_050", 64),
    _timm_case("mobilenetv4_conv_small", 64),
    _timm_case("regnetx_002", 64),
    _timm_case("regnety_002", 64),
    _timm_case("regnetz_b16_evos", 64),
    _timm_case("efficientnet_b0_g16_evos", 64),
    _timm_case("maxvit_rmlp_pico_rw_256", 64, img_size=64),
    _timm_case("swin_tiny_patch4_window7_224", 64, img_size=64, window_size=4),
    _timm_case("beitv2_base_patch16_224", 64, img_size=64),
    _timm_case("levit_128s", 64, img_size=64),
    _timm_case("mixer_s16_224", 64, img_size=64),
    _timm_case("poolformerv2_s12", 64),
    _timm_case("fastvit_t8", 64),
    _timm_case("mobilevit_xxs", 64),
    _timm_case("edgenext_xx_small", 64),
    _timm_case("repvit_m0_9", 64),
    _timm_case("ghostnetv2_100", 64),
    _timm_case("hrnet_w18_small", 64),
    _timm_case("dla34", 64),
    _timm_case("densenet121", 64),
    _timm_case("cspresnet50", 64),
    _timm_case("nf_regnet_b0", 64),
    _timm_case("rexnet_100", 64),
    _timm_case("lcnet_050", 64),
    _timm_case("hgnetv2_b0", 64),
    _timm_case("xcit_nano_12_p16_224", 64, img_size=64),
    _timm_case("cait_xxs24_224", 64, img_size=64),
    _timm_case("pvt_v2_b0", 64),
    _timm_case("efficientvit_b0", 64),
    _timm_case("efficientvit_m0", 64, img_size=64),
    _timm_case("mambaout_femto", 64),
    _timm_case("starnet_s050", 64),
    _timm_case("inception_next_atto", 64),
    _timm_case("tiny_vit_5m_224", 224),
]  # fmt: skip

# transformers: tiny models from configs ------------------------------------------------------

SMALL = {
    "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": 1,
    "eos_token_id": 2,
}  # fmt: skip


def _hf(config_name: str, model_name: str, **config: Any) -> Callable[[], Any]:
    def build():
        import transformers

        settings = {**config}
        return getattr(transformers, model_name)(
            getattr(transformers, config_name)(**settings)
        )

    return build


def _hf_case(name: str, config_name: str, model_name: str, inputs=None, loss=_logits,
             quick: bool = False, why: str = "", **config: Any) -> Case:  # fmt: skip
    return Case(f"hf.{name}", "transformers", _hf(config_name, model_name, **config),
                inputs or _tokens(), loss=loss, init="init_weights", quick=quick, why=why)  # fmt: skip


def _decoder_ids(length: int = 4) -> Callable[[], Any]:
    return lambda: _torch().randint(3, 99, (2, length))


def _whisper() -> Inputs:
    torch = _torch()
    return (), {
        "input_features": torch.randn(2, 16, 32),
        "decoder_input_ids": torch.randint(3, 99, (2, 4)),
    }


def _audio() -> Inputs:
    return (), {"input_values": _torch().randn(2, 400)}


def _pixels(size: int) -> Callable[[], Inputs]:
    return lambda: ((), {"pixel_values": _torch().randn(2, 3, size, size)})


LLAMA_LIKE = dict(SMALL, num_key_value_heads=2)
WAV2VEC2 = {
    "vocab_size": 32, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "conv_dim": (32, 32), "conv_stride": (5, 2), "conv_kernel": (10, 3),
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "mask_time_prob": 0.0,
    "codevector_dim": 32, "proj_codevector_dim": 32, "num_codevectors_per_group": 8,
    "num_codevector_groups": 2,
}  # fmt: skip
SMALL_GPT2 = {
    "vocab_size": 99,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
SMALL_T5 = {
    "vocab_size": 99, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
    "decoder_start_token_id": 0,
}  # fmt: skip
SMALL_BART = {
    "vocab_size": 99, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
}  # fmt: skip
SMALL_WHISPER = {
    "vocab_size": 99, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 16,
    "max_source_positions": 16, "max_target_positions": 32, "pad_token_id": 0, "bos_token_id": 1,
    "eos_token_id": 2, "decoder_start_token_id": 1,
}  # fmt: skip
SMALL_VIT = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
    "image_size": 32, "patch_size": 8, "num_labels": 10,
}  # fmt: skip

TRANSFORMERS = [
    _hf_case("gpt2", "GPT2Config", "GPT2LMHeadModel", quick=True,
             why="a decoder whose output holds a cache object", **SMALL_GPT2),
    _hf_case("llama", "LlamaConfig", "LlamaForCausalLM", **LLAMA_LIKE),
    _hf_case("mistral", "MistralConfig", "MistralForCausalLM", sliding_window=4, **LLAMA_LIKE),
    _hf_case("qwen2", "Qwen2Config", "Qwen2ForCausalLM", **LLAMA_LIKE),
    _hf_case("qwen3", "Qwen3Config", "Qwen3ForCausalLM", head_dim=8, **LLAMA_LIKE),
    _hf_case("gemma2", "Gemma2Config", "Gemma2ForCausalLM", head_dim=8, **LLAMA_LIKE),
    _hf_case("phi3", "Phi3Config", "Phi3ForCausalLM", **LLAMA_LIKE),
    _hf_case("mixtral", "MixtralConfig", "MixtralForCausalLM", num_local_experts=4,
             num_experts_per_tok=2, **LLAMA_LIKE),
    _hf_case("qwen2_moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM", num_experts=4,
             num_experts_per_tok=2, moe_intermediate_size=32,
             shared_expert_intermediate_size=32, **LLAMA_LIKE),
    _hf_case("gpt_neox", "GPTNeoXConfig", "GPTNeoXForCausalLM", **SMALL),
    _hf_case("opt", "OPTConfig", "OPTForCausalLM", ffn_dim=64, word_embed_proj_dim=32,
             **{k: v for k, v in SMALL.items() if k != "intermediate_size"}),
    _hf_case("t5", "T5Config", "T5ForConditionalGeneration",
             inputs=_tokens(decoder_input_ids=_decoder_ids()), quick=True,
             why="T5LayerNorm: a float32 variance cast back to the module's dtype",
             **SMALL_T5),
    _hf_case("bart", "BartConfig", "BartForConditionalGeneration",
             inputs=_tokens(decoder_input_ids=_decoder_ids()), **SMALL_BART),
    _hf_case("whisper", "WhisperConfig", "WhisperForConditionalGeneration", inputs=_whisper,
             **SMALL_WHISPER),
    _hf_case("wav2vec2", "Wav2Vec2Config", "Wav2Vec2ForCTC", inputs=_audio, quick=True,
             why="wav2vec2's feature encoder marks its input view requires_grad",
             **WAV2VEC2),
    _hf_case("bert", "BertConfig", "BertForMaskedLM", **SMALL),
    _hf_case("roberta", "RobertaConfig", "RobertaForMaskedLM", **dict(SMALL, pad_token_id=1,
             bos_token_id=0)),
    _hf_case("distilbert", "DistilBertConfig", "DistilBertForMaskedLM", vocab_size=99, dim=32,
             n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64),
    _hf_case("vit", "ViTConfig", "ViTForImageClassification", inputs=_pixels(32), **SMALL_VIT),
]  # fmt: skip

# building blocks ----------------------------------------------------------------------------


def _seq(*shape: int) -> Callable[[], Inputs]:
    return lambda: ((_torch().randn(*shape),), {})


def _same_three(*shape: int) -> Callable[[], Inputs]:
    def inputs() -> Inputs:
        x = _torch().randn(*shape)
        return (x, x, x), {}

    return inputs


def _two(first: tuple[int, ...], second: tuple[int, ...]) -> Callable[[], Inputs]:
    return lambda: ((_torch().randn(*first), _torch().randn(*second)), {})


def _attr(path: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Build ``module.Class(*args, **kwargs)`` (plus factory kwargs, if asked)."""

    def build(**factory_kwargs: Any):
        module_name, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        return cls(*args, **kwargs, **factory_kwargs)

    return build


def _hf_block(path: str, config_name: str, **config: Any) -> Callable[[], Any]:
    def build():
        import torch
        import transformers

        module_name, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        block = cls(getattr(transformers, config_name)(**config))
        # A block built alone skips PreTrainedModel's _init_weights(): weights made with
        # torch.empty (Mixtral's experts) would hold whatever memory held. Initialise the
        # matrices as that method does (normal, std = initializer_range's 0.02).
        with torch.no_grad():
            for parameter in block.parameters():
                if parameter.dim() >= 2:
                    parameter.normal_(0.0, 0.02)
        return block

    return build


def _first(output: Any) -> Any:
    return (output[0] if isinstance(output, tuple) else output).sum()


def _block(name: str, build, inputs, factory: Any = "auto", quick: bool = False, why: str = "",
           loss=None) -> Case:  # fmt: skip
    # timm's blocks may initialise in init_weights() (run_case passes it where they do).
    init = "init_weights" if name.startswith("timm.") else None
    return Case(f"block.{name}", "block", build, inputs, loss=loss, init=init,
                factory=factory, quick=quick, why=why)  # fmt: skip


HF_MODELING = "transformers.models.{0}.modeling_{0}"
BLOCKS = [
    _block("Gemma2RMSNorm", _attr(HF_MODELING.format("gemma2") + ".Gemma2RMSNorm", 32),
           _seq(2, 4, 32), factory=None, quick=True,
           why="Gemma2RMSNorm: float32 normalisation cast back with type_as"),
    _block("T5LayerNorm", _attr(HF_MODELING.format("t5") + ".T5LayerNorm", 32), _seq(2, 4, 32),
           factory=None),
    _block("LlamaRMSNorm", _attr(HF_MODELING.format("llama") + ".LlamaRMSNorm", 32),
           _seq(2, 4, 32), factory=None),
    _block("MixtralSparseMoeBlock",
           _hf_block(HF_MODELING.format("mixtral") + ".MixtralSparseMoeBlock", "MixtralConfig",
                     num_local_experts=4, num_experts_per_tok=2, **LLAMA_LIKE),
           _seq(2, 4, 32), factory=None, loss=_first),
    _block("Qwen2MoeSparseMoeBlock",
           _hf_block(HF_MODELING.format("qwen2_moe") + ".Qwen2MoeSparseMoeBlock",
                     "Qwen2MoeConfig", num_experts=4, num_experts_per_tok=2,
                     moe_intermediate_size=32, shared_expert_intermediate_size=32,
                     **LLAMA_LIKE),
           _seq(2, 4, 32), factory=None, loss=_first),
    _block("LlamaMLP", _hf_block(HF_MODELING.format("llama") + ".LlamaMLP", "LlamaConfig",
                                 **LLAMA_LIKE), _seq(2, 4, 32), factory=None),
    _block("Wav2Vec2GumbelVectorQuantizer",
           _hf_block(HF_MODELING.format("wav2vec2") + ".Wav2Vec2GumbelVectorQuantizer",
                     "Wav2Vec2Config", **WAV2VEC2),
           _seq(2, 4, 32), factory=None, loss=_first),
    _block("BertLayer", _hf_block(HF_MODELING.format("bert") + ".BertLayer", "BertConfig",
                                  **SMALL), _seq(2, 4, 32), factory=None, loss=_first),
    _block("timm.Mlp", _attr("timm.layers.Mlp", 32, 64), _seq(2, 4, 32)),
    _block("timm.SwiGLU", _attr("timm.layers.SwiGLU", 32, 64), _seq(2, 4, 32)),
    _block("timm.Attention", _attr("timm.layers.Attention", 32, num_heads=4), _seq(2, 4, 32)),
    _block("timm.AttentionPoolLatent", _attr("timm.layers.AttentionPoolLatent", 32,
                                             num_heads=4), _seq(2, 4, 32)),
    _block("timm.LayerNorm2d", _attr("timm.layers.LayerNorm2d", 8), _images(6, channels=8)),
    _block("timm.RmsNorm", _attr("timm.layers.RmsNorm", 32), _seq(2, 4, 32)),
    _block("timm.EvoNorm2dB0", _attr("timm.layers.EvoNorm2dB0", 8), _images(6, channels=8)),
    _block("timm.EvoNorm2dS0", _attr("timm.layers.EvoNorm2dS0", 8, group_size=4),
           _images(6, channels=8)),
    _block("timm.BatchNormAct2d", _attr("timm.layers.BatchNormAct2d", 8),
           _images(6, channels=8)),
    _block("timm.SEModule", _attr("timm.layers.SEModule", 8), _images(6, channels=8)),
    _block("timm.EcaModule", _attr("timm.layers.EcaModule", 8), _images(6, channels=8)),
    _block("timm.CbamModule", _attr("timm.layers.cbam.CbamModule", 8), _images(6, channels=8)),
    _block("timm.DropPath", _attr("timm.layers.DropPath", 0.1), _seq(4, 8), factory=None),
    _block("timm.BlurPool2d", _attr("timm.layers.BlurPool2d", 8), _images(6, channels=8)),
    _block("timm.StdConv2d", _attr("timm.layers.StdConv2d", 3, 8, 3), _images(6)),
    _block("timm.MixedConv2d", _attr("timm.layers.MixedConv2d", 8, 8, [3, 5]),
           _images(6, channels=8)),
    _block("timm.CondConv2d", _attr("timm.layers.CondConv2d", 8, 8, 3, padding=1,
                                    num_experts=2),
           lambda: ((_torch().randn(2, 8, 6, 6), _torch().rand(2, 2)), {})),
    _block("timm.SelectAdaptivePool2d", _attr("timm.layers.SelectAdaptivePool2d",
                                              pool_type="catavgmax", flatten=True),
           _images(6, channels=8), factory=None),
    _block("timm.PatchEmbed", _attr("timm.layers.PatchEmbed", img_size=32, patch_size=8,
                                    in_chans=3, embed_dim=32), _images(32)),
    _block("timm.LayerScale", _attr("timm.layers.LayerScale", 32), _seq(2, 4, 32)),
    _block("timm.GroupNorm1", _attr("timm.layers.GroupNorm1", 8), _images(6, channels=8)),
    _block("nn.MultiheadAttention", _attr("torch.nn.MultiheadAttention", 32, 4,
                                          batch_first=True),
           _same_three(2, 4, 32), loss=_first),
    _block("nn.TransformerDecoderLayer", _attr("torch.nn.TransformerDecoderLayer", 32, 4, 64,
                                               batch_first=True),
           _two((2, 4, 32), (2, 5, 32))),
    _block("nn.Transformer", _attr("torch.nn.Transformer", 32, 4, 1, 1, 64, batch_first=True),
           _two((2, 5, 32), (2, 4, 32))),
    _block("tv.StochasticDepth", _attr("torchvision.ops.StochasticDepth", 0.1, "row"),
           _images(6, channels=8), factory=None),
    _block("tv.SqueezeExcitation", _attr("torchvision.ops.SqueezeExcitation", 8, 4),
           _images(6, channels=8), factory=None),
    _block("tv.FrozenBatchNorm2d", _attr("torchvision.ops.FrozenBatchNorm2d", 8),
           _images(6, channels=8), factory=None),
    _block("tv.Conv2dNormActivation", _attr("torchvision.ops.Conv2dNormActivation", 3, 8),
           _images(6), factory=None),
    _block("tv.MLP", _attr("torchvision.ops.MLP", 32, [64, 32]), _seq(4, 32), factory=None),
]  # fmt: skip

CASES = [*TORCHVISION, *TIMM, *TRANSFORMERS, *BLOCKS]
BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"
QUICK = [case.name for case in CASES if case.quick]

# -- one case, in a worker ------------------------------------------------------------------

# The probes of _Checker.run and the helpers inside them whose time is worth seeing.
TIMED = (
    "first_call", "train_calls", "eval_calls", "registration", "fixed_device",
    "fixed_dtype", "state_dict_round_trip", "eval_inference", "meta_init", "factory_kwargs",
    "non_contiguous", "pickle_round_trip", "repr", "copy_of", "call", "meta_run",
    "device_arguments_run", "dtype_run", "float16_constants", "backward_line",
    "first_difference", "check_graph_leaves", "check_gradients", "repeat_calls",
    "fresh_instance",
)  # fmt: skip


_TIMED = """
def timed(*args, **kwargs):
    clock.stack.append(name)
    path = "/".join(clock.stack)
    start = time.perf_counter()
    try:
        return method(*args, **kwargs)
    finally:
        clock.seconds[path] += time.perf_counter() - start
        clock.calls[path] += 1
        clock.stack.pop()
"""


class ProbeClock:
    """Inclusive seconds per call path ("fixed_dtype/dtype_run/call"), by wrapping methods."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)

    def install(self, checker_class: type) -> None:
        for name in TIMED:
            method = getattr(checker_class, name, None)
            if method is not None and not getattr(method, "_timed", False):
                setattr(checker_class, name, self.wrap(name, method))

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        # Compiled under a "<...>" file name, which the checker counts as library code: a
        # line it reports is the module's own, or this script's call to the checker (as a
        # user's test would be), never this wrapper.
        namespace = {"clock": self, "name": name, "method": method, "time": time}
        exec(compile(_TIMED, "<probe clock>", "exec"), namespace)  # noqa: S102
        timed = functools.wraps(method)(namespace["timed"])
        timed._timed = True  # type: ignore[attr-defined]
        return timed

    def take(self) -> dict[str, float]:
        """Seconds per path since the last take (counts: ``self.counted``)."""
        taken = {
            path: round(seconds, 4) for path, seconds in sorted(self.seconds.items())
        }
        self.counted = dict(sorted(self.calls.items()))
        self.seconds.clear()
        self.calls.clear()
        self.stack.clear()
        return taken


def _floating_sum(output: Any, torch: Any) -> Any:
    """The sum of every floating tensor in the output that requires grad."""
    total = torch.zeros(())
    seen: set[int] = set()

    def walk(value: Any, depth: int) -> None:
        nonlocal total
        if id(value) in seen or depth > 8:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and value.requires_grad:
                total = total + value.sum()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, depth + 1)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name), depth + 1)

    walk(output, 0)
    return total


def forward_backward_seconds(
    case: Case, module: Any, inputs: Inputs, torch: Any
) -> tuple[float, float]:
    """One forward+backward in training mode on the same inputs: (wall, CPU) seconds,
    the best of a few after one."""
    module = copy.deepcopy(module).train()
    args, kwargs = inputs
    loss = case.loss or functools.partial(_floating_sum, torch=torch)
    times: list[tuple[float, float]] = []
    for _ in range(4):
        start, cpu = time.perf_counter(), time.process_time()
        scalar = loss(module(*args, **kwargs))
        if scalar.requires_grad:
            scalar.backward()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
        module.zero_grad(set_to_none=True)
        if sum(wall for wall, _ in times) > 3:
            break
    kept = times[1:] or times
    return min(wall for wall, _ in kept), min(cpu for _, cpu in kept)


def _factory(case: Case, torch: Any) -> Callable[..., Any] | None:
    if case.factory != "auto":
        return case.factory  # type: ignore[return-value]
    try:
        case.build(device="meta", dtype=torch.float64)
    except Exception:  # noqa: BLE001 - no device=/dtype= construction: no factory
        return None
    return case.build


def run_case(case: Case, testing: Any, clock: ProbeClock) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {
        "name": case.name, "library": case.library, "passed": None, "findings": [],
        "notes": [], "harness_error": None, "check_s": None, "forward_backward_s": None,
        "ratio": None, "options": [], "probe_s": {},
    }  # fmt: skip
    try:
        torch.manual_seed(0)
        module = case.build()
        inputs = case.inputs()
        factory = _factory(case, torch)
        result["parameters"] = sum(p.numel() for p in module.parameters())
        wall, cpu = forward_backward_seconds(case, module, inputs, torch)
        result["forward_backward_s"] = round(wall, 5)
        result["forward_backward_cpu_s"] = round(cpu, 5)
    except Exception:  # noqa: BLE001 - reported: the case itself is wrong
        result["harness_error"] = (
            "building or running the model:\n" + traceback.format_exc(limit=-4)
        )
        return result
    args, kwargs = inputs
    options: dict[str, Any] = {"kwargs": kwargs}
    accepted = inspect.signature(testing.check_module_contract).parameters
    if case.loss is not None:
        options["loss"] = case.loss
    if factory is not None:
        options["factory"] = factory
    # The library's init method, where this model has one (timm's convnext has none).
    if case.init is not None and callable(getattr(module, case.init, None)):
        if "init" in accepted:
            options["init"] = case.init
        elif factory is not None:
            result["notes"].append(
                f"init={case.init!r} not passed: the checker has no init="
            )
    result["options"] = sorted(key for key in options if key != "kwargs")
    clock.take()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        report = testing.check_module_contract(module, *args, **options)
    except testing.ModuleContractError as error:
        result["passed"] = False
        result["findings"] = [
            {"rule": v.rule, "where": v.where, "problem": v.problem}
            for v in error.violations
        ]
        result["notes"] += list(getattr(error, "notes", []))
    except Exception:  # noqa: BLE001 - a bug of the checker, or a bad option: reported
        result["harness_error"] = (
            "check_module_contract raised:\n" + traceback.format_exc(limit=-6)
        )
    else:
        result["passed"] = True
        result["notes"] += list(report.notes)
    result["check_s"] = round(time.perf_counter() - start, 3)
    result["check_cpu_s"] = round(time.process_time() - cpu, 3)
    result["probe_s"] = clock.take()
    result["probe_calls"] = clock.counted
    # The multiple in CPU seconds: on a shared machine, wall time also counts the waits.
    if result["forward_backward_cpu_s"]:
        ratio = result["check_cpu_s"] / result["forward_backward_cpu_s"]
        result["ratio"] = round(ratio, 1)
    return result


def import_torchvision() -> Any:
    """torchvision; where its C extension cannot load (PyPI's Linux wheel is a CUDA build,
    beside a CPU torch), its pure-Python models, with ``_meta_registrations`` stubbed."""
    try:
        import torchvision
    except RuntimeError as error:  # "operator torchvision::nms does not exist"
        if "torchvision::" not in str(error):
            raise
        for name in [n for n in sys.modules if n.partition(".")[0] == "torchvision"]:
            del sys.modules[name]
        stub = "torchvision._meta_registrations"
        sys.modules[stub] = types.ModuleType(stub)
        import torchvision
    return torchvision


def import_checker(src: Path) -> Any:
    (package,) = (p.parent.name for p in src.glob("*/__init__.py"))
    sys.path.insert(0, str(src))
    return importlib.import_module(f"{package}.testing")


def worker(connection: Connection, src: str) -> None:
    """Import once, then check each case name received; None stops."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    import_torchvision()  # before timm and transformers, which import it
    import timm  # noqa: F401 - imported before the clock starts
    import transformers  # noqa: F401

    testing = import_checker(Path(src))
    clock = ProbeClock()
    clock.install(testing._Checker)
    connection.send("ready")
    while (name := connection.recv()) is not None:
        connection.send(run_case(BY_NAME[name], testing, clock))


# -- the driver -----------------------------------------------------------------------------


def check_all(
    names: list[str],
    src: Path,
    workers: int,
    timeout: float,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every case in worker processes (spawned, one thread each); a case past timeout is
    killed, reported as such, and its worker replaced."""
    context = multiprocessing.get_context("spawn")
    pending = collections.deque(names)
    results: dict[str, dict[str, Any]] = {}
    busy: dict[Connection, tuple[Any, str, float]] = {}
    idle: list[tuple[Connection, Any]] = []
    starting: dict[Connection, Any] = {}

    def start() -> None:
        ours, theirs = context.Pipe()
        process = context.Process(target=worker, args=(theirs, str(src)), daemon=True)
        process.start()
        theirs.close()
        starting[ours] = process

    for _ in range(min(workers, len(names))):
        start()
    while pending or busy:
        while idle and pending:
            connection, process = idle.pop()
            name = pending.popleft()
            connection.send(name)
            busy[connection] = (process, name, time.monotonic())
        waits = [
            started + timeout - time.monotonic() for _, _, started in busy.values()
        ]
        ready = wait([*busy, *starting], timeout=max(0.1, min(waits, default=60)))
        for connection in ready:
            process = starting.pop(connection, None) or busy[connection][0]
            try:
                message = connection.recv()
            except EOFError:
                message = None
            if connection in busy:
                _, name, started = busy.pop(connection)
                if message is None:  # the worker died (out of memory, a segfault)
                    code = process.exitcode
                    results[name] = _failed(name, f"the worker died (exit code {code})")
                    process.join()
                    start()
                    continue
                results[name] = message
                log(_line(message))
            elif message != "ready":
                raise RuntimeError(
                    f"a worker could not start (see its traceback above): {message}"
                )
            idle.append((connection, process))
        for connection, (process, name, started) in list(busy.items()):
            if time.monotonic() - started > timeout:
                process.kill()
                process.join()
                busy.pop(connection)
                results[name] = _failed(
                    name, f"timed out after {timeout:.0f} s", timeout=True
                )
                log(_line(results[name]))
                start()
    for connection, process in idle:
        connection.send(None)
        process.join(timeout=10)
    for process in starting.values():
        process.kill()
    return [results[name] for name in names]


def _failed(name: str, why: str, timeout: bool = False) -> dict[str, Any]:
    return {
        "name": name, "library": BY_NAME[name].library, "passed": None, "findings": [],
        "notes": [], "harness_error": why, "timed_out": timeout, "check_s": None,
        "forward_backward_s": None, "ratio": None, "probe_s": {},
    }  # fmt: skip


def _line(result: dict[str, Any]) -> str:
    if result["harness_error"]:
        state = "HARNESS " + result["harness_error"].strip().splitlines()[-1][:120]
    elif result["passed"]:
        state = "ok"
    else:
        state = "FINDINGS " + ", ".join(sorted({f["rule"] for f in result["findings"]}))
    cost = f"{result['check_s']} s, x{result['ratio']}" if result["check_s"] else ""
    return f"{result['name']:<45} {state}  {cost}"


def kind_of(problem: str) -> str:
    """A finding's problem with its particulars (names, numbers, dtypes, lines) removed."""
    text = re.sub(r"(\S*/)?[\w.-]+\.py(:\d+)?", "FILE", problem)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\b(torch\.)?(float|bfloat|int)\d+\b", "DTYPE", text)
    text = re.sub(r"\(\d+(, \d+)*,?\)|\[\d+(, \d+)*\]", "SHAPE", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


def summary(results: list[dict[str, Any]]) -> str:
    lines = []
    crashed = [r for r in results if r["harness_error"]]
    failed = [r for r in results if r["passed"] is False]
    passed = [r for r in results if r["passed"]]
    lines.append(
        f"{len(results)} cases: {len(passed)} passed, {len(failed)} with findings, "
        f"{len(crashed)} not checked (harness error or timeout)"
    )
    by_library = collections.defaultdict(lambda: [0, 0, 0])
    for r in results:
        by_library[r["library"]][
            0 if r["passed"] else 1 if r["passed"] is False else 2
        ] += 1
    for library, (ok, bad, err) in sorted(by_library.items()):
        lines.append(f"  {library:<13} passed {ok}, findings {bad}, not checked {err}")
    by_rule: dict[str, list[str]] = collections.defaultdict(list)
    by_kind: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for r in failed:
        for finding in r["findings"]:
            by_rule[finding["rule"]].append(r["name"])
            by_kind[(finding["rule"], kind_of(finding["problem"]))].append(r["name"])
    lines.append("findings by rule (cases):")
    for rule, names in sorted(by_rule.items(), key=lambda item: -len(set(item[1]))):
        lines.append(f"  {rule:<20} {len(set(names)):>3} cases, {len(names)} findings")
    lines.append("findings by kind:")
    for (rule, kind), names in sorted(
        by_kind.items(), key=lambda item: -len(set(item[1]))
    ):
        shown = ", ".join(sorted(set(names))[:6]) + (
            " ..." if len(set(names)) > 6 else ""
        )
        lines.append(f"  [{rule}] {kind}\n      {len(set(names))} cases: {shown}")
    for r in crashed:
        lines.append(
            f"not checked: {r['name']}: {r['harness_error'].strip().splitlines()[-1]}"
        )
    lines += cost_lines(results)
    return "\n".join(lines)


def cost_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = ["cost (check CPU seconds / one forward+backward's CPU seconds):"]
    for label, library in (("torchvision", "torchvision"), ("all", None)):
        ratios = sorted(
            (r["ratio"], r["name"], r.get("check_cpu_s", r["check_s"]))
            for r in results
            if r["ratio"] and (library is None or r["library"] == library)
        )
        if not ratios:
            continue
        median = statistics.median(ratio for ratio, _, _ in ratios)
        top, name, seconds = ratios[-1]
        total = sum(seconds for _, _, seconds in ratios)
        lines.append(
            f"  {label:<12} {len(ratios)} cases: median x{median:.0f}, max x{top:.0f} ({name}, "
            f"{seconds:.1f} s); {total:.1f} CPU seconds of checks in all"
        )
    return lines


def probe_shares(
    results: list[dict[str, Any]],
) -> list[tuple[str, float, float, float]]:
    """Per top-level probe of ``_Checker.run``: (probe, seconds, of which deep copies
    (``copy_of``), of which the module's own calls (``call``)), summed over the cases,
    largest first."""
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for result in results:
        for path, seconds in result["probe_s"].items():
            top, _, rest = path.partition("/")
            leaf = path.rsplit("/", 1)[-1]
            if not rest:
                totals[top][0] += seconds
            elif leaf in ("copy_of", "call"):
                totals[top][1 if leaf == "copy_of" else 2] += seconds
    rows = [(probe, *values) for probe, values in totals.items()]
    return sorted(rows, key=lambda row: -row[1])


def markdown(report: dict[str, Any]) -> str:
    """The report for people: findings grouped by kind, cost, where the time goes."""
    results = report["cases"]
    lines = [f"# Real models through check_module_contract ({report['set']} set)", ""]
    lines += ["```", summary(results), "```", ""]
    by_kind: dict[tuple[str, str], list[tuple[str, dict[str, str]]]] = (
        collections.defaultdict(list)
    )
    for result in results:
        for finding in result["findings"]:
            key = (finding["rule"], kind_of(finding["problem"]))
            by_kind[key].append((result["name"], finding))
    lines += ["## Findings by kind", ""]
    for (rule, kind), found in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        names = sorted({name for name, _ in found})
        lines.append(f"### [{rule}] {kind}")
        lines.append(f"{len(names)} cases: {', '.join(names)}")
        lines.append("")
        for name, finding in found[:3]:
            lines.append(f"- {name}: `{finding['where']}`: {finding['problem']}")
        lines.append("")
    lines += ["## Per case", "", "| case | result | check s | fwd+bwd s | CPU ratio |"]
    lines.append("|---|---|---|---|---|")
    for r in results:
        if r["harness_error"]:
            state = "not checked: " + r["harness_error"].strip().splitlines()[-1][:100]
        elif r["passed"]:
            state = "passed"
        else:
            state = ", ".join(sorted({f["rule"] for f in r["findings"]}))
        state = state.replace("|", "/")
        lines.append(
            f"| {r['name']} | {state} | {r['check_s']} | {r['forward_backward_s']} "
            f"| {r['ratio']} |"
        )
    lines += ["", "## Where the check's time goes", ""]
    for label, library in (("torchvision models", "torchvision"), ("all cases", None)):
        chosen = [r for r in results if library is None or r["library"] == library]
        checked = sum(r["check_s"] for r in chosen if r["probe_s"])
        lines += [f"Summed over {label}: {checked:.0f} s of checks.", ""]
        lines += ["| probe | seconds | share | in deepcopy | in module calls |"]
        lines += ["|---|---|---|---|---|"]
        for probe, seconds, copies, calls in probe_shares(chosen):
            share = seconds / checked if checked else 0
            lines.append(
                f"| {probe} | {seconds:.1f} | {share:.0%} | {copies:.1f} | {calls:.1f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def render_template(into: Path) -> Path:
    sys.path.insert(0, str(TOOLS))
    from rendering import render_copier

    return render_copier(into / "project") / "src"


def _best(run: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def anatomy(case: Case, testing: Any) -> dict[str, float]:
    """Seconds of the operations a check is made of, each alone (best of 3), on one case.

    Uses the checker's private watches (``_LocalNames``, ``_CreationWatch``,
    ``_DtypeWatch``) as its probes do; one that is missing or changed is left out.
    cProfile cannot be used: ``_LocalNames`` replaces the profiler with sys.setprofile.
    """
    import io
    import pickle

    import torch
    from torch.overrides import TorchFunctionMode

    class PassThrough(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    module = case.build()
    args, kwargs = case.inputs()
    rows: dict[str, float] = {}

    def run(
        model: Any, inputs: Inputs = (args, kwargs), mode: Any = None, grad: bool = True
    ) -> Any:
        with contextlib.ExitStack() as stack:
            if not grad:
                stack.enter_context(torch.no_grad())
            if mode is not None:
                stack.enter_context(mode())
            return model(*inputs[0], **inputs[1])

    def measure(label: str, action: Callable[[], Any]) -> None:
        try:
            rows[label] = round(_best(action), 5)
        except Exception as error:  # noqa: BLE001 - a row the checker no longer supports
            rows[label + f" (failed: {type(error).__name__})"] = float("nan")

    convert = testing._map_tensors
    train = copy.deepcopy(module).train()
    measure("forward, training mode", lambda: run(train))
    rows["forward+backward"] = round(
        forward_backward_seconds(case, module, (args, kwargs), torch)[0], 5
    )
    evaluated = copy.deepcopy(module).eval()
    measure("forward, eval, no_grad", lambda: run(evaluated, grad=False))
    measure("forward, eval, no_grad, float16", lambda: run(
        evaluated.half(),
        convert(lambda t: t.half() if t.is_floating_point() else t, (args, kwargs)),
        grad=False,
    ))  # fmt: skip
    measure(
        "forward under _LocalNames (sys.setprofile)",
        lambda: run(train, mode=testing._LocalNames),
    )
    measure(
        "forward under a pass-through TorchFunctionMode",
        lambda: run(train, mode=PassThrough),
    )
    meta = copy.deepcopy(module).to("meta")
    meta_inputs = convert(lambda t: t.to("meta"), (args, kwargs))
    measure("forward on meta", lambda: run(meta, meta_inputs))

    def creation_watch() -> Any:
        return testing._CreationWatch(
            lambda t: t.dim() > 0 and not t.is_meta,
            known=testing._reachable_tensors(meta, meta_inputs),
            fixed=testing._fixed_device,
            redirect=True,
        )

    measure(
        "forward on meta under _CreationWatch",
        lambda: run(meta, meta_inputs, creation_watch),
    )
    for dtype in (torch.float64, torch.bfloat16):
        converted = copy.deepcopy(module).to(dtype)
        inputs = convert(
            lambda t, d=dtype: t.to(d) if t.is_floating_point() else t, (args, kwargs)
        )
        name = str(dtype).removeprefix("torch.")
        measure(f"forward, {name}", lambda m=converted, i=inputs: run(m, i))

        def dtype_watch(m=converted, i=inputs, d=dtype) -> Any:
            return testing._DtypeWatch(d, known=testing._reachable_tensors(m, i))

        measure(
            f"forward, {name}, under _DtypeWatch",
            lambda m=converted, i=inputs, w=dtype_watch: run(m, i, w),
        )
    measure("copy.deepcopy(module)", lambda: copy.deepcopy(module))
    measure("pickle dumps+loads", lambda: pickle.loads(pickle.dumps(module)))

    def save_load() -> None:
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)

    measure("state_dict torch.save+load", save_load)
    return rows


def profile(names: list[str], src: Path) -> None:
    """Per case: the probes' seconds and call counts in one check, then its anatomy."""
    import torch

    torch.set_num_threads(1)
    import_torchvision()
    testing = import_checker(src)
    clock = ProbeClock()
    clock.install(testing._Checker)
    for name in names:
        result = run_case(BY_NAME[name], testing, clock)
        print(
            f"## {name}: check {result['check_s']} s, forward+backward "
            f"{result['forward_backward_s']} s, x{result['ratio']}, passed {result['passed']}"
        )
        print("\nprobe (inclusive) | seconds | calls\n---|---|---")
        for path, seconds in sorted(
            result["probe_s"].items(), key=lambda item: -item[1]
        ):
            print(f"{path} | {seconds:.3f} | {result['probe_calls'].get(path, '')}")
        print("\noperation, alone | seconds\n---|---")
        for label, seconds in anatomy(BY_NAME[name], testing).items():
            print(f"{label} | {seconds}")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--src", type=Path, help="a render's src folder (default: render one)"
    )
    parser.add_argument("--set", choices=["quick", "full"], default="full")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="these cases (or prefixes)"
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--markdown", type=Path, help="write the report for people here"
    )
    parser.add_argument(
        "--from-json", type=Path, help="no run: summarise this report (--markdown too)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per case")
    parser.add_argument(
        "--profile", nargs="+", metavar="NAME", help="where the time goes, per case"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    options = parser.parse_args(argv)
    if options.from_json:
        report = json.loads(options.from_json.read_text())
        if options.markdown:
            options.markdown.write_text(markdown(report))
        print(summary(report["cases"]))
        return 0
    names = QUICK if options.set == "quick" else [case.name for case in CASES]
    if options.only:
        names = [
            n for n in BY_NAME if any(n == o or n.startswith(o) for o in options.only)
        ]
        if not names:
            parser.error(
                f"--only {' '.join(options.only)} matches no case (see --list)"
            )
    if options.list:
        for name in names:
            print(name, "(quick)" if BY_NAME[name].quick else "")
        return 0
    with contextlib.ExitStack() as stack:
        src = options.src
        if src is None:
            src = render_template(
                Path(stack.enter_context(tempfile.TemporaryDirectory()))
            )
        if not any(src.glob("*/testing.py")):
            parser.error(
                f"--src {src}: no <package>/testing.py there (give a render's src)"
            )
        if options.profile:
            profile(options.profile, src.resolve())
            return 0
        start = time.monotonic()
        results = check_all(
            names, src.resolve(), options.workers, options.timeout, print
        )
    report = {
        "set": options.set if not options.only else "only",
        "seconds": round(time.monotonic() - start, 1),
        "workers": options.workers,
        "cases": results,
    }
    if options.json:
        options.json.write_text(json.dumps(report, indent=1))
    if options.markdown:
        options.markdown.write_text(markdown(report))
    print(summary(results))
    print(
        f"{len(results)} cases in {report['seconds']} s on {options.workers} worker(s)"
    )
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
