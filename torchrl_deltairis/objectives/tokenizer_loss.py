"""The Δ-tokenizer's training loss as a TorchRL ``LossModule``.

Reference: delta-iris ``src/models/tokenizer/tokenizer.py`` (``compute_loss``): a commitment term and
L1 / L2 / worst-pixel L2 reconstruction terms of o_{t+1} over the transitions whose two frames are
both real (not padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_deltairis import keys
from torchrl_deltairis.checked import setting
from torchrl_deltairis.functional import masked_mean, pixels_to_float
from torchrl_deltairis.modules.tokenizer import Tokenizer

__all__ = ["TokenizerLossConfig", "TokenizerLoss"]


@dataclass
class TokenizerLossConfig:
    """Weights of the tokenizer loss terms (hard-coded in the reference)."""

    commitment_weight: float = setting(0.02, doc="weight of the VQ commitment term", low=0)
    l1_weight: float = setting(0.1, doc="weight of the mean absolute pixel error", low=0)
    l2_weight: float = setting(1.0, doc="weight of the mean squared pixel error", low=0)
    worst_pixel_weight: float = setting(0.01, doc="weight of the per-frame maximum of the squared pixel error, "
                                                  "averaged over frames", low=0)


class TokenizerLoss(LossModule):
    """Δ-tokenizer loss (Micheli et al., "Efficient World Models with Context-Aware Tokenization", ICML 2024).

    Reads segments ``[B, T]``: ``"pixels"`` (uint8 in [0, 255] or float in [0, 1]) ``[B, T, 3, H, W]``,
    ``"action"`` int64 ``[B, T]`` and ``"mask_padding"`` bool ``[B, T]``. The T-1 transitions
    (o_t, a_t, o_{t+1}) are encoded, quantized and decoded. In training mode the quantizer's codebook
    gets its EMA update (and dead codes are revived); in eval mode nothing is updated.

    Returns a TensorDict with ``loss_commitment``, ``loss_reconstruction_l1``, ``loss_reconstruction_l2``,
    ``loss_reconstruction_l2_worst_pixel`` (weighted; the caller sums them) and the detached metrics
    ``codebook_entropy`` (bits) and ``codewords_revived``.

    Args:
        tokenizer: the :class:`~torchrl_deltairis.modules.Tokenizer` to train.
        config: loss weights.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_deltairis.modules import FrameCnnConfig, Tokenizer, TokenizerConfig
        >>> cnn = dict(num_channels=8, mult=[1, 2], down=[1, 1], num_groups=4)
        >>> tok = Tokenizer(TokenizerConfig(num_actions=3, image_size=16, codebook_size=8, codebook_dim=4,
        ...     encoder_config=FrameCnnConfig(7, 4, **cnn), decoder_config=FrameCnnConfig(3, 10, **cnn),
        ...     frame_cnn_config=FrameCnnConfig(3, 2, **cnn)))
        >>> td = TensorDict(pixels=torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8),
        ...     action=torch.randint(0, 3, (2, 3)), mask_padding=torch.ones(2, 3, dtype=torch.bool),
        ...     batch_size=[2, 3])
        >>> out = TokenizerLoss(tok)(td)
        >>> sorted(k for k in out.keys() if k.startswith("loss_"))  # doctest: +NORMALIZE_WHITESPACE
        ['loss_commitment', 'loss_reconstruction_l1', 'loss_reconstruction_l2',
         'loss_reconstruction_l2_worst_pixel']
        >>> sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys: ``pixels`` [B, T, 3, H, W], ``action`` [B, T], ``mask_padding`` [B, T]."""

        pixels: NestedKey = keys.PIXELS
        action: NestedKey = keys.ACTION
        mask_padding: NestedKey = keys.MASK_PADDING

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    out_keys = ["loss_commitment", "loss_reconstruction_l1", "loss_reconstruction_l2",
                "loss_reconstruction_l2_worst_pixel", "codebook_entropy", "codewords_revived"]

    def __init__(self, tokenizer: Tokenizer, config: TokenizerLossConfig | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.config = config if config is not None else TokenizerLossConfig()

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [k.pixels, k.action, k.mask_padding]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator: nothing to forward (TorchRL calls this when keys are set)."""

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k, w = self.tensor_keys, self.config
        obs = pixels_to_float(tensordict.get(k.pixels))
        actions = tensordict.get(k.action)
        mask = tensordict.get(k.mask_padding)
        assert obs.ndim == 5 and actions.shape == mask.shape == obs.shape[:2], (
            f"expected pixels [B, T, C, H, W], action and mask_padding [B, T]; got {tuple(obs.shape)}, "
            f"{tuple(actions.shape)}, {tuple(mask.shape)}")
        x1, a, x2 = obs[:, :-1], actions[:, :-1], obs[:, 1:]
        quantized = self.tokenizer(x1, a, x2)
        reconstruction = self.tokenizer.decode(x1, a, quantized.q)
        delta = (x2 - reconstruction).float()  # [B, T-1, C, H, W]
        valid = mask[:, :-1] & mask[:, 1:]  # both frames of the transition are real
        worst_pixel = einops.reduce(delta.pow(2), "b t c h w -> b t", "max")
        return TensorDict(
            loss_commitment=w.commitment_weight * quantized.commitment,
            loss_reconstruction_l1=w.l1_weight * masked_mean(delta.abs(), valid),
            loss_reconstruction_l2=w.l2_weight * masked_mean(delta.pow(2), valid),
            loss_reconstruction_l2_worst_pixel=w.worst_pixel_weight * masked_mean(worst_pixel, valid),
            codebook_entropy=quantized.codebook_entropy.detach(),
            codewords_revived=quantized.codewords_revived.detach(),
        )
