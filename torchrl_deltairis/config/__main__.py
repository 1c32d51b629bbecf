"""``python -m torchrl_deltairis.config``: every key of the run's config, as the table of docs/config.md."""

from torchrl_deltairis.config.run import reference_table

print(reference_table(), end="")
