"""Delta-IRIS (Micheli et al., "Efficient World Models with Context-Aware Tokenization", ICML 2024)
rebuilt on TorchRL."""

__version__ = "0.1.0"

from torchrl_deltairis.config_resolvers import register_resolvers  # noqa: E402

register_resolvers()  # the configs' ${eval:...} links resolve wherever the package is imported

from torchrl_deltairis.reference import load_reference_checkpoint  # noqa: E402
from torchrl_deltairis.runs import FinishedRun, load_run  # noqa: E402

__all__ = ["__version__", "FinishedRun", "load_reference_checkpoint", "load_run"]
