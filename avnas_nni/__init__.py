"""avnas-nni: AV-NAS (SIGIR 2025) audio-visual neural architecture search for video hashing, on NNI.

Subpackages: :mod:`avnas_nni.ops` (Table 1 operators, selective scan), :mod:`avnas_nni.data` (feature layout,
synthetic set, triplets), :mod:`avnas_nni.loss`, :mod:`avnas_nni.codes`, :mod:`avnas_nni.metrics`,
:mod:`avnas_nni.evaluator`, :mod:`avnas_nni.pipeline`. The search spaces live in the top-level
``search_spaces`` package and the strategies in ``strategies``.
"""

import contextlib
import io
import warnings

from avnas_nni.threads import prepare_environment

__version__ = "0.1.0"
__all__ = ["__version__"]

# Before anything imports torch: GNU OpenMP reads its wait policy once, when it loads (avnas_nni.threads).
prepare_environment()

# NNI 3.0 predates torch 2.13: its module scan warns about every new non-Module class in torch.nn (harmless).
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*", category=RuntimeWarning)
# NNI's one-shot package imports tianshou → gym 0.26, whose import prints an "unmaintained" notice to stderr
# that users cannot act on (NNI's ENAS needs exactly this gym). Import it once with the notice swallowed.
with contextlib.redirect_stderr(io.StringIO()):
    try:
        import gym  # noqa: F401
    except ImportError:
        pass
