"""Every TensorDict key of the project, in one place.

The keys are the interface between the real environments, the collector, the episode store, the
samplers, the models and the losses. Code reads these constants; it never spells a key twice.

Real environments (``torchrl_deltairis.envs``), batch dims ``[*]``:

=============================  ==================  ==============================================
key                            dtype / shape        meaning
=============================  ==================  ==============================================
``"pixels"``                   uint8 [3, 64, 64]    the observation o_t (RGB, channels first)
``"action"``                   int64 []             the discrete action a_t (categorical index)
``("next", "pixels")``         uint8 [3, 64, 64]    o_{t+1}
``("next", "reward")``         float32 [1]          r_t, unclipped
``("next", "terminated")``     bool [1]             the episode ended (Atari training: a life loss
                                                    counts, the game itself goes on)
``("next", "truncated")``      bool [1]             a time limit cut the episode (not an end target)
``("next", "done")``           bool [1]             terminated or truncated
``("next", "achievements")``   bool [22]            Crafter only: achievements unlocked so far in
                                                    the episode (read it at the done step)
``("next", "lives")``          int64 [1]            Atari only: lives left in the game
=============================  ==================  ==============================================

Episode store (``torchrl_deltairis.data``), one row per real step, batch dims ``[N]``:

=============================  ==================  ==============================================
``"pixels"``                   uint8 [3, 64, 64]    o_t
``"action"``                   int64 []             a_t
``"reward"``                   float32 []           r_t (received after a_t)
``"terminated"``               bool []              the end target after a_t
``"truncated"``                bool []              the time limit cut the episode after a_t
``"episode"``                  int64 []             episode id (0, 1, 2, ... in order of creation)
``"step"``                     int64 []             index of the step inside its episode
=============================  ==================  ==============================================

Segments sampled from the store, batch dims ``[B, L]``: the store keys above (zeros on padding),
``"mask_padding"`` bool [] (False on padding steps) and TorchRL's ``"index"`` int64 [] (the storage
row; row 0 is the store's all-zero padding row). Frames stay uint8; models divide by 255.

Model-side keys: ``"tokens"`` int64 [B, T, K] (the K tokens of the transition t -> t+1, stored
at step t; the last step's are dummies). The losses accept ``"pixels"`` as uint8 or as float in [0, 1].

Collector batches also carry TorchRL's bookkeeping: ``"is_init"``, ``"step_count"``,
``"episode_reward"`` (and their ``("next", ...)`` twins) and ``("collector", "traj_ids")``.
Imagination (``torchrl_deltairis.envs.imagination``) and the actor-critic (``torchrl_deltairis.policy``,
``torchrl_deltairis.objectives.actor_critic_loss``), imagined trajectories ``[B, H]``:

===================================  ==================  ========================================
``("context", "pixels")``            uint8 [L+1, 3, H, W] reset input: real frames o_0..o_L (o_L is
                                                          the start frame)
``("context", "action")``            int64 [L]            reset input: a_0..a_{L-1}
``("context", "mask_padding")``      bool [L+1]           optional reset input (padding is zeros)
``"pixels"``, ``("next", "pixels")`` uint8 [3, 64, 64]    the decoded frames (exactly 1/255 steps)
``("next", "reward")``               float32 [1]          predicted reward
``("next", "terminated")``           bool [1]             predicted end (= ``("next", "done")``;
                                                          ``truncated`` is always False)
``"recurrent_state_h"`` / ``_c``     float32 [lstm_dim]   the policy LSTM's state before the step;
                                                          its successor in ``("next", ...)``. Real
                                                          envs carry it too (the trunk's primer puts
                                                          it in their specs: zeros at a reset, the
                                                          burn-in at the start of a collect)
``"target_recurrent_state_h"``/``_c``  float32 [lstm_dim] the EMA target's state (t = 0 only)
``"is_init"``                        bool [1]             real envs: a new episode starts (the
                                                          primer zeroed the state; recurrent mode
                                                          zeroes it there inside a sequence)
``"logits"``                         float32 [A]          action logits of the policy
``"action_log_prob"``                float32 []           log π(a_t | ·) (sampling distribution)
``"value_logits"``                   float32 [255] / [1]  critic head output
``"state_value"``                    float32 [1]          the online critic's value (symexp of the
                                                          two-hot expectation, or the scalar)
``"target_state_value"``             float32 [1]          the EMA target critic's value: baseline
                                                          and λ-return input; its ``("next", ...)``
                                                          twin at t = H-1 is the bootstrap
``("collector", "mask")``            bool []              True up to the first imagined end
                                                          (included); TorchRL losses read it
``"advantage"``, ``"value_target"``  float32 [1]          λ-return G_t − V_target, and G_t
===================================  ==================  ========================================
"""

PIXELS = "pixels"
ACTION = "action"
REWARD = "reward"
DONE = "done"
TERMINATED = "terminated"
TRUNCATED = "truncated"
ACHIEVEMENTS = "achievements"
LIVES = "lives"
EPISODE = "episode"
STEP = "step"
MASK_PADDING = "mask_padding"
TOKENS = "tokens"

NEXT_PIXELS = ("next", PIXELS)
NEXT_REWARD = ("next", REWARD)
NEXT_DONE = ("next", DONE)
NEXT_TERMINATED = ("next", TERMINATED)
NEXT_TRUNCATED = ("next", TRUNCATED)

# What the episode store keeps per step (see the table above).
STORE_KEYS = (PIXELS, ACTION, REWARD, TERMINATED, TRUNCATED, EPISODE, STEP)

# Imagination and the actor-critic (see the table above).
CONTEXT = "context"
IS_INIT = "is_init"
RECURRENT_STATE_H = "recurrent_state_h"
RECURRENT_STATE_C = "recurrent_state_c"
TARGET_RECURRENT_STATE_H = "target_recurrent_state_h"
TARGET_RECURRENT_STATE_C = "target_recurrent_state_c"
LOGITS = "logits"
ACTION_LOG_PROB = "action_log_prob"
VALUE_LOGITS = "value_logits"
STATE_VALUE = "state_value"
TARGET_STATE_VALUE = "target_state_value"
ADVANTAGE = "advantage"
VALUE_TARGET = "value_target"
MASK = ("collector", "mask")
CONTEXT_PIXELS = (CONTEXT, PIXELS)
