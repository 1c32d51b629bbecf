"""The world model and the agent as the play tool drives them: one step at a time, batch of one.

:class:`SlidingImaginationCore` is :class:`~torchrl_deltairis.envs.imagination.ImaginationCore` with a
sliding-window memory. The reference (and the core) flushes the whole KV cache when it is
full, keeping only the last frame: every ``max_blocks`` steps the dream forgets everything it saw.
Here, when the next step would not fit, the cache is rebuilt from the last ``window_blocks`` whole
time steps (``[frame, action, K tokens]`` blocks, up to ``max_blocks - 1``) followed by the current
frame, re-encoded from position 0: the transformer sees a context laid out exactly as in training
(a sequence starting at a frame, learned absolute positions from 0), only its start has moved. The
core also reports the end probability of each step, read from the end head at the action position.

:class:`Agent` runs the CNN-LSTM actor-critic on one frame at a time, its LSTM state carried in a
TensorDict between calls, and returns the sampled action and the critic's value of that frame.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from torchrl_deltairis import functional, keys
from torchrl_deltairis.envs.imagination import ImaginationCore
from torchrl_deltairis.modules.actor_critic import CnnLstmActorCritic
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel
from torchrl_deltairis.policy import ActorCriticTrunk, make_actor

__all__ = ["SlidingImaginationCore", "Agent"]


class SlidingImaginationCore(ImaginationCore):
    """:class:`ImaginationCore` whose memory slides over the last time steps instead of being flushed.

    Args:
        tokenizer, world_model: the trained models.
        sample: sample tokens, reward class and end (the play tool's default) or take the argmax.
        window_blocks: whole time steps kept when the cache is full (default and maximum:
            ``max_blocks - 1``, the longest context that leaves room for the next step).

    After each call, ``end_probability`` ``[B]`` holds P(end) of that step.
    """

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, *, sample: bool = True,
                 window_blocks: int | None = None) -> None:
        super().__init__(tokenizer, world_model, sample=sample)
        tc = world_model.config.transformer_config
        self.block = world_model.config.num_latent_tokens + 2  # frame embedding, action, K tokens
        if self.block != tc.tokens_per_block:
            raise ValueError(f"tokens_per_block={tc.tokens_per_block} but a step holds {self.block} tokens")
        longest = tc.max_blocks - 1
        self.window_blocks = longest if window_blocks is None else window_blocks
        if not 1 <= self.window_blocks <= longest:
            raise ValueError(f"window_blocks must lie in [1, {longest}] (max_blocks - 1), "
                             f"got {window_blocks}")
        self._history: torch.Tensor | None = None  # [B, n, E]: the inputs whose keys/values are cached
        self._watch_end = False
        self.end_probability: torch.Tensor | None = None
        self.num_slides = 0

    @torch.no_grad()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        super().reset(frames, actions)
        frames = functional.pixels_to_float(frames)
        tokens = self.tokenizer.burn_in(frames, actions)
        self._history = self.world_model.burn_in_sequence(frames, actions, tokens).float()
        assert self._history.size(1) == self.cache.size, (self._history.shape, self.cache.size)
        self.end_probability, self.num_slides = None, 0

    def transformer_last(self, cache, sequence: torch.Tensor) -> torch.Tensor:
        self._history = torch.cat((self._history, sequence.float()), dim=1)
        out = super().transformer_last(cache, sequence)
        if self._watch_end:  # the first call of a step runs at the action position
            logits = self.world_model.head_ends.head_module(out).float()
            self.end_probability = logits.softmax(dim=-1)[:, 1]
            self._watch_end = False
        return out

    @torch.no_grad()
    def forward(self, frame: torch.Tensor,
                action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._history is None or self._tail is None or self.cache is None:
            raise RuntimeError("SlidingImaginationCore.forward called before reset(context)")
        k = self.world_model.config.num_latent_tokens
        if self.cache.size + self._tail.size(1) + k + 1 > self.cache.max_tokens:
            self._slide()
        self._watch_end = True
        return super().forward(frame, action)

    def _slide(self) -> None:
        """Re-encodes the last ``window_blocks`` steps and the current frame into an emptied cache."""
        sequence = torch.cat((self._history, self._tail.float()), dim=1)  # ends with the current frame
        sequence = sequence[:, -(self.window_blocks * self.block + 1):]  # starts at a frame embedding
        self.cache.reset()
        self.world_model.transformer(sequence, self.cache)
        self._history, self._tail = sequence, sequence[:, :0]
        self.num_slides += 1

    @property
    def context_steps(self) -> int:
        """Whole time steps in memory before the current frame (the next step keeps at most
        ``window_blocks`` of them when the cache is full)."""
        return (self._history.size(1) + self._tail.size(1)) // self.block


class Agent:
    """The actor-critic acting on one frame at a time (batch of one), its LSTM state carried over.

    ``act`` samples an action from the policy (as the reference's play tool does) and returns it with
    the critic's value of the frame; ``observe`` only advances the LSTM and returns the value (when
    the user plays, the critic still judges the frames it is shown).
    """

    def __init__(self, net: CnnLstmActorCritic) -> None:
        self.trunk = ActorCriticTrunk(net, write_values=True)
        self.actor = make_actor(self.trunk, keep_values=True)  # an action and the value of its frame
        self.state: TensorDict | None = None

    def reset(self) -> None:
        self.state = None

    @torch.no_grad()
    def _run(self, module: torch.nn.Module, frame: torch.Tensor) -> TensorDict:
        device = next(self.trunk.net.parameters()).device
        td = TensorDict({keys.PIXELS: frame.unsqueeze(0).to(device)}, batch_size=[1], device=device)
        if self.state is not None:
            td.update(self.state)
        module(td)
        state_keys = (keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C)
        self.state = TensorDict({k: td.get(("next", k)) for k in state_keys}, batch_size=[1], device=device)
        return td

    def act(self, frame: torch.Tensor) -> tuple[int, float]:
        """frame uint8 ``[C, H, W]`` -> (sampled action, value of the frame)."""
        td = self._run(self.actor, frame)
        return int(td.get(keys.ACTION)), float(td.get(keys.STATE_VALUE))

    def observe(self, frame: torch.Tensor) -> float:
        """frame uint8 ``[C, H, W]`` -> the critic's value; the LSTM steps, no action is drawn."""
        return float(self._run(self.trunk, frame).get(keys.STATE_VALUE))
