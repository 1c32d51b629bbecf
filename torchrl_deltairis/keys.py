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
INDEX = "index"
TOKENS = "tokens"

NEXT_PIXELS = ("next", PIXELS)
NEXT_REWARD = ("next", REWARD)
NEXT_DONE = ("next", DONE)
NEXT_TERMINATED = ("next", TERMINATED)
NEXT_TRUNCATED = ("next", TRUNCATED)
NEXT_ACHIEVEMENTS = ("next", ACHIEVEMENTS)

# What the episode store keeps per step (see the table above).
STORE_KEYS = (PIXELS, ACTION, REWARD, TERMINATED, TRUNCATED, EPISODE, STEP)
