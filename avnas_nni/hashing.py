"""From features to packed hash codes with a finished run's network: a dataset split, or any feature arrays.

``avnas encode`` and ``avnas query --video`` go through here; the codes go to :mod:`avnas_nni.index`.
Features are streamed from the HDF5 files in batches, so a collection larger than memory encodes too.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avnas_nni.codes import pack_codes, sign_codes
from avnas_nni.data import SPLITS, DataError, load_dataset
from avnas_nni.errors import SettingsError
from avnas_nni.evaluator import encode as encode_features
from avnas_nni.index import CodeSet
from avnas_nni.pipeline import load_run_model

__all__ = ["RunEncoder"]

logger = logging.getLogger(__name__)


class RunEncoder:
    """A finished run's network, ready to turn (n, m, d) visual + audio features into packed codes.

    Parameters
    ----------
    run : path
        Run directory (``avnas search`` / ``avnas train`` output).
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    """

    def __init__(self, run: str | Path, device: str = "cpu"):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.run = Path(run)
        self.model, self.settings, record = load_run_model(run)
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.bits = int(record.build_kwargs.get("bits", self.settings.bits))
        self.m, self.d = record.input_shape

    def check_shape(self, m: int, d: int, where: str) -> None:
        """Fail early, naming ``where``, when features do not have the (m, d) the network was built for."""
        if (self.m, self.d) != (m, d) and None not in (self.m, self.d):
            raise DataError(f"{where}: features are (m={m}, d={d}); the network of {self.run} expects "
                            f"(m={self.m}, d={self.d})")

    def encode(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Packed codes (n, bits / 8) uint8 of one batch of features (n, m, d) float32."""
        codes = encode_features(self.model, torch.as_tensor(visual), torch.as_tensor(audio), device=self.device)
        return pack_codes(sign_codes(codes))

    def encode_split(self, data: str, split: str = "all", batch_size: int = 256,
                     progress: bool = True) -> tuple[CodeSet, float]:
        """Codes of every video of ``split`` (``all``: every listed video once) of a dataset config.

        Returns
        -------
        codes : CodeSet
            With ids, multi-hot labels and provenance (run, data, split).
        seconds : float
            Wall time of reading + encoding, for the videos/s figure.
        """
        if split != "all" and split not in SPLITS:
            raise SettingsError(f"--split: expected 'all' or one of {', '.join(SPLITS)}, got {split!r}")
        if batch_size < 1:
            raise SettingsError(f"--batch-size: expected a positive integer, got {batch_size}")
        dataset = load_dataset(data, validate=False)  # read() checks every video it touches
        self.check_shape(dataset.m, dataset.d, str(dataset.config_path))
        names = SPLITS if split == "all" else (split,)
        ids, labels = [], []
        seen: set[str] = set()
        for name in names:  # first list a video appears in gives its labels
            for vid, row in zip(dataset.ids(name), dataset.labels(name), strict=True):
                if vid not in seen:
                    seen.add(vid)
                    ids.append(vid)
                    labels.append(row)
        packed = np.empty((len(ids), -(-self.bits // 8)), dtype=np.uint8)
        start = time.perf_counter()
        with tqdm(total=len(ids), desc="encode", unit="video", disable=None if progress else True) as bar:
            for first in range(0, len(ids), batch_size):
                chunk = ids[first:first + batch_size]
                packed[first:first + len(chunk)] = self.encode(*dataset.read(chunk))
                bar.update(len(chunk))
        seconds = time.perf_counter() - start
        attrs = {"run": str(self.run), "data": str(dataset.config_path), "split": split,
                 "num_class": dataset.num_class}
        names = json.loads(dataset.config_path.read_text()).get("class_names")  # written by avnas extract
        if isinstance(names, list) and len(names) == dataset.num_class:
            attrs["class_names"] = [str(name) for name in names]
        return CodeSet(packed, ids, self.bits, np.array(labels, dtype=bool).reshape(len(ids), -1), attrs), seconds
