"""``python -m torchrl_deltairis.play``: see :mod:`torchrl_deltairis.play.cli`."""

import sys

from torchrl_deltairis.play.cli import main

sys.exit(main())
