"""Quiet console output: third-party banners, tips and known deprecation warnings off unless ``-v``.

Used by the faces (CLI, NNI trial entry, benchmarks). Lightning announces hardware ("GPU available …",
"TPU available …"), advertises a cloud logger ("💡 Tip: …") and reports why ``fit`` stopped on every stage;
torch 2.13 deprecates a ``_pytree`` API that Lightning 2.6 still calls. None of it is actionable for a user.
Real warnings (ours, Lightning's ``rank_zero_warn``) still show.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["QUIET_LOGGERS", "DEPRECATIONS", "quiet_libraries"]

#: Loggers whose INFO lines are banners and tips (their WARNINGs still pass).
QUIET_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning.pytorch.accelerators.cuda")

#: Message patterns of third-party deprecation warnings nobody using avnas-nni can act on.
DEPRECATIONS = (r".*torch\.utils\._pytree.*deprecated.*", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
                r".*LeafSpec.*is deprecated.*")


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the banners, tips and known deprecation warnings; with ``verbose`` leave everything on.

    The loggers are set by name before Lightning is imported: Lightning resets only its top-level logger's
    level on import, not these children's.
    """
    if verbose:
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in DEPRECATIONS:
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", message=pattern, category=category)
