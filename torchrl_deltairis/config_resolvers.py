"""The ``${eval:'...'}`` resolver of the Hydra configs: arithmetic only, never Python code.

The reference links config values by interpolation, some through arithmetic (the actor-critic's
training sequence is ``${eval:'${params.actor_critic.burn_in_length} + 1'}``, the encoder's input
channels ``${eval:'${..image_channels} * 2 + 1'}``); it registers Python's ``eval`` for that. Our
configs keep the same links with the same syntax, so that changing the source of a link (a burn-in
length, an image channel count) changes every value that follows from it, and reference-format YAMLs
load as they are. Importing :mod:`torchrl_deltairis` registers the resolver (before Hydra resolves
anything: resolution is lazy).
"""

from __future__ import annotations

import ast
import operator

from omegaconf import OmegaConf

__all__ = ["arithmetic", "register_resolvers"]

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.USub: operator.neg}


def arithmetic(expression: str) -> int | float:
    """Evaluates ``+ - * / //`` and unary minus over numbers; anything else raises ``ValueError``."""

    def value(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"only arithmetic is allowed in ${{eval:...}}, got {expression!r}")

    return value(ast.parse(str(expression), mode="eval").body)


def register_resolvers() -> None:
    """Registers ``eval`` with OmegaConf once (a resolver already registered under that name is kept)."""
    if not OmegaConf.has_resolver("eval"):
        OmegaConf.register_new_resolver("eval", arithmetic)
