"""The model configs speed.py (and interleaved.py, profile_step.py) time: the shipped full-size ones (the
test manifests hold them) or tiny versions of them, for a quick run of every code path.
"""

import json
from pathlib import Path

from torchrl_deltairis.reference import configs_from_reference

MANIFESTS = Path(__file__).resolve().parent.parent / "tests" / "data"

# configs with 4-channel convnets of 3 stages (3 downsamplings, as the real ones: the same token and
# latent sizes) and a 2-layer transformer, segments of TINY_SEQUENCE_LENGTH frames, and a matmul peak
# measured on TINY_PEAK_SIZE² matrices (on a CPU without native bf16, bf16 matmuls are emulated at ~0.5
# GFLOP/s: the full-size bf16 peak alone took over a minute on a 2-core AVX2 EPYC). Imagination keeps its
# horizon and batches.
TINY = {"tokenizer": {"codebook_size": 64, "codebook_dim": 16, "encoder_config": {"latent_dim": 16},
                      "decoder_config": {"latent_dim": 4 + 4 + 16}, "frame_cnn_config": {"latent_dim": 4}},
        "world_model": {"latent_vocab_size": 64, "frame_cnn_config": {"latent_dim": 2},
                        "transformer_config": {"num_layers": 2, "num_heads": 4, "embed_dim": 128}},
        "actor_critic": {"lstm_dim": 64, "frame_encoder_config": {"latent_dim": 4}}}
TINY_CNN = {"num_channels": 4, "num_groups": 4, "mult": [1, 1, 1], "down": [1, 1, 1]}
TINY_SEQUENCE_LENGTH, TINY_PEAK_SIZE = 4, 256


def _merge(base: dict, update: dict) -> dict:
    """``base`` with ``update``'s values, nested dicts merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(base.get(key), dict) else value
    return merged


def reference_config(variant: str, tiny: bool = False) -> dict:
    """The shipped full-size config of ``variant`` (the test manifests hold it), or its tiny version."""
    config = json.loads((MANIFESTS / f"{variant}_full_manifest.json").read_text())["config"]
    if not tiny:
        return config
    cnns = {part: {k: TINY_CNN for k, v in config[part].items() if k.endswith("_config") and "down" in v}
            for part in config}
    cnns["actor_critic"] = {"frame_encoder_config": TINY_CNN}
    return _merge(_merge(config, cnns), TINY)


def configs_for(variant: str, tiny: bool = False):
    return configs_from_reference(reference_config(variant, tiny))
