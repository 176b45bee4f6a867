"""Run ``avnas`` with one fault injected, for the subprocess tests of tests/test_faults.py.

``python tests/fault_driver.py FAULT ARG -- AVNAS-ARGS…`` (``-- trial TRIAL-ARGS…``: ``python -m avnas_nni.trial``)
where FAULT is

* ``kill-write N``: the N-th durable file write (settings, checkpoints, weights, arch, history, metrics: every write of
  :func:`avnas_nni.runs.atomic_write_bytes`) writes half its bytes, then the process SIGKILLs itself;
* ``full-write N``: the N-th durable write writes half its bytes, then fails with ``ENOSPC`` (disk full);
* ``term-epoch STAGE:EPOCH``: the process sends itself SIGTERM at the end of that epoch, as ``nnictl stop`` or a
  scheduler would, before the epoch's checkpoint is written.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import warnings

import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")


def main(argv: list[str]) -> int:
    fault, arg, sep, *rest = argv
    assert sep == "--", argv
    from avnas_nni import cli, pipeline, runs

    if fault in ("kill-write", "full-write"):
        target, calls = int(arg), {"n": 0}
        original = runs._write_fd

        def write(fd: int, data: bytes) -> None:
            calls["n"] += 1
            # The temporary file's name says which file is being written (".last.ckpt.XXXX").
            print(f"fault_driver: write {calls['n']}: {os.readlink(f'/proc/self/fd/{fd}')}", file=sys.stderr,
                  flush=True)
            if calls["n"] == target:
                os.write(fd, data[: len(data) // 2])
                if fault == "full-write":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.kill(os.getpid(), signal.SIGKILL)
            original(fd, data)

        runs._write_fd = write
    elif fault == "term-epoch":
        stage, epoch = arg.split(":")
        original_end = pipeline._EpochLog.on_train_epoch_end

        def end(self, trainer, pl_module):
            original_end(self, trainer, pl_module)
            if self.stage == stage and trainer.current_epoch == int(epoch):
                os.kill(os.getpid(), signal.SIGTERM)

        pipeline._EpochLog.on_train_epoch_end = end
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    if rest[0] == "trial":  # the NNI trial entry instead of the avnas command
        from avnas_nni import trial

        return trial.main(rest[1:])
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
