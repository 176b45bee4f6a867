"""What survives what: bad input before anything is written, a second writer, SIGKILL, SIGTERM, a full disk, a
damaged checkpoint, a modified index (docs/faults.md lists each fault with the test here that checks it)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avnas_nni import runs
from avnas_nni.cli import main
from avnas_nni.pipeline import RunSettings, run_search, run_train
from avnas_nni.runs import RunError, RunLock

ROOT = Path(__file__).resolve().parents[1]
#: The tiny search every fault test runs: 2 search + 2 fine-tune epochs on tiny_data, a few seconds.
CLI_ARGS = ["--bits", "8", "--epochs", "2", "--finetune-epochs", "2", "--batch-size", "16", "--seed", "7",
            "--no-progress"]


def _settings(data: str, **kwargs) -> RunSettings:
    defaults = dict(data=data, bits=8, search_epochs=2, finetune_epochs=2, batch_size=16, seed=7)
    return RunSettings(**(defaults | kwargs))


def _train_settings(data: str, **kwargs) -> RunSettings:
    defaults = dict(strategy="fixed", arch="transformer", data=data, bits=8, search_epochs=0, finetune_epochs=2,
                    batch_size=16, seed=4)  # what `avnas train` makes
    return RunSettings(**(defaults | kwargs))


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # as this process: same floats
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce, and the temporary names of its durable writes
    in order (which files a run writes depends on its numbers: a best.ckpt only when val mAP improved)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    writes, original = [], runs._write_fd

    def record(fd: int, data: bytes) -> None:
        writes.append(os.readlink(f"/proc/self/fd/{fd}"))
        original(fd, data)

    runs._write_fd = record
    try:
        metrics = run_search(_settings(tiny_data), out)
    finally:
        runs._write_fd = original
    return out, metrics, writes


def _same_result(out: Path, reference: tuple[Path, dict]) -> None:
    ref_out, ref_metrics, _ = reference
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_mAP@100"] == pytest.approx(ref_metrics["test_mAP@100"], abs=1e-12)
    assert json.loads((out / "arch.json").read_text())["arch"] == json.loads((ref_out / "arch.json").read_text())[
        "arch"]
    a, b = load_file(str(ref_out / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _nan_copy(tiny_data: str, root: Path) -> str:
    """tiny_data with NaN in one test video's visual vectors."""
    shutil.copytree(Path(tiny_data).parent, root)
    config = json.loads((root / "config.json").read_text())
    with h5py.File(root / config["Image"], "r+") as h5:
        vid = (root / config["test_list"]).read_text().splitlines()[3].split(",")[0]
        vectors = h5[vid]["vectors"][()]
        vectors[2, 5] = np.nan
        h5[vid]["vectors"][...] = vectors
    return str(root / "config.json")


# --- validate first, write second -------------------------------------------------------------------------------

def test_bad_data_then_the_corrected_command_into_the_same_out(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--out", str(out), "--bits", "8", "--epochs", "1", "--finetune-epochs", "0", "--batch-size",
            "16", "--no-progress"]
    assert main([*args, "--data", str(tmp_path / "nowhere.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nowhere.json: dataset config not found" in err
    assert not out.exists()  # nothing written: the corrected command is not refused
    if not torch.cuda.is_available():
        assert main([*args, "--data", tiny_data, "--device", "cuda"]) == 2
        assert "cuda requested but torch sees no CUDA device" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--data", tiny_data]) == 0
    assert (out / "metrics.json").is_file()


def test_nan_data_is_one_line_before_nni_starts_and_writes_nothing(tiny_data, tmp_path):
    out = tmp_path / "run"
    done = _python("-m", "avnas_nni", "search", "--data", _nan_copy(tiny_data, tmp_path / "nan"), "--out", str(out),
                   *CLI_ARGS)
    assert done.returncode == 2, done.stderr
    assert _error_lines(done.stderr) == [line for line in done.stderr.splitlines() if line.startswith("avnas:")]
    assert len(_error_lines(done.stderr)) == 1 and "non-finite values" in done.stderr
    assert "fails to be executed" not in done.stderr and "Strategy failed" not in done.stderr
    assert not out.exists()


def test_a_run_that_finished_no_epoch_is_taken_over(tiny_data, tmp_path, caplog):
    """What a run killed before its first finished epoch leaves (settings, log, arch of a fixed net) blocks
    nothing; one epoch's checkpoint does."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "settings.json").write_text("{}")
    (out / "arch.json").write_text("{}")
    (out / "run.log").write_text("")
    settings = _train_settings(tiny_data, finetune_epochs=1)
    run_train(settings, out)
    assert "taking over a run that finished no epoch" in caplog.text
    shutil.rmtree(out / "checkpoints" / "finetune")
    (out / "metrics.json").unlink()
    (out / "model.safetensors").unlink()
    assert not runs.RunDir(out).has_finished_work()
    (out / "checkpoints" / "finetune").mkdir()
    (out / "checkpoints" / "finetune" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(RunError, match="already holds a run"):
        run_train(settings, out)


# --- one writer per run directory ----------------------------------------------------------------------------------

def test_a_second_writer_is_refused_with_the_holders_pid(tiny_data, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from avnas_nni.runs import RunLock; RunLock(sys.argv[1]).acquire();"
         " print('held', flush=True); time.sleep(60)", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"in use by another avnas process \(pid {holder.pid} on "):
            run_train(_train_settings(tiny_data), out)
        assert not (out / "settings.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock; its lock file is taken over with a warning.
    with RunLock(out) as lock:
        assert lock.lock_path.read_text().split()[0] == str(os.getpid())
    assert not (out / ".lock").exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tiny_data, tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{dead.pid} somehost\n")
    run_train(_train_settings(tiny_data, finetune_epochs=1), out)
    assert f"took over the stale lock of pid {dead.pid}" in caplog.text
    assert not (out / ".lock").exists() and (out / "metrics.json").is_file()


def test_the_lock_makes_and_removes_an_empty_directory(tmp_path):
    with RunLock(tmp_path / "new"):
        assert (tmp_path / "new" / ".lock").is_file()
        with pytest.raises(RunError, match=f"pid {os.getpid()}"):  # a second lock, even from this process
            RunLock(tmp_path / "new").acquire()
    assert not (tmp_path / "new").exists()


# --- checkpoints ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """A finished 2-epoch fixed-architecture run: checkpoints/finetune holds last (epoch 1) and last.prev (0)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    return out, run_train(_train_settings(tiny_data), out)


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def test_the_previous_checkpoint_is_kept(trained):
    out, _ = trained
    folder = out / "checkpoints" / "finetune"
    assert _epoch(folder / "last.ckpt") == 1 and _epoch(folder / "last.prev.ckpt") == 0
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt", "last.prev.ckpt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_last_checkpoint_is_named_and_the_one_before_resumes(trained, tiny_data, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    (out / "metrics.json").unlink()  # as if killed after the last epoch's checkpoint
    last = out / "checkpoints" / "finetune" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\0" * 100)
    with pytest.raises(RunError, match=r"last\.ckpt: damaged checkpoint \(.*\); to resume from the epoch before: "
                                       r"mv \S+last\.prev\.ckpt \S+last\.ckpt and rerun with --resume"):
        run_train(_train_settings(tiny_data), out, resume=True)
    os.replace(last.with_name("last.prev.ckpt"), last)  # the documented way back
    metrics = run_train(_train_settings(tiny_data), out, resume=True)
    assert metrics["test_mAP@100"] == pytest.approx(trained[1]["test_mAP@100"], abs=1e-12)


def test_disk_full_while_writing_a_checkpoint(trained, tiny_data, tmp_path, monkeypatch, capsys):
    """ENOSPC at the write call: one line naming the checkpoint, the previous one intact and resumable."""
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    for name in ("metrics.json", "model.safetensors", "checkpoints/finetune/last.ckpt"):
        (out / name).unlink()
    folder = out / "checkpoints" / "finetune"
    os.replace(folder / "last.prev.ckpt", folder / "last.ckpt")  # as if stopped after epoch 0

    original = runs._write_fd

    def full(fd, data):  # the disk fills up as the checkpoint is written (arch.json still fitted)
        if ".ckpt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(fd, data)

    monkeypatch.setattr(runs, "_write_fd", full)
    code = main(["train", "--arch", "transformer", "--data", tiny_data, "--out", str(out), "--bits", "8",
                 "--finetune-epochs", "2", "--batch-size", "16", "--seed", "4", "--no-progress", "--resume"])
    err = capsys.readouterr().err
    # the finished epochs' INFO lines may come first (the console log); the error itself is one line, the last
    errors = [line for line in err.strip().splitlines() if line.startswith("avnas:")]
    assert code == 2 and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    # val mAP falls in epoch 1 of this run (seed 4), so best.ckpt is not rewritten and last.ckpt is the write that fails
    assert f"{folder / 'last.ckpt'}: cannot write file (No space left on device); free some space and rerun with " \
           "--resume" in err
    assert _epoch(folder / "last.ckpt") == 0
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    monkeypatch.undo()
    metrics = run_train(_train_settings(tiny_data), out, resume=True)
    assert metrics["test_mAP@100"] == pytest.approx(trained[1]["test_mAP@100"], abs=1e-12)


def test_disk_full_while_writing_weights(tmp_path, monkeypatch):
    out = tmp_path / "model.safetensors"
    net = torch.nn.Linear(3, 2)
    runs.save_weights(net, out)
    before = out.read_bytes()

    def full(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs, "_write_fd", full)
    with pytest.raises(RunError, match=rf"^{out}: cannot write weights \(No space left on device\); free some"):
        runs.save_weights(torch.nn.Linear(3, 2), out)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# --- SIGKILL and SIGTERM (subprocesses) -----------------------------------------------------------------------------

#: Where the kills land, as (temporary file name, which of its writes: 0 the first, -1 the last) in the reference
#: run's durable writes (settings.json, the search's last.ckpt per epoch, alpha_history, pruned_init, arch.json, the
#: fine-tune's best.ckpt when val mAP improved and last.ckpt per epoch, model.safetensors, history.csv, metrics.json):
#: inside checkpoint writes of both stages and inside the writes of the pruned weights, arch.json and the final weights.
@pytest.mark.parametrize("name, which", [(".last.ckpt.", 0), (".pruned_init.safetensors.", 0), (".arch.json.", 0),
                                         (".last.ckpt.", -1), (".model.safetensors.", 0)])
def test_sigkill_inside_a_write_then_resume_gives_the_uninterrupted_result(reference, tiny_data, tmp_path, caplog,
                                                                          name, which):
    write = [i for i, path in enumerate(reference[2], start=1) if name in path][which]
    out = tmp_path / "run"
    killed = _python("tests/fault_driver.py", "kill-write", str(write), "--", "search", "--data", tiny_data,
                     "--out", str(out), *CLI_ARGS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    writes = [line for line in killed.stderr.splitlines() if line.startswith("fault_driver: write")]
    assert len(writes) == write and name in writes[-1], writes
    assert not (out / "metrics.json").exists() and (out / ".lock").is_file()
    assert [p for p in out.rglob(".*") if p.name != ".lock"]  # the half-written temporary file
    run_search(_settings(tiny_data), out, resume=True)  # in this process: one interpreter start less
    assert "took over the stale lock" in caplog.text
    _same_result(out, reference)


def test_disk_full_inside_nnis_engine_is_one_line(tiny_data, tmp_path):
    """ENOSPC at the search's second checkpoint, under NNI's engine: one line naming it, exit 2, no NNI lines."""
    out = tmp_path / "run"
    failed = _python("tests/fault_driver.py", "full-write", "3", "--", "search", "--data", tiny_data, "--out",
                     str(out), *CLI_ARGS)
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert _error_lines(failed.stderr) == [f"avnas: error: {out}/checkpoints/search/last.ckpt: cannot write file (No "
                                           "space left on device); free some space and rerun with --resume"]
    assert "Strategy failed" not in failed.stderr
    assert _epoch(out / "checkpoints" / "search" / "last.ckpt") == 0


def test_sigterm_checkpoints_the_epoch_exits_143_and_resume_finishes(reference, tiny_data, tmp_path):
    out = tmp_path / "run"
    started = time.perf_counter()
    stopped = _python("tests/fault_driver.py", "term-epoch", "search:0", "--", "search", "--data", tiny_data,
                      "--out", str(out), *CLI_ARGS)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "avnas: terminated (SIGTERM)" in stopped.stderr and "fails to be executed" not in stopped.stderr
    assert _epoch(out / "checkpoints" / "search" / "last.ckpt") == 0  # the epoch SIGTERM arrived in
    assert not (out / ".lock").exists()
    run_search(_settings(tiny_data), out, resume=True)
    _same_result(out, reference)
    assert time.perf_counter() - started < 120


# --- codes and indexes ------------------------------------------------------------------------------------------

def _codes(n: int, seed: int):
    from avnas_nni.index import CodeSet

    rng = np.random.default_rng(seed)
    return CodeSet(rng.integers(0, 256, (n, 2), dtype=np.uint8), [f"v{i}" for i in range(n)], 16)


def test_an_index_modified_after_its_build_is_refused(tmp_path):
    from avnas_nni.index import HashIndex, IndexFileError

    HashIndex.build(_codes(50, 0), "flat").save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert set(meta["files"]) == {"index.faiss", "codes.h5"} and len(meta["files"]["codes.h5"]["sha256"]) == 64
    assert len(HashIndex.load(tmp_path / "index")) == 50
    faiss_path = tmp_path / "index" / "index.faiss"
    original = faiss_path.read_bytes()
    flipped = bytearray(original)
    flipped[-3] ^= 0xFF  # one code bit changed, same size: only the digest can tell
    faiss_path.write_bytes(bytes(flipped))
    with pytest.raises(IndexFileError, match=r"index\.faiss: modified after the index was built \(sha256 "):
        HashIndex.load(tmp_path / "index")
    faiss_path.write_bytes(original)
    with open(tmp_path / "index" / "codes.h5", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IndexFileError, match=r"codes\.h5: modified after the index was built \(\d+ bytes"):
        HashIndex.load(tmp_path / "index")


@pytest.mark.parametrize("part", ["codes.h5", "index.faiss"])
def test_disk_full_while_writing_codes_or_an_index(tmp_path, monkeypatch, part):
    """ENOSPC at the write call: one line naming the file; the index and codes written before stay loadable."""
    from avnas_nni import index as index_mod
    from avnas_nni.index import HashIndex, IndexFileError, read_codes, write_codes

    HashIndex.build(_codes(50, 0), "flat").save(tmp_path / "index")
    write_codes(tmp_path / "codes.h5", _codes(50, 0))
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if part == "codes.h5":
        real_file = h5py.File

        def file(name, mode="r", *args, **kwargs):
            if mode == "w":
                raise full
            return real_file(name, mode, *args, **kwargs)

        monkeypatch.setattr(index_mod.h5py, "File", file)
        with pytest.raises(IndexFileError, match=rf"^{tmp_path / 'codes.h5'}: cannot write codes \(No space left"):
            write_codes(tmp_path / "codes.h5", _codes(80, 1))
    else:
        faiss = index_mod._faiss()

        class Full:
            def __getattr__(self, name):
                return getattr(faiss, name)

            def write_index_binary(self, index, path):  # faiss's own message for a failed fwrite
                raise RuntimeError("Error in faiss::BufferedIOWriter: fwrite returned 0 (No space left on device)")

        monkeypatch.setattr(index_mod, "_faiss", Full)
    with pytest.raises(IndexFileError, match=rf"^{tmp_path / 'index' / part}: cannot write .*No space left on device.*"
                                             rf"; {tmp_path / 'index'} is unchanged$"):
        HashIndex.build(_codes(80, 1), "flat").save(tmp_path / "index")
    monkeypatch.undo()
    assert len(HashIndex.load(tmp_path / "index")) == 50 and len(read_codes(tmp_path / "codes.h5")) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.h5", "index"]  # no temporary left behind


def test_sigterm_in_an_nni_trial_exits_143_not_0(tiny_data, tmp_path):
    """Lightning's SIGTERMException is a SystemExit without a code: uncaught, a terminated trial would exit 0."""
    out = tmp_path / "run"
    stopped = _python("tests/fault_driver.py", "term-epoch", "finetune:0", "--", "trial", "--data", tiny_data,
                      "--out", str(out), "--no-onnx", "--set", "arch=\"transformer\"", "--set", "bits=8",
                      "--set", "finetune_epochs=2", "--set", "batch_size=16")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert f"avnas trial: terminated (SIGTERM); the last finished epoch is checkpointed in {out}" in stopped.stderr
    assert _epoch(out / "checkpoints" / "finetune" / "last.ckpt") == 0 and not (out / "metrics.json").exists()
