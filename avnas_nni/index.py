"""Packed hash codes on disk and faiss Hamming k-NN indexes over them.

Two file formats, both written atomically (a temporary file or directory renamed into place, so an
interrupted write never leaves half a file under the final name):

``codes.h5`` (:func:`write_codes` / :func:`read_codes`)
    ``codes`` uint8 (n, ceil(bits / 8)) packed as :func:`avnas_nni.codes.pack_codes` packs them, ``ids``
    UTF-8 strings (n,), optionally ``labels`` bool (n, num_class) multi-hot; attributes ``bits`` and any
    provenance (run, data, split).

an index directory (:meth:`HashIndex.save` / :meth:`HashIndex.load`)
    ``index.faiss`` (faiss's own binary-index serialisation, no pickle), ``codes.h5`` (the indexed codes,
    ids and labels, so a stored video can be a query by its id) and ``index.json`` (kind and parameters).

Index kinds (faiss-cpu):

``flat``
    ``IndexBinaryFlat``: exact Hamming k-NN by brute force, the default.
``hash``
    ``IndexBinaryHash``: buckets on the first ``hash_bits`` bits; a query probes its bucket and every bucket
    within ``nflip`` flipped bits. Approximate: recall depends on both (see ``benchmarks/knn_speed.py``).
``multihash``
    ``IndexBinaryMultiHash``: ``nhash`` hash tables over disjoint ``hash_bits`` slices of the code; more
    tables, higher recall, more memory.

Results of :meth:`HashIndex.search` are sorted by (Hamming distance, database position), so equal
distances come back in a fixed order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avnas_nni.errors import AVNASError, SettingsError

__all__ = ["INDEX_KINDS", "CodeSet", "HashIndex", "IndexFileError", "write_codes", "read_codes"]

logger = logging.getLogger(__name__)

#: Index kinds :meth:`HashIndex.build` accepts.
INDEX_KINDS = ("flat", "hash", "multihash")
_INDEX_VERSION = 1


class IndexFileError(AVNASError):
    """A bad codes file or index directory: the message names the file and what was expected."""


@dataclass
class CodeSet:
    """Packed codes with their video ids (and labels when known).

    Attributes
    ----------
    codes : numpy.ndarray
        uint8 (n, ceil(bits / 8)).
    ids : list of str
        One per code, unique.
    bits : int
        Code length q.
    labels : numpy.ndarray or None
        bool (n, num_class) multi-hot, or None.
    attrs : dict
        Provenance (``run``, ``data``, ``split`` …), JSON-ready values.
    """

    codes: np.ndarray
    ids: list[str]
    bits: int
    labels: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codes = np.ascontiguousarray(self.codes)
        _check_codes(self.codes, self.bits, "codes")
        if len(self.ids) != len(self.codes):
            raise ValueError(f"CodeSet: {len(self.ids)} ids for {len(self.codes)} codes")
        seen: set[str] = set()
        for vid in self.ids:
            if vid in seen:
                raise ValueError(f"CodeSet: video id {vid!r} appears twice; ids must be unique")
            seen.add(vid)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=bool)
            if self.labels.ndim != 2 or len(self.labels) != len(self.codes):
                raise ValueError(f"CodeSet: labels must be (n={len(self.codes)}, num_class), "
                                 f"got shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.codes)

    def positions(self, ids: Sequence[str], where: str = "codes") -> np.ndarray:
        """Positions of ``ids``; an unknown id is an error naming it."""
        lookup = {vid: i for i, vid in enumerate(self.ids)}
        missing = [vid for vid in ids if vid not in lookup]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" …" if len(missing) > 5 else "")
            raise IndexFileError(f"{where}: unknown video id(s) {shown} ({len(self)} ids stored)")
        return np.array([lookup[vid] for vid in ids], dtype=np.int64)


def _check_codes(codes: np.ndarray, bits: int, where: str) -> None:
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"{where}: packed codes must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
    if bits < 1 or codes.shape[1] != -(-bits // 8):
        raise ValueError(f"{where}: {codes.shape[1]} bytes a code does not fit bits={bits} "
                         f"(expected {-(-max(bits, 0) // 8)})")


def _atomic_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(handle, 0o644)  # mkstemp's 0600 would otherwise stick to the published file
    os.close(handle)
    return Path(tmp)


def write_codes(path: str | os.PathLike, codes: CodeSet) -> Path:
    """Write a :class:`CodeSet` to an HDF5 codes file, atomically; returns the path."""
    path = Path(path)
    tmp = _atomic_path(path)
    try:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("codes", data=codes.codes)
            h5.create_dataset("ids", data=np.array(codes.ids, dtype=object), dtype=h5py.string_dtype())
            if codes.labels is not None:
                h5.create_dataset("labels", data=codes.labels, compression="gzip")
            h5.attrs["bits"] = codes.bits
            h5.attrs["format"] = "avnas-codes"
            h5.attrs["provenance"] = json.dumps(codes.attrs)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, read-only …: one line naming the file; an old one stays as it was
        raise IndexFileError(f"{path}: cannot write codes ({_os_reason(exc)})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _os_reason(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno)
    # h5py reports a failed write as a bare OSError whose text carries the system's reason.
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


def _file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as stored in ``index.json`` and checked on load."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_codes(path: str | os.PathLike) -> CodeSet:
    """Read and check a codes file written by :func:`write_codes` (or by ``avnas encode``)."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"{path}: no such codes file")
    try:
        with h5py.File(path, "r") as h5:
            missing = [name for name in ("codes", "ids") if name not in h5] + (
                [] if "bits" in h5.attrs else ["attribute 'bits'"])
            if missing:
                raise IndexFileError(f"{path}: not an avnas codes file (missing {', '.join(missing)}); "
                                  "expected the output of 'avnas encode'")
            codes = h5["codes"][()]
            ids = [value.decode() if isinstance(value, bytes) else str(value) for value in h5["ids"][()]]
            labels = h5["labels"][()] if "labels" in h5 else None
            bits = int(h5.attrs["bits"])
            attrs = json.loads(h5.attrs.get("provenance", "{}"))
    except OSError as exc:
        raise IndexFileError(f"{path}: unreadable HDF5 file ({' '.join(str(exc).split())[:120]})") from None
    try:
        return CodeSet(codes, ids, bits, labels, attrs)
    except ValueError as exc:
        raise IndexFileError(f"{path}: {exc}") from None


def _faiss():
    import faiss  # deferred: the rest of the package works without faiss loaded

    return faiss


class HashIndex:
    """A faiss binary index with the ids, labels and codes of what it holds.

    Build with :meth:`build`, query with :meth:`search` (packed query codes) or :meth:`search_ids`
    (stored videos as queries), persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, index: Any, codes: CodeSet, kind: str, params: dict[str, int]):
        self.index, self.codes, self.kind, self.params = index, codes, kind, dict(params)

    @property
    def bits(self) -> int:
        """Code length q."""
        return self.codes.bits

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, codes: CodeSet, kind: str = "flat", *, hash_bits: int | None = None, nhash: int = 2,
              nflip: int = 2) -> HashIndex:
        """Index ``codes``.

        Parameters
        ----------
        codes : CodeSet
            The database. ``bits`` must be a multiple of 8 (faiss binary indexes work on whole bytes).
        kind : {"flat", "hash", "multihash"}
            Exact brute force (default) or one of faiss's approximate hash indexes.
        hash_bits : int, optional
            Bits per hash key (``hash``, ``multihash``); default ``min(16, bits // nhash)``, at most 24.
        nhash : int
            Hash tables (``multihash``).
        nflip : int
            Flipped bits probed around a query's key (``hash``, ``multihash``).
        """
        if kind not in INDEX_KINDS:
            raise SettingsError(f"index kind: expected one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        if codes.bits % 8:
            raise SettingsError(f"faiss binary indexes need a code length that is a multiple of 8, got {codes.bits}")
        faiss = _faiss()
        params: dict[str, int] = {}
        if kind == "flat":
            index = faiss.IndexBinaryFlat(codes.bits)
        else:
            tables = nhash if kind == "multihash" else 1
            b = hash_bits or min(16, codes.bits // tables)
            if not 1 <= b <= min(24, codes.bits // tables):
                raise SettingsError(f"hash_bits: expected 1…{min(24, codes.bits // tables)} for {codes.bits}-bit codes "
                                 f"and {tables} table(s), got {b}")
            if nflip < 0:
                raise SettingsError(f"nflip: expected ≥ 0, got {nflip}")
            if kind == "hash":
                index = faiss.IndexBinaryHash(codes.bits, b)
            else:
                index = faiss.IndexBinaryMultiHash(codes.bits, tables, b)
            index.nflip = nflip
            params = {"hash_bits": b, "nflip": nflip} | ({"nhash": tables} if kind == "multihash" else {})
        if len(codes):
            index.add(codes.codes)
        logger.info("built a %s index of %d %d-bit codes", kind, len(codes), codes.bits)
        return cls(index, codes, kind, params)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Hamming k-NN of packed query codes.

        Returns
        -------
        distances : numpy.ndarray
            int32 (nq, k), ascending per row; -1 where an approximate index found fewer than k.
        positions : numpy.ndarray
            int64 (nq, k) database positions (ids: ``index.codes.ids[p]``); -1 where none was found.
        """
        queries = np.ascontiguousarray(queries)
        _check_codes(queries, self.bits, "queries")
        if k < 1:
            raise SettingsError(f"k: expected a positive integer, got {k}")
        k = min(k, len(self)) or 1
        distances, positions = self.index.search(queries, k)
        # Fixed order among equal distances (faiss's heap leaves it arbitrary); misses (-1) go last.
        key = np.where(positions < 0, np.iinfo(np.int32).max, distances)
        order = np.lexsort((positions, key), axis=-1) if positions.size else positions
        distances = np.take_along_axis(distances, order, axis=1)
        positions = np.take_along_axis(positions, order, axis=1)
        distances[positions < 0] = -1
        return distances.astype(np.int32), positions.astype(np.int64)

    def search_ids(self, ids: Sequence[str], k: int = 10, exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """k-NN of stored videos given by id (each one's own entry left out when ``exclude_self``)."""
        where = self.codes.positions(ids, "query ids")
        if exclude_self:
            k = max(1, min(k, len(self) - 1))  # every row then has k others, whether or not it found itself
        distances, positions = self.search(self.codes.codes[where], k + int(exclude_self))
        if not exclude_self:
            return distances, positions
        keep = positions != where[:, None]
        # Drop the query's own entry where it came back; otherwise drop the last neighbour.
        rows = [np.flatnonzero(row)[:k] for row in keep]
        return (np.stack([d[r] for d, r in zip(distances, rows, strict=True)]),
                np.stack([p[r] for p, r in zip(positions, rows, strict=True)]))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory atomically (an existing one is replaced only once the new one is whole)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would otherwise stick to the published directory
        try:
            try:
                _faiss().write_index_binary(self.index, str(tmp / "index.faiss"))
            except (OSError, RuntimeError) as exc:  # faiss reports a failed fwrite as a RuntimeError
                reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc).strip().splitlines()[-1][:160]
                raise IndexFileError(f"{directory / 'index.faiss'}: cannot write the index ({reason}); "
                                     f"{directory} is unchanged") from None
            try:
                write_codes(tmp / "codes.h5", self.codes)
            except IndexFileError as exc:
                raise IndexFileError(f"{directory / 'codes.h5'}: {str(exc).split(': ', 1)[1]}; {directory} is "
                                     "unchanged") from None
            # Sizes and SHA-256 of the parts: load refuses parts changed after the build.
            files = {name: _file_digest(tmp / name) for name in ("index.faiss", "codes.h5")}
            try:
                (tmp / "index.json").write_text(json.dumps({"format": "avnas-index", "version": _INDEX_VERSION,
                                                            "kind": self.kind, "bits": self.bits, "size": len(self),
                                                            **self.params, "files": files}, indent=2) + "\n")
            except OSError as exc:
                raise IndexFileError(f"{directory / 'index.json'}: cannot write ({_os_reason(exc)}); {directory} "
                                     "is unchanged") from None
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> HashIndex:
        """Read an index directory written by :meth:`save`, checking its parts agree."""
        directory = Path(directory)
        meta_path = directory / "index.json"
        if not meta_path.is_file():
            raise IndexFileError(f"{directory}: not an avnas index directory (no index.json); "
                              "build one with 'avnas index build'")
        try:
            meta = json.loads(meta_path.read_text())
            kind, bits, size = meta["kind"], int(meta["bits"]), int(meta["size"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IndexFileError(f"{meta_path}: expected JSON with kind, bits and size ({exc})") from None
        if kind not in INDEX_KINDS:
            raise IndexFileError(f"{meta_path}: kind: expected one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        _check_files(directory, meta.get("files"))
        codes = read_codes(directory / "codes.h5")
        try:
            index = _faiss().read_index_binary(str(directory / "index.faiss"))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else "read failed"
            raise IndexFileError(f"{directory / 'index.faiss'}: unreadable faiss index ({first})") from None
        if index.ntotal != size or len(codes) != size or index.d != bits or codes.bits != bits:
            raise IndexFileError(f"{directory}: parts disagree (index.json: {size} codes of {bits} bits; "
                              f"index.faiss: {index.ntotal} of {index.d}; codes.h5: {len(codes)} of {codes.bits})")
        params = {key: int(meta[key]) for key in ("hash_bits", "nflip", "nhash") if key in meta}
        if "nflip" in params:
            index.nflip = params["nflip"]
        return cls(index, codes, kind, params)


def _check_files(directory: Path, files: Any) -> None:
    """Refuse an index part whose size or SHA-256 differ from those ``index.json`` recorded at build time."""
    if files is None:  # built before the digests were stored
        logger.debug("%s: index.json stores no file digests; parts not checked", directory)
        return
    for name in ("index.faiss", "codes.h5"):
        path = directory / name
        expected = files.get(name) if isinstance(files, dict) else None
        if not isinstance(expected, dict) or not {"bytes", "sha256"} <= expected.keys():
            raise IndexFileError(f"{directory / 'index.json'}: 'files' lacks the size and sha256 of {name}")
        if not path.is_file():
            raise IndexFileError(f"{path}: missing; rebuild the index with 'avnas index build'")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise IndexFileError(f"{path}: modified after the index was built ({size} bytes, index.json says "
                                 f"{expected['bytes']}); rebuild it with 'avnas index build'")
        actual = _file_digest(path)["sha256"]
        if actual != expected["sha256"]:
            raise IndexFileError(f"{path}: modified after the index was built (sha256 {actual[:12]}…, index.json "
                                 f"says {expected['sha256'][:12]}…); rebuild it with 'avnas index build'")
