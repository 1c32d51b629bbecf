"""Δ-IRIS networks as plain ``nn.Module``s with tensor interfaces (TensorDict wiring lives elsewhere)."""

from torchrl_deltairis.modules.actor_critic import (
    ActorCriticConfig,
    ActorCriticOutput,
    ActorCriticWithTarget,
    CnnLstmActorCritic,
)
from torchrl_deltairis.modules.convnet import FrameCnnConfig, FrameDecoder, FrameEncoder
from torchrl_deltairis.modules.kv_cache import KVCache
from torchrl_deltairis.modules.quantizer import Quantizer, QuantizerConfig, QuantizerOutput
from torchrl_deltairis.modules.tokenizer import Tokenizer, TokenizerConfig
from torchrl_deltairis.modules.transformer import Transformer, TransformerConfig, init_weights_
from torchrl_deltairis.modules.world_model import WorldModel, WorldModelConfig, WorldModelOutput

__all__ = [
    "ActorCriticConfig", "ActorCriticOutput", "ActorCriticWithTarget", "CnnLstmActorCritic",
    "FrameCnnConfig", "FrameDecoder", "FrameEncoder", "KVCache", "Quantizer", "QuantizerConfig",
    "QuantizerOutput", "Tokenizer", "TokenizerConfig", "Transformer", "TransformerConfig", "init_weights_",
    "WorldModel", "WorldModelConfig", "WorldModelOutput",
]
