"""The method registry: what a student learns from its mentor's answers, and the loss it learns with.

A method is a frozen dataclass whose fields are its knobs (`base.Method`). A new one is a module here plus one
line in `METHODS`; the config, the student sets, the training loop and the report read it from here.
"""

from __future__ import annotations

from .base import Method
from .confident import Confident
from .consistent import Consistent
from .deepmimic import DeepMimic
from .hard import Hard
from .hinton import Hinton
from .supervised import Supervised

METHODS: dict[str, type[Method]] = {
    "deepmimic": DeepMimic,
    "hinton": Hinton,
    "hard": Hard,
    "supervised": Supervised,
    "confident": Confident,
    "consistent": Consistent,
}

__all__ = ["METHODS", "Method"]
