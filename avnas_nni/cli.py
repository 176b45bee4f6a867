"""The ``avnas`` command line: ``data synth|check``, ``space``, ``search``, ``train``, ``evaluate``, ``encode``,
``index build``, ``query``, ``compare``, ``nas``, ``bench``.

Exit codes: 0 done; 2 a user error (an :class:`~avnas_nni.errors.AVNASError`: bad data, unknown preset, bad
settings), one line on stderr, or a usage error from argparse (also of ``avnas bench NAME``); 3 a training loss
that became NaN; 130 interrupted (Ctrl-C); 1 anything else, which is a bug: one line naming it, or with ``-v``
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


def _cmd_data_synth(args: argparse.Namespace) -> None:
    from avnas_nni.data import write_synthetic

    kwargs = {k: v for k, v in (("num_class", args.classes), ("d", args.dim), ("seed", args.seed)) if v is not None}
    config = write_synthetic(args.out, **kwargs)
    print(f"wrote the embedded synthetic dataset: {config}")


def _cmd_data_check(args: argparse.Namespace) -> None:
    from avnas_nni.data import check_dataset

    summary = check_dataset(args.config)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return
    print(f"dataset {summary['config']}: OK")
    print(f"  {summary['num_class']} classes, m = {summary['m']} frames, d = {summary['d']}, "
          f"{summary['videos']} distinct videos")
    print(f"  {'split':<10} {'videos':>7} {'classes':>8} {'multi-label':>12}  list")
    for split, info in summary["splits"].items():
        counts = f"{info['videos']:>7} {info['classes_present']:>8} {info['multi_label']:>12}"
        print(f"  {split:<10} {counts}  {info['list']}")
    overlaps = {k: v for k, v in summary.get("overlaps", {}).items() if v}
    if overlaps:
        print(f"  overlapping splits (videos in both): {overlaps}")


def _cmd_extract(args: argparse.Namespace) -> None:
    from avnas_nni.extract import extract_features

    report = extract_features(args.videos, args.out, args.clip, args.ast, labels_csv=args.labels,
                              device=args.device, frames=args.frames, val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, seed=args.seed, missing_audio=args.missing_audio,
                              progress=not args.no_progress)
    for line in report.summary_lines():
        print(line)


def _cmd_space(args: argparse.Namespace) -> None:
    from search_spaces import AVNASSpace, cells, count_architectures

    space = AVNASSpace(dim=args.dim, length=args.length, bits=args.bits, expand=args.expand,
                       kernel_size=args.kernel_size, preset=args.preset,
                       modalities=tuple(args.modalities.split(",")))
    table = cells(space)
    if args.json:
        print(json.dumps({"preset": args.preset, "cells": table, "architectures": count_architectures(space)},
                         indent=2))
        return
    width = max(len(label) for label in table)
    print(f"AV-NAS space, preset {args.preset!r}: d={args.dim}, m={args.length}, e={args.expand}, "
          f"q={args.bits}, k={args.kernel_size}, modalities={','.join(space.modalities)}")
    for label, names in table.items():
        print(f"  {label:<{width}}  {len(names)}  {' | '.join(map(str, names))}")
    total = count_architectures(space)
    print(f"architectures: {total:,} ({total:.3e})")
    print(f"parameters (whole supernet): {sum(p.numel() for p in space.parameters()):,}")


def _settings(args: argparse.Namespace, strategy: str):
    from avnas_nni.pipeline import RunSettings

    return RunSettings.resolve(
        args.profile, strategy=strategy, data=args.data, bits=args.bits, seed=args.seed, device=args.device,
        preset=getattr(args, "preset", None), prune=getattr(args, "prune", None), arch=getattr(args, "arch", None),
        method=getattr(args, "method", None), in_batch_negatives=args.in_batch_negatives,
        search_epochs=0 if strategy == "fixed" else getattr(args, "epochs", None),
        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size, finetune_lr=args.finetune_lr,
        finetune_eps=args.finetune_eps, search_lr=getattr(args, "lr", None),
        alpha_policy=getattr(args, "alpha_policy", None), alpha_travel=getattr(args, "alpha_travel", None))


def _log_to(run_dir: Path) -> logging.Handler:
    from avnas_nni.runs import RunDir

    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(RunDir(run_dir).log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _print_result(metrics: dict, run_dir: Path) -> None:
    from avnas_nni.runs import RunDir

    run = RunDir(run_dir)
    record = run.read_arch_record()
    topk = next(k for k in metrics if k.startswith("test_mAP@")).split("@")[1]
    if record.is_method:  # a video-hashing method's run: no cells to list
        print(f"\nmethod {record.method} ({record.get('citation', '')})")
    else:
        arch = record.arch
        print(f"\narchitecture ({run.arch_path}):")
        width = max(len(label) for label in arch)
        for label, choice in arch.items():
            print(f"  {label:<{width}}  {' + '.join(choice) if isinstance(choice, list) else choice}")
        summary = record.get("search_summary")
        if summary:
            changed = (f"{summary['changed']} of {summary['cells']} cells changed from α's initial argmax, "
                       if "changed" in summary else "")
            print(f"search: {changed}mean normalised entropy {summary['mean_entropy']:.3f}, "
                  f"{summary['undecided']} undecided (α history: {run.alpha_plot_path})")
        if record.get("search_warning"):
            print(f"warning: {record['search_warning']}")
    print(f"val  mAP@{topk}: {metrics[f'val_mAP@{topk}']:.4f}")
    print(f"test mAP@{topk}: {metrics[f'test_mAP@{topk}']:.4f}   ({metrics['bits']} bits, {metrics['params']:,} "
          f"parameters; run directory {run_dir})")


def _cmd_run(args: argparse.Namespace) -> None:
    """``search`` and ``train``: run the pipeline into ``--out`` with its log there too."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from avnas_nni.pipeline import run_method, run_search, run_train
    from avnas_nni.threads import apply_thread_policy, batch_work

    settings = _settings(args, getattr(args, "strategy", "fixed"))
    apply_thread_policy(args.threads, batch_work(settings.data, settings.batch_size, settings.n_neg))
    runner = run_search if args.command == "search" else run_method if settings.method else run_train
    made = not args.out.exists()
    handler = _log_to(args.out)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(min(level, logging.INFO))  # run.log keeps the epoch lines even under a quieter host (pytest)
    try:  # console log lines go above the stage's progress bar instead of breaking it
        with logging_redirect_tqdm():
            metrics = runner(settings, args.out, resume=args.resume, progress=not args.no_progress)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        _discard_unstarted(args.out, made)
    _print_result(metrics, args.out)


def _discard_unstarted(out: Path, made: bool) -> None:
    """Remove a run directory this command made if the run failed before finishing anything (bad data …)."""
    from avnas_nni.runs import RunDir

    run = RunDir(out)
    if made and out.is_dir() and not run.has_finished_work() and not run.lock_path.exists():
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from avnas_nni.pipeline import evaluate_run

    report = evaluate_run(args.run, split=args.split, data=args.data)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:<8} {value:.4f}")


def _add_training_args(p: argparse.ArgumentParser, search: bool) -> None:
    p.add_argument("--data", default="embedded",
                   help="dataset JSON config, or 'embedded' (default) / 'embedded-b' (the second synthetic set)")
    p.add_argument("--bits", type=int, default=64, help="code length q (default 64)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                   help="defaults: quick (embedded data, 2-core CPU, 3+10 epochs; default), bench-quick (2+3, the "
                        "Table 2 runner's), compare-quick (2+6, experiments/compare_quick.yml) or paper (SPEC §4: "
                        "batch 128, 300+300 epochs, fine-tune lr 1e-4)")
    if search:
        p.add_argument("--epochs", type=int, help="supernet (coarse search) epochs (quick 3, paper 300)")
        p.add_argument("--lr", type=float, help="supernet weight learning rate (default 1e-3)")
        p.add_argument("--alpha-policy", choices=("budget", "paper"),
                       help="α's start and learning rate (DARTS, ProxylessNAS and AV-NAS alike): budget = N(0, 1e-3²) "
                            "and lr ≥ travel / α steps (quick profile), paper = each strategy's published settings")
        p.add_argument("--alpha-travel", type=float,
                       help="budget policy: logits α may travel over the search (default 12)")
        p.add_argument("--preset", default="paper", help="search space preset: paper or authors")
        p.add_argument("--prune", default="argmax", choices=("argmax", "top2"),
                       help="argmax per cell (Arch-1) or the authors' top-2 M cells (Arch-2)")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning / training epochs (quick 10, paper 300)")
    p.add_argument("--finetune-lr", type=float, help="fine-tune Adam learning rate (quick 1e-3, paper 1e-4)")
    p.add_argument("--finetune-eps", type=float, help="fine-tune Adam epsilon (default 1e-3, SPEC §4)")
    p.add_argument("--batch-size", type=int, help="triplets per batch (quick 32, paper 128)")
    p.add_argument("--in-batch-negatives", action="store_true",
                   help="also use the batch's other positives as InfoNCE negatives (not the paper's loss)")
    p.add_argument("--seed", type=int, default=3346, help="seed of data order, sampling and α init")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="torch threads (default: 1 for small networks such as the embedded "
                                               "data's, else one per free core; OMP_NUM_THREADS is respected)")


def _cmd_compare(args: argparse.Namespace) -> None:
    from avnas_nni.compare import experiment_dir, read_trials, summarise, write_comparison

    directory = experiment_dir(args.experiment, args.root)
    trials, source = read_trials(directory)
    table, summary = summarise(trials)
    out = args.out or directory / "avnas-compare"
    title = f"Experiment {directory.name}: {len(table)} trials ({source})"
    write_comparison(table, summary, out, title)
    print(title)
    print(summary.to_markdown(index=False, floatfmt=".4f") if not summary.empty else "no finished trial yet")
    failed = table[table["status"].isin(["FAILED", "SYS_CANCELED", "USER_CANCELED"])]
    if len(failed):
        print(f"{len(failed)} trial(s) did not finish: {', '.join(failed['trial'])}")
    print(f"wrote {out}/summary.md, trials.csv, comparison.png")


def _cmd_nas(args: argparse.Namespace) -> None:
    from avnas_nni.multitrial import run_multitrial
    from avnas_nni.pipeline import RunSettings

    settings = RunSettings.resolve(args.profile, data=args.data, bits=args.bits, seed=args.seed, strategy="fixed",
                                   finetune_epochs=args.epochs)
    best, exp_id = run_multitrial(args.strategy, settings, port=args.port, trials=args.trials,
                                  concurrency=args.concurrency, work_dir=args.work_dir, keep_running=args.keep)
    print(f"experiment {exp_id}: web UI http://127.0.0.1:{args.port}" + (" (still running)" if args.keep else ""))
    for rank, arch in enumerate(best, 1):
        print(f"{rank}. {json.dumps(arch)}")


def _cmd_encode(args: argparse.Namespace) -> None:
    from avnas_nni.hashing import RunEncoder
    from avnas_nni.index import write_codes

    encoder = RunEncoder(args.run, device=args.device)
    data = args.data or encoder.settings.data
    codes, seconds = encoder.encode_split(data, args.split, args.batch_size, progress=not args.no_progress)
    write_codes(args.out, codes)
    print(f"encoded {len(codes):,} videos of {data} ({args.split}) to {codes.bits}-bit codes in {seconds:.2f} s "
          f"= {len(codes) / max(seconds, 1e-9):,.0f} videos/s on {encoder.device}; wrote {args.out}")


def _cmd_index_build(args: argparse.Namespace) -> None:
    from avnas_nni.index import HashIndex, read_codes

    index = HashIndex.build(read_codes(args.codes), args.kind, hash_bits=args.hash_bits, nhash=args.nhash,
                            nflip=args.nflip)
    index.save(args.out)
    extra = "".join(f", {key} {value}" for key, value in index.params.items())
    print(f"indexed {len(index):,} {index.bits}-bit codes ({index.kind}{extra}); wrote {args.out}")


def _query_codes(args: argparse.Namespace, index) -> tuple[list[str], object, object]:
    """Query names, distances and positions for ``avnas query`` (by stored id, or a new video file)."""
    if args.id:
        return list(args.id), *index.search_ids(args.id, args.k)
    if not (args.run and args.clip and args.ast):
        from avnas_nni.errors import SettingsError

        raise SettingsError("--video needs --run (the network that made the index), --clip and --ast (local "
                         "weight directories, as for 'avnas extract')")
    from avnas_nni.extract import AstAudioEncoder, ClipVisualEncoder, featurize_video
    from avnas_nni.hashing import RunEncoder

    encoder = RunEncoder(args.run, device=args.device)
    if index.codes.attrs.get("run") not in (None, str(encoder.run)):
        logger.warning("the index was encoded by %s, the query by %s: codes of different networks do not compare",
                       index.codes.attrs["run"], encoder.run)
    visual, audio = featurize_video(args.video, ClipVisualEncoder(args.clip, args.device),
                                    AstAudioEncoder(args.ast, args.device), frames=encoder.m or 25)
    encoder.check_shape(*visual.shape, str(args.video))
    return [str(args.video)], *index.search(encoder.encode(visual[None], audio[None]), args.k)


def _cmd_query(args: argparse.Namespace) -> None:
    from avnas_nni.index import HashIndex

    index = HashIndex.load(args.index)
    names, distances, positions = _query_codes(args, index)
    classes = index.codes.attrs.get("class_names")
    results = []
    for name, row_d, row_p in zip(names, distances, positions, strict=True):
        hits = []
        for rank, (distance, position) in enumerate(zip(row_d, row_p, strict=True), 1):
            if position < 0:
                break
            labels = []
            if index.codes.labels is not None:
                labels = [classes[c] if classes else int(c) for c in np.flatnonzero(index.codes.labels[position])]
            hits.append({"rank": rank, "id": index.codes.ids[position], "hamming": int(distance), "labels": labels})
        results.append({"query": name, "neighbours": hits})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(f"query {result['query']}: {len(result['neighbours'])} nearest of {len(index):,} "
              f"({index.kind} index, {index.bits} bits)")
        width = max([len(hit["id"]) for hit in result["neighbours"]] + [2])
        print(f"  {'rank':>4}  {'id':<{width}}  {'hamming':>7}  labels")
        for hit in result["neighbours"]:
            print(f"  {hit['rank']:>4}  {hit['id']:<{width}}  {hit['hamming']:>7}  "
                  f"{', '.join(map(str, hit['labels']))}")


#: avnas_nni.pipeline.PROFILES's names, spelled here so that ``--help`` need not import torch (a test compares them).
PROFILE_NAMES = ("quick", "bench-quick", "compare-quick", "paper")

#: Benchmarks ``avnas bench NAME`` runs (modules of the ``benchmarks`` package, each with ``main(argv)``).
BENCHMARKS = ("table2", "strategies_quick", "alpha_movement", "planted_search", "contention", "embedded_modalities",
              "supernet_speed", "scan_speed", "metrics_speed", "knn_speed", "extract_speed")


def _cmd_bench(args: argparse.Namespace) -> int:
    # A face handing over to another face: looked up by name at run time, so nothing imports benchmarks.
    module = importlib.import_module(f"benchmarks.{args.name}")
    return module.main(list(args.args))


def build_parser() -> argparse.ArgumentParser:
    """The ``avnas`` argument parser."""
    parser = argparse.ArgumentParser(prog="avnas", description="AV-NAS audio-visual NAS for video hashing on NNI")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, with the libraries' banners and deprecation warnings")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="feature datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the embedded synthetic dataset (the lineage's HDF5 layout)")
    synth.add_argument("--out", required=True, type=Path, help="output directory")
    synth.add_argument("--classes", type=int, help="number of classes")
    synth.add_argument("--dim", type=int, help="feature width d")
    synth.add_argument("--seed", type=int, help="generator seed")
    synth.set_defaults(func=_cmd_data_synth)
    check = data.add_parser("check", help="validate a dataset config and print a summary")
    check.add_argument("config", help="dataset JSON config, or 'embedded'")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(func=_cmd_data_check)

    extract = sub.add_parser("extract", help="CLIP + AST features of video files, written in the dataset layout",
                             description="Decode m frames and m audio segments per video (PyAV), embed them with "
                                         "local CLIP and AST checkpoints, and write config.json, visual.h5, "
                                         "audio.h5, train/val/test.txt and extract_report.json into --out. "
                                         "A rerun into the same --out resumes.")
    extract.add_argument("videos", nargs="+", type=Path, help="video files and/or directories (recursive)")
    extract.add_argument("--out", required=True, type=Path, help="output dataset directory")
    extract.add_argument("--clip", required=True, type=Path,
                         help="local directory of openai/clip-vit-large-patch14-336 (model + image processor)")
    extract.add_argument("--ast", required=True, type=Path,
                         help="local directory of MIT/ast-finetuned-audioset-10-10-0.4593 (model + extractor)")
    extract.add_argument("--labels", type=Path,
                         help="CSV with columns video,label[,split] (labels separated by ';'); "
                              "default: the folder holding each video")
    extract.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    extract.add_argument("--frames", type=int, default=25, help="frames (and audio segments) per video m")
    extract.add_argument("--val-fraction", type=float, default=0.1, help="hashed share of val videos (0.1)")
    extract.add_argument("--test-fraction", type=float, default=0.1, help="hashed share of test videos (0.1)")
    extract.add_argument("--seed", type=int, default=0, help="seed of the hashed split (0)")
    extract.add_argument("--missing-audio", default="silence", choices=("silence", "skip"),
                         help="a video without audio track: silence features (default) or skip it")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")
    extract.set_defaults(func=_cmd_extract)

    space = sub.add_parser("space", help="summarise the search space: cells, candidates, size")
    space.add_argument("--preset", default="paper", help="candidate lists: paper (Table 1) or authors")
    space.add_argument("--dim", type=int, default=768, help="feature width d")
    space.add_argument("--length", type=int, default=25, help="frames per video m")
    space.add_argument("--bits", type=int, default=64, help="code length q")
    space.add_argument("--expand", type=int, default=2, help="Up factor e")
    space.add_argument("--kernel-size", type=int, default=4, help="Conv_k kernel k")
    space.add_argument("--modalities", default="visual,audio", help="visual,audio | visual | audio")
    space.add_argument("--json", action="store_true", help="print as JSON")
    space.set_defaults(func=_cmd_space)

    # No choices= from strategies.STRATEGIES: importing it loads NNI and Lightning (seconds), which every other
    # command (encode, index, query …) would pay for; RunSettings rejects an unknown name with the list.
    search = sub.add_parser("search", help="search an architecture, prune, fine-tune, test; writes a run directory")
    search.add_argument("--strategy", default="avnas",
                        help="avnas (default) = the paper's one-level strategy; NNI's baselines: darts, proxyless, "
                             "spos, enas, random")
    _add_training_args(search, search=True)
    search.set_defaults(func=_cmd_run)

    train = sub.add_parser("train", help="train a fixed architecture from scratch; writes a run directory")
    what = train.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch",
                      help="transformer | transformer_plus | mamba (optionally -visual/-audio), or an arch.json")
    what.add_argument("--method", help="an expert video-hashing method of Table 2 with its own loss: mcmsh, bth, "
                                       "dkph, ssth, conmh, dsvh, srh, avh, avhash")
    _add_training_args(train, search=False)
    train.set_defaults(func=_cmd_run)

    evaluate = sub.add_parser("evaluate", help="retrieval metrics of a finished run")
    evaluate.add_argument("run", type=Path, help="run directory")
    evaluate.add_argument("--split", default="test", choices=("val", "test"))
    evaluate.add_argument("--data", help="evaluate on another dataset config with the same d and m")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=_cmd_evaluate)

    nas = sub.add_parser("nas", help="NNI multi-trial NAS (random or evolution): every architecture a web-UI trial")
    nas.add_argument("--strategy", default="random", choices=("random", "evolution"))
    nas.add_argument("--data", default="embedded",
                   help="dataset JSON config, or 'embedded' (default) / 'embedded-b' (the second synthetic set)")
    nas.add_argument("--bits", type=int, default=64)
    nas.add_argument("--trials", type=int, default=10, help="architectures to train (default 10)")
    nas.add_argument("--epochs", type=int, help="training epochs per architecture (default: the profile's)")
    nas.add_argument("--profile", default="quick", choices=PROFILE_NAMES)
    nas.add_argument("--seed", type=int, default=3346)
    nas.add_argument("--port", type=int, default=8080, help="web UI port (default 8080)")
    nas.add_argument("--concurrency", type=int, default=1, help="trials at once (default 1)")
    nas.add_argument("--work-dir", type=Path, help="NNI experiment directory (default ~/nni-experiments)")
    nas.add_argument("--keep", action="store_true", help="leave the web UI running after the last trial")
    nas.set_defaults(func=_cmd_nas)

    compare = sub.add_parser("compare", help="table and plot of a strategy-comparison NNI experiment")
    compare.add_argument("experiment", help="experiment id (under --root) or experiment directory")
    compare.add_argument("--root", type=Path, help="NNI experiment working directory (default ~/nni-experiments)")
    compare.add_argument("--out", type=Path, help="output directory (default: <experiment dir>/avnas-compare)")
    compare.set_defaults(func=_cmd_compare)

    encode = sub.add_parser("encode", help="hash a dataset's videos with a finished run: packed codes (HDF5)")
    encode.add_argument("run", type=Path, help="run directory")
    encode.add_argument("--data", help="dataset JSON config (default: the run's own data)")
    encode.add_argument("--split", default="all", help="all (default), train, val, test or retrieval")
    encode.add_argument("--out", type=Path, required=True, help="codes file to write (e.g. codes.h5)")
    encode.add_argument("--batch-size", type=int, default=256, help="videos per batch (default 256)")
    encode.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    encode.add_argument("--no-progress", action="store_true", help="no progress bar")
    encode.set_defaults(func=_cmd_encode)

    index = sub.add_parser("index", help="faiss Hamming indexes of packed codes").add_subparsers(
        dest="index_command", required=True)
    build = index.add_parser("build", help="index a codes file (avnas encode's output)")
    build.add_argument("codes", type=Path, help="codes file")
    build.add_argument("--out", type=Path, required=True, help="index directory to write")
    build.add_argument("--kind", default="flat", choices=("flat", "hash", "multihash"),
                       help="flat: exact (default); hash / multihash: faiss's approximate hash indexes")
    build.add_argument("--hash-bits", type=int, help="bits per hash key (hash, multihash; default min(16, q/nhash))")
    build.add_argument("--nhash", type=int, default=2, help="hash tables (multihash; default 2)")
    build.add_argument("--nflip", type=int, default=2, help="flipped key bits probed (hash, multihash; default 2)")
    build.set_defaults(func=_cmd_index_build)

    query = sub.add_parser("query", help="Hamming k-NN of stored videos (--id) or of a new video file (--video)")
    query.add_argument("index", type=Path, help="index directory (avnas index build)")
    what = query.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", action="append", help="a stored video id (repeatable)")
    what.add_argument("--video", type=Path, help="a video file: extracted, encoded, then searched")
    query.add_argument("-k", type=int, default=10, help="neighbours (default 10)")
    query.add_argument("--run", type=Path, help="with --video: the run directory that encoded the index")
    query.add_argument("--clip", type=Path, help="with --video: local CLIP ViT-L/14-336 weights")
    query.add_argument("--ast", type=Path, help="with --video: local AST weights")
    query.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    query.add_argument("--json", action="store_true", help="print the results as JSON")
    query.set_defaults(func=_cmd_query)

    bench = sub.add_parser("bench", help="run a benchmark: table2 (the paper's Table 2/3 and figures), …",
                           description="Run a benchmark of the benchmarks/ package; arguments after NAME go to it "
                                       "(avnas bench table2 --help).")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own arguments")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``avnas`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")
    from avnas_nni.console import quiet_libraries
    from avnas_nni.errors import AVNASError

    quiet_libraries(args.verbose)

    try:
        code = args.func(args)
    except SystemExit as exc:
        if type(exc).__name__ == "SIGTERMException":  # Lightning's, raised at a batch end after a SIGTERM
            print("avnas: terminated (SIGTERM); the last finished epoch is checkpointed: rerun the same command with "
                  "--resume", file=sys.stderr)
            return 143
        # Lightning answers Ctrl-C with a graceful shutdown and sys.exit(1) while handling the KeyboardInterrupt;
        # any other SystemExit is argparse's (avnas bench NAME --help, a bad benchmark argument): keep its code.
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    except FloatingPointError as exc:
        print(f"avnas: error: {exc}; the last good epoch is checkpointed in the run directory", file=sys.stderr)
        return 3
    except AVNASError as exc:
        print(f"avnas: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not the user's input: say so, with the traceback when asked
        if args.verbose:
            traceback.print_exc()
        print(f"avnas: internal error: {type(exc).__name__}: {exc}"
              + ("" if args.verbose else " (rerun with -v for the traceback)"), file=sys.stderr)
        return 1
    return code or 0


def _interrupted() -> int:
    print("avnas: interrupted; the last finished epoch is checkpointed: rerun the same command with --resume",
          file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
