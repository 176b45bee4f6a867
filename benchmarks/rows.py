"""The rows of the paper's Table 2 and Table 3 as a registry: what each row runs and what the paper reports.

A row is one run of the project's pipeline (:func:`avnas_nni.pipeline.run_search`, ``run_train`` or
``run_method``) with a few settings changed; the benchmark runner (:mod:`benchmarks.table2`) runs it per code
length and seed. The expert-designed video-hashing methods of Table 2 (lines 3–11) are ``method`` rows, one
per method of :mod:`avnas_nni.methods`; more join with :func:`register_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from avnas_nni.methods import METHODS

__all__ = ["Row", "ROWS", "register_row", "select_rows", "PAPER_DATASETS", "DERIVATIONS", "SELF_FUSION"]

#: The paper's two datasets, in the order of :attr:`Row.paper` values.
PAPER_DATASETS = ("ActivityNet", "FCVID")

#: How a ``derive`` row turns its source row's architecture into its own: ``cross`` keeps it (trained on the other
#: dataset: the paper's cross-test), ``visual``/``audio`` keep that branch and replace the fusion cells (I1, I2, F)
#: by a Self-Fusion cell, "preserving the remainder of the structure" (paper §5.2, Table 2 lines 21–22).
DERIVATIONS = ("cross", "visual", "audio")

#: The Self-Fusion operator of the single-modality rows (the paper allows SelfAttention or SelfSSM).
SELF_FUSION = "SelfAttention"


@dataclass(frozen=True)
class Row:
    """One row of Table 2 or Table 3.

    Attributes
    ----------
    name : str
        The row's name as the paper prints it.
    table : str
        ``"2"`` or ``"3"``.
    command : str
        ``"search"`` (a strategy searches, then the exported net is fine-tuned), ``"train"`` (a fixed
        architecture trained from scratch) or ``"method"`` (a video-hashing method of
        :mod:`avnas_nni.methods`, named by ``settings["method"]``, trained from scratch with its own loss).
    settings : dict
        :class:`~avnas_nni.pipeline.RunSettings` fields this row sets.
    seed_offset : int
        Added to the run's seed. Random 1–5 are five samples: offsets 1000…5000, so that the samples of seeds less
        than 1000 apart never coincide (offsets 1…5 made Random 2 at seed s the very run of Random 1 at s + 1).
    paper : dict
        Code length → (ActivityNet, FCVID) mAP@100 the paper reports; None where it gives none per row.
    group : str
        ``"nas"`` (the NAS baselines AV-NAS is compared with), ``"random"``, ``"avnas"``, ``"modality"``,
        ``"expert"`` (Table 3), ``"expert-hashing"`` (the video-hashing methods of Table 2, lines 3–11).
    share_search_with : str or None
        A ``search`` row whose settings equal this one's but for ``prune``: when both run, the runner searches
        once and this row fine-tunes what its own rule prunes from that search (AV-NAS Arch-2 from Arch-1's).
    quick : dict
        Settings this row takes under the ``bench-quick`` profile only (on top of ``settings``); the report lists them.
        For a method too costly for the quick budget at its paper's size (AVH's 1024-wide LSTM).
    dataset : str
        ``"A"`` (the benchmark's ``--data``: ActivityNet's part) or ``"B"`` (``--data-b``: FCVID's part).
    derive_from, derive : str or None
        A ``derive`` row trains, from scratch, the architecture its ``derive_from`` row found (same code length
        and seed), changed by ``derive`` (:data:`DERIVATIONS`); it starts once that run has finished.
    report_as : str or None
        The row the table shows this one under (a cross-test row is its source row, on the other dataset).
    """

    name: str
    table: str
    command: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed_offset: int = 0
    paper: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)
    group: str = "nas"
    share_search_with: str | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    dataset: str = "A"
    derive_from: str | None = None
    derive: str | None = None
    report_as: str | None = None

    @property
    def shown_as(self) -> str:
        """The table row this run appears in."""
        return self.report_as or self.name

    @property
    def depends_on(self) -> str | None:
        """The row whose finished run this one needs (a shared search or a derived architecture)."""
        return self.share_search_with or self.derive_from

    @property
    def slug(self) -> str:
        """File-name form of the name (``AV-NAS (Arch-1)`` → ``av-nas-arch-1``)."""
        kept = "".join(ch.lower() if ch.isalnum() else "-" for ch in self.name.replace("+", "-plus"))
        return "-".join(part for part in kept.split("-") if part)


ROWS: dict[str, Row] = {}


def register_row(row: Row) -> Row:
    """Add ``row`` to :data:`ROWS` (a name may be registered once)."""
    if row.table not in ("2", "3"):
        raise ValueError(f"row {row.name!r}: table must be '2' or '3', got {row.table!r}")
    if row.command not in ("search", "train", "method", "derive"):
        raise ValueError(f"row {row.name!r}: command must be 'search', 'train', 'method' or 'derive', "
                         f"got {row.command!r}")
    if row.dataset not in ("A", "B"):
        raise ValueError(f"row {row.name!r}: dataset must be 'A' or 'B', got {row.dataset!r}")
    if (row.command == "derive") != (row.derive_from is not None) or (
            row.command == "derive" and (row.derive not in DERIVATIONS or row.derive_from not in ROWS
                                         or ROWS[row.derive_from].command != "search")):
        raise ValueError(f"row {row.name!r}: a derive row names a registered search row in derive_from and one of "
                         f"{DERIVATIONS} in derive (and only derive rows do), got {row.derive_from!r}, "
                         f"{row.derive!r}")
    if row.command == "method" and row.settings.get("method") not in METHODS:
        raise ValueError(f"row {row.name!r}: settings['method'] must name one of {sorted(METHODS)}, "
                         f"got {row.settings.get('method')!r}")
    if row.share_search_with is not None:
        source = ROWS.get(row.share_search_with)
        if source is None or row.command != "search" or source.command != "search" or source.share_search_with:
            raise ValueError(f"row {row.name!r}: share_search_with must name an already registered search row "
                             f"that shares no other's search, got {row.share_search_with!r}")
        mine, theirs = dict(row.settings), dict(source.settings)
        mine.pop("prune", None), theirs.pop("prune", None)
        if mine != theirs or row.seed_offset != source.seed_offset:
            raise ValueError(f"row {row.name!r}: its settings differ from {source.name!r}'s in more than 'prune'")
    if row.name in ROWS:
        raise ValueError(f"row {row.name!r} is already registered")
    ROWS[row.name] = row
    return row


def select_rows(names: str | None) -> list[Row]:
    """Rows named in a comma-separated list (None or ``all``: every row), in registry order."""
    if names is None or names == "all":
        return list(ROWS.values())
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ROWS]
    if unknown:
        raise ValueError(f"--rows: unknown row(s) {unknown}; known: {list(ROWS)}")
    return [row for name, row in ROWS.items() if name in wanted]


# Paper numbers: SPEC §6 (mAP@100, 32 / 64 bits, ActivityNet and FCVID).
for _row in (
    # Table 2 line 3 (paper text; not in SPEC §6): Hao et al., MCMSH, ACM MM 2022 (avnas_nni.methods.mcmsh),
    # self-supervised, visual frames only.
    Row("MCMSH", "2", "method", {"method": "mcmsh"}, paper={32: (0.1488, 0.3442), 64: (0.2849, 0.3723)},
        group="expert-hashing"),
    # Table 2 line 4 (paper text; not in SPEC §6): Li et al., BTH, CVPR 2021 (avnas_nni.methods.bth),
    # self-supervised, visual frames only.
    Row("BTH", "2", "method", {"method": "bth"}, paper={32: (0.1845, 0.2987), 64: (0.2721, 0.3593)},
        group="expert-hashing"),
    # Table 2 line 5 (paper text; not in SPEC §6): Li et al., DKPH, ECCV 2022 (avnas_nni.methods.dkph),
    # self-supervised, visual frames only.
    Row("DKPH", "2", "method", {"method": "dkph"}, paper={32: (0.1528, 0.3256), 64: (0.2283, 0.3731)},
        group="expert-hashing"),
    # Table 2 line 6 (paper text; not in SPEC §6): Zhang et al., SSTH, ACM MM 2016 (avnas_nni.methods.ssth),
    # self-supervised, visual frames only.
    Row("SSTH", "2", "method", {"method": "ssth"}, paper={32: (0.1727, 0.2275), 64: (0.2395, 0.3037)},
        group="expert-hashing"),
    # Table 2 line 7 (paper text; not in SPEC §6): Wang et al., ConMH, AAAI 2023 (avnas_nni.methods.conmh),
    # self-supervised, visual frames only; its temperature 0.5 under every profile.
    Row("ConMH", "2", "method", {"method": "conmh", "tau": 0.5}, paper={32: (0.2974, 0.3899), 64: (0.3312, 0.4232)},
        group="expert-hashing"),
    # Table 2 line 8 (paper text; not in SPEC §6): Chen et al., DSVH, Sensors 2021 (avnas_nni.methods.dsvh),
    # supervised, visual frames only; a feature-level adaptation (its raw-frame 3D ResNet becomes a 1D ResNet-34
    # over the frame features: 7.4M parameters at d = 768, not the table's 63M).
    Row("DSVH", "2", "method", {"method": "dsvh"}, paper={32: (0.2056, 0.2616), 64: (0.2979, 0.3683)},
        group="expert-hashing"),
    # Table 2 line 9 (paper text; not in SPEC §6): Gu et al., SRH, ACM MM 2016 (avnas_nni.methods.srh),
    # supervised, visual frames only; Adam ε 1e-8 (PyTorch's default) in every profile: under the quick profile's
    # 1e-3 its small early gradients barely move it (see the module).
    Row("SRH", "2", "method", {"method": "srh", "finetune_eps": 1e-8},
        paper={32: (0.3205, 0.3699), 64: (0.4266, 0.4783)}, group="expert-hashing"),
    # Table 2 line 10 (paper text; not in SPEC §6): Wang et al., AVH, IEEE TCDS 2021 (avnas_nni.methods.avh),
    # supervised (LSTM + frame attention), visual frames only; Adam's own ε 1e-8 under every profile (at the quick
    # profile's 1e-3 its small early gradients left every code the same). Quick profile: LSTM and attention 256
    # wide, not 1024 (1024 took ~90 s per epoch on one loaded core, 3x any other row, and learnt less there).
    Row("AVH", "2", "method", {"method": "avh", "finetune_eps": 1e-8},
        paper={32: (0.3576, 0.3318), 64: (0.4722, 0.4818)}, group="expert-hashing",
        quick={"extra": {"method": {"hidden": 256, "attention": 256}}}),
    # Table 2 line 11: Zhou et al., AVHash, ACM MM 2024 (avnas_nni.methods.avhash).
    Row("AVHash", "2", "method", {"method": "avhash"}, paper={32: (0.8530, 0.9208), 64: (0.8676, 0.9213)},
        group="expert-hashing"),
    Row("DARTS", "2", "search", {"strategy": "darts"}, paper={32: (0.8630, 0.9180), 64: (0.8860, 0.9199)}),
    Row("SPOS", "2", "search", {"strategy": "spos"}, paper={32: (0.8785, 0.9165), 64: (0.8982, 0.9198)}),
    Row("ProxylessNAS", "2", "search", {"strategy": "proxyless"},
        paper={32: (0.8571, 0.8470), 64: (0.8690, 0.8638)}),
    Row("ENAS", "2", "search", {"strategy": "enas"}, paper={32: (0.8545, 0.9094), 64: (0.8696, 0.9193)}),
    # Random 1–5: five architecture samples trained from scratch (SPEC §6, per row).
    *(Row(f"Random {i}", "2", "search", {"strategy": "random"}, seed_offset=1000 * i, group="random", paper=paper)
      for i, paper in enumerate((
          {32: (0.8411, 0.9143), 64: (0.8562, 0.9201)}, {32: (0.8649, 0.9204), 64: (0.8880, 0.9264)},
          {32: (0.7447, 0.8908), 64: (0.8071, 0.8984)}, {32: (0.8420, 0.9106), 64: (0.8554, 0.9181)},
          {32: (0.8348, 0.9063), 64: (0.8573, 0.9080)}), start=1)),
    # Arch-1: found on dataset A (ActivityNet's part), fine-tuned there; its architecture also trained on B.
    Row("AV-NAS (Arch-1)", "2", "search", {"strategy": "avnas", "prune": "argmax"},
        paper={32: (0.8750, 0.9215), 64: (0.9010, 0.9253)}, group="avnas"),
    Row("AV-NAS (Arch-1) on B", "2", "derive", dataset="B", derive_from="AV-NAS (Arch-1)", derive="cross",
        report_as="AV-NAS (Arch-1)", group="avnas"),
    # Arch-2: found on dataset B (FCVID's part), fine-tuned there; its architecture also trained on A.
    Row("AV-NAS (Arch-2)", "2", "search", {"strategy": "avnas", "prune": "argmax"}, dataset="B",
        paper={32: (0.8724, 0.9230), 64: (0.8950, 0.9321)}, group="avnas"),
    Row("AV-NAS (Arch-2) on A", "2", "derive", derive_from="AV-NAS (Arch-2)", derive="cross",
        report_as="AV-NAS (Arch-2)", group="avnas"),
    # The authors' code's top-2 pruning of Arch-1's search (p1/p2 ≤ 3 keeps two M candidates): one search for both.
    Row("AV-NAS (top-2 pruning)", "2", "search", {"strategy": "avnas", "prune": "top2"}, group="avnas",
        share_search_with="AV-NAS (Arch-1)"),
    # Lines 21–22: Arch-1 with one branch removed and Self-Fusion in place of I1, I2, F; the rest unchanged.
    Row("Visual only", "2", "derive", derive_from="AV-NAS (Arch-1)", derive="visual",
        paper={32: (0.8650, 0.9192), 64: (0.8795, 0.9231)}, group="modality"),
    Row("Audio only", "2", "derive", derive_from="AV-NAS (Arch-1)", derive="audio",
        paper={32: (0.2379, 0.4350), 64: (0.2541, 0.4387)}, group="modality"),
    Row("Transformer", "3", "train", {"arch": "transformer"}, paper={32: (0.8379, 0.9135), 64: (0.8569, 0.9150)},
        group="expert"),
    Row("Transformer+", "3", "train", {"arch": "transformer_plus"},
        paper={32: (0.8434, 0.9150), 64: (0.8653, 0.9170)}, group="expert"),
    Row("Mamba", "3", "train", {"arch": "mamba"}, paper={32: (0.8300, 0.9102), 64: (0.8741, 0.9240)}, group="expert"),
):
    register_row(_row)
