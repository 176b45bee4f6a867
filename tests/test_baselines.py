"""NNI's baselines (DARTS, ProxylessNAS, SPOS, ENAS, Random) end to end, and on a tiny non-video space."""

from __future__ import annotations

import json
import signal
import warnings

import nni
import pytest
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.space import RawFormatModelSpace
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from avnas_nni import pipeline
from avnas_nni.pipeline import RunSettings, build_space, run_search
from search_spaces import check_sample
from strategies import STRATEGIES, DartsBaseline, EnasBaseline, ProxylessBaseline, make_strategy
from strategies.random_search import RandomBaseline
from strategies.spos import SposBaseline, evolutionary_search

BASELINES = ("darts", "proxyless", "spos", "enas", "random")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # On 2 cores shared with other work, two OpenMP threads make tiny ops ~1000× slower (spin-waiting).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(threads)


def _argmax(probs: dict) -> dict:
    return {label: max(p, key=p.__getitem__) for label, p in probs.items()}


# -- through the pipeline, on the AV-NAS space ----------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_pipeline_runs_baseline(name, tiny_data, tmp_path):  # tiny_data: conftest, 48/24/24 videos
    strategy = {"batches_per_update": 1} if name == "enas" else {}  # enas: update the controller every reward
    settings = RunSettings(strategy=name, data=tiny_data, bits=8, search_epochs=1, finetune_epochs=1,
                           batch_size=16, extra={"strategy": strategy})
    metrics = run_search(settings, tmp_path / "run")

    for file in ("arch.json", "metrics.json", "model.safetensors", "history.csv"):
        assert (tmp_path / "run" / file).is_file(), file
    record = json.loads((tmp_path / "run" / "arch.json").read_text())
    check_sample(build_space(settings), record["arch"], name)
    assert 0.0 <= metrics["test_mAP@100"] <= 1.0
    rows = record["search_history"]
    if name == "random":  # k = 1: nothing trained in the search, the sample is trained from scratch
        assert rows == [] and record["probs"] is None
    else:
        assert len(rows) == 1 and rows[0]["val_mAP"] is not None and 0.0 <= rows[0]["val_mAP"] <= 1.0
    if name in ("darts", "proxyless", "enas"):
        # DARTS/Proxyless: argmax of softmax(α); ENAS: greedy decoding picks each step's most likely choice.
        assert record["arch"] == _argmax(record["probs"])
    details = record.get("search_details")
    if name == "spos":  # the evolution's every scored subnet is on record, the exported one its best
        scores = [row["score"] for row in details["evaluated"]]
        assert len(scores) >= details["evolution"]["population_size"] and details["best_score"] == max(scores)
        assert record["arch"] == details["evaluated"][scores.index(max(scores))]["arch"]
    elif name == "random":
        assert details == {"k": 1, "monitor": "val_mAP", "candidates": [{"arch": record["arch"]}]}
    else:
        assert details is None


@pytest.mark.parametrize("name, strategy", [("darts", {}), ("proxyless", {}), ("spos", {}),
                                            ("enas", {"batches_per_update": 1}), ("random", {"k": 2})])
def test_resume_after_a_search_interrupt_equals_uninterrupted(name, strategy, tiny_data, tmp_path, monkeypatch):
    settings = RunSettings(strategy=name, data=tiny_data, bits=8, search_epochs=2, finetune_epochs=1,
                           batch_size=16, extra={"strategy": strategy})
    whole = run_search(settings, tmp_path / "whole")
    original = pipeline._EpochLog.on_train_epoch_start

    def interrupt(self, trainer, pl_module):  # Ctrl-C as the search's (first candidate's) 2nd epoch starts
        if self.stage == "search" and trainer.current_epoch == 1:
            raise KeyboardInterrupt
        original(self, trainer, pl_module)

    monkeypatch.setattr(pipeline._EpochLog, "on_train_epoch_start", interrupt)
    handler = signal.getsignal(signal.SIGINT)
    try:  # Lightning turns Ctrl-C into sys.exit(1) and ignores further SIGINTs
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            run_search(settings, tmp_path / "cut")
    finally:
        signal.signal(signal.SIGINT, handler)
    monkeypatch.setattr(pipeline._EpochLog, "on_train_epoch_start", original)
    resumed = run_search(settings, tmp_path / "cut", resume=True)
    assert resumed["test_mAP@100"] == pytest.approx(whole["test_mAP@100"], abs=1e-12)
    records = [json.loads((tmp_path / run / "arch.json").read_text()) for run in ("whole", "cut")]
    assert records[0]["arch"] == records[1]["arch"] and records[0]["probs"] == records[1]["probs"]
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_names_and_common_settings():
    classes = {"darts": DartsBaseline, "proxyless": ProxylessBaseline, "spos": SposBaseline, "enas": EnasBaseline,
               "random": RandomBaseline}
    assert set(BASELINES) <= set(STRATEGIES)
    for name in BASELINES:  # every factory takes the common settings
        strategy = make_strategy(name, seed=1, arc_learning_rate=1e-3)
        assert type(strategy) is classes[name]
    assert make_strategy("darts", arc_learning_rate=1e-3).arc_learning_rate == 1e-3
    assert make_strategy("enas").reward_metric_name == "val_batch_mAP"  # the evaluator's per-batch metric
    with pytest.raises(ValueError, match="k: expected a positive integer"):
        make_strategy("random", k=0)


# -- a tiny non-video space: the strategies are generic -----------------------------------------------
class TinySpace(ModelSpace):
    """Two choices over Linear layers and a classifier head."""

    def __init__(self, width: int = 8, classes: int = 3):
        super().__init__()
        self.first = LayerChoice({"linear": nn.Linear(width, width),
                                  "relu": nn.Sequential(nn.Linear(width, width), nn.ReLU())}, label="first")
        self.second = LayerChoice({"linear": nn.Linear(width, width),
                                   "tanh": nn.Sequential(nn.Linear(width, width), nn.Tanh()),
                                   "skip": nn.Identity()}, label="second")
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.second(self.first(x)))


_GEN = torch.Generator().manual_seed(0)
_X = torch.randn(96, 8, generator=_GEN)
_Y = (_X @ torch.randn(8, 3, generator=_GEN)).argmax(-1)


@nni.trace
class TinyClassifier(LightningModule):
    """Cross-entropy; logs val_batch_acc per validation batch and val_acc per validation epoch."""

    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.lr = lr
        self.val_epochs: list[float] = []
        self.train_calls = 0
        self._hits = self._seen = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_calls += 1
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        hits = (self.model(x).argmax(-1) == y).float()
        self._hits, self._seen = self._hits + float(hits.sum()), self._seen + len(y)
        self.log("val_batch_acc", hits.mean(), on_step=True, on_epoch=False)

    def on_validation_epoch_start(self):
        self._hits = self._seen = 0

    def on_validation_epoch_end(self):
        acc = self._hits / max(self._seen, 1)
        self.val_epochs.append(acc)
        self.log("val_acc", acc)

    @torch.no_grad()
    def validation_score(self) -> float:
        return float((self.model(_X[64:]).argmax(-1) == _Y[64:]).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=self.lr)


def _tiny_evaluator(epochs: int = 2) -> Lightning:
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    return Lightning(TinyClassifier(), trainer,
                     train_dataloaders=DataLoader(TensorDataset(_X[:64], _Y[:64]), batch_size=16),
                     val_dataloaders=DataLoader(TensorDataset(_X[64:], _Y[64:]), batch_size=16))


def _search_tiny(strategy, epochs: int = 2):
    torch.manual_seed(0)
    evaluator = _tiny_evaluator(epochs)
    strategy(RawFormatModelSpace(TinySpace(), evaluator), SequentialExecutionEngine())
    return strategy, evaluator.module


def _valid(sample: dict) -> bool:
    return set(sample) == {"first", "second"} and sample["first"] in ("linear", "relu") \
        and sample["second"] in ("linear", "tanh", "skip")


@pytest.mark.parametrize("name", ["darts", "proxyless", "spos", "enas"])
def test_one_shot_baselines_on_a_generic_space(name):
    extra = {"enas": {"reward_metric_name": "val_batch_acc", "batches_per_update": 1}}.get(name, {})
    strategy, module = _search_tiny(make_strategy(name, seed=0, **extra))
    sample = strategy.export()
    assert _valid(sample)
    assert len(module.val_epochs) == 2  # validated once per supernet epoch
    assert isinstance(strategy.supernet, TinySpace)
    if name != "spos":
        assert sample == _argmax(strategy.export_probs())
    if name in ("darts", "proxyless"):
        # NNI pairs 4 training with 2 validation batches (max_size_cycle): the validation loader restarts,
        # so each epoch has 4 steps of an α step (val batch) and a W step (train batch).
        assert module.train_calls == 2 * 4 * 2


def test_proxyless_exports_the_argmax_where_nni_samples():
    strategy, _ = _search_tiny(make_strategy("proxyless", seed=0), epochs=1)
    alphas = strategy._arch_parameters.values()
    with torch.no_grad():  # the last candidate of every choice most likely, though not overwhelmingly
        for alpha in alphas:
            alpha.copy_(torch.tensor([0.0] * (len(alpha) - 1) + [0.5]))
    assert strategy.export() == {"first": "relu", "second": "skip"}
    torch.manual_seed(0)
    nni_exports = {strategy.oneshot_module.export()["second"] for _ in range(40)}  # NNI's export samples
    assert len(nni_exports) > 1
    with torch.no_grad():  # now the first candidates: the export follows α
        for alpha in alphas:
            alpha.copy_(torch.tensor([0.5] + [0.0] * (len(alpha) - 1)))
    assert strategy.export() == {"first": "linear", "second": "linear"}


def test_enas_fix_for_lightning_2():
    from nni.nas.strategy import ENAS

    with pytest.raises((RuntimeError, ValueError)):  # NNI's own ENAS misreads a 2-element (x, y) batch
        _search_tiny(ENAS(reward_metric_name="val_batch_acc"), epochs=1)

    strategy = make_strategy("enas", seed=0, reward_metric_name="val_batch_acc", batches_per_update=1)
    torch.manual_seed(0)
    evaluator = _tiny_evaluator(1)
    strategy.initialize(RawFormatModelSpace(TinySpace(), evaluator), SequentialExecutionEngine())
    strategy.run()
    module = strategy.oneshot_module
    assert module._trajectory_counter == 2  # two rewarded validation batches
    assert module.training_module.train_calls == 4  # and four training batches
    assert module.policy.optim.state  # the PPO controller took optimisation steps (tianshou on this stack)
    probs = strategy.export_probs()
    assert strategy.export() == _argmax(probs)
    assert all(abs(sum(p.values()) - 1.0) < 1e-5 for p in probs.values())
    assert strategy.export() == strategy.export()  # greedy decoding is deterministic


def test_spos_evolution_is_deterministic_and_returns_its_best():
    kwargs = dict(population_size=4, generations=2, parents=2, mutation_prob=0.5)
    first, _ = _search_tiny(SposBaseline(seed=3, **kwargs))
    second, _ = _search_tiny(SposBaseline(seed=3, **kwargs))
    evaluated = first.evolution.evaluated
    assert [s for s, _ in evaluated] == [s for s, _ in second.evolution.evaluated]
    assert [v for _, v in evaluated] == pytest.approx([v for _, v in second.evolution.evaluated])
    assert first.export() == second.export()
    assert first.best_score == max(v for _, v in evaluated)
    assert (first.export(), first.best_score) in evaluated
    assert all(_valid(s) for s, _ in evaluated)
    assert len({tuple(sorted(s.items())) for s, _ in evaluated}) == len(evaluated)  # each subnet scored once
    assert first.search_seconds > 0


def test_evolutionary_search_finds_a_planted_optimum():
    choices = {f"c{i}": list(range(4)) for i in range(6)}
    target = {label: 3 for label in choices}

    def score(sample):
        return sum(sample[label] == target[label] for label in choices)

    runs = [evolutionary_search(choices, score, population_size=10, generations=15, parents=4, mutation_prob=0.2,
                                seed=seed) for seed in (0, 0, 1)]
    assert runs[0].evaluated == runs[1].evaluated  # same seed, same search
    assert runs[0].evaluated != runs[2].evaluated
    best = runs[0]
    assert best.best_score == max(v for _, v in best.evaluated) == score(best.best_sample)
    assert best.best_score >= 5  # of 6: far above the expected best of 10 uniform samples (≈ 3)
    minimised = evolutionary_search(choices, score, population_size=6, generations=3, parents=3, mode="min", seed=0)
    assert minimised.best_score == min(v for _, v in minimised.evaluated)
    with pytest.raises(ValueError, match="mutation_prob"):
        evolutionary_search(choices, score, mutation_prob=1.5)


def test_random_k2_trains_fresh_candidates_and_picks_the_better():
    strategy = RandomBaseline(k=2, seed=4, monitor="val_acc")
    strategy, given_module = _search_tiny(strategy)
    first, second = strategy.candidates
    assert first.sample == strategy.samples[0] and second.sample == strategy.samples[1]
    # fresh module and trainer per candidate, each really trained (NNI's engine would train 0 batches for #2)
    modules = {id(given_module), id(first.module), id(second.module)}
    assert len(modules) == 3 and first.module.trainer is not second.module.trainer
    assert first.module.trainer.global_step == second.module.trainer.global_step == 2 * 4
    assert len(first.module.val_epochs) == len(second.module.val_epochs) == 2
    shared = {p.data_ptr() for p in first.network.parameters()} & {p.data_ptr() for p in second.network.parameters()}
    assert not shared  # independent weights
    best = max(strategy.candidates, key=lambda c: c.score)
    assert strategy.export() == best.sample and strategy.supernet is best.network
    assert best.score == pytest.approx(best.module.val_epochs[-1])


def test_random_k1_is_seeded_and_trains_nothing():
    samples = []
    for seed in (1, 1, 2, 3, 4, 5):
        strategy, module = _search_tiny(RandomBaseline(k=1, seed=seed))
        assert strategy.supernet is None and strategy.candidates == [] and module.val_epochs == []
        samples.append(strategy.export())
    assert samples[0] == samples[1] and all(_valid(s) for s in samples)
    assert len({tuple(sorted(s.items())) for s in samples}) > 1
