"""`attrition train` and `attrition evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from settings import get_settings
from training.extracts import Dataset, load_extracts
from training.generator import DEFAULT_ROWS, write_extracts


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_dataset(data_dir: Path | None, *, seed: int = 0, rows: int = DEFAULT_ROWS) -> Dataset:
    """The configured extracts, or generated ones (labelled so) when none are configured."""
    folder = data_dir or get_settings().data_dir
    if folder is not None:
        _progress(f"reading extracts from {folder}")
        return load_extracts(folder)
    _progress("no extracts configured (--data-dir / ATTRITION_DATA_DIR): using GENERATED data")
    with tempfile.TemporaryDirectory() as tmp:
        return load_extracts(write_extracts(Path(tmp), rows=rows, seed=seed), generated=True)


def train(args: argparse.Namespace) -> int:
    from training.fit import train as fit
    from training.report import write_reports
    from training.store import save

    dataset = resolve_dataset(args.data_dir, seed=args.seed, rows=args.generated_rows)
    _progress(
        f"{len(dataset.employees)} employees, positive rate {dataset.positive_rate:.3f}; "
        f"cross-validating {args.folds} folds"
    )
    result = fit(dataset, folds=args.folds, seed=args.seed, progress=_progress)
    for warning in result.fairness["warnings"]:
        _progress(warning)
    model = save(result, dataset)
    card = write_reports(get_settings().reports_dir, str(model.tag), result, dataset)
    label = " (trained on GENERATED data)" if dataset.generated else ""
    _progress(f"model card: {card}")
    print(f"saved {model.tag}{label}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate as run
    from training.store import load

    report = run(load(args.model), load_extracts(args.data_dir))
    if args.json:
        print(json.dumps(report))
        return 0
    matrix = report["confusion_matrix"]
    print(f"model {report['model']} on {report['n']} employees")
    keys = ("roc_auc", "average_precision", "brier", "log_loss", "ece", "mean_probability")
    for key in (*keys, "positive_rate", "threshold", "precision", "recall", "f1"):
        value = report[key]
        print(f"  {key:<18} {value:.4f}" if value is not None else f"  {key:<18} n/a")
    print(f"  confusion matrix   {json.dumps(matrix)}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("train", help="train and save to the BentoML model store")
    parser.add_argument("--data-dir", type=Path, help="folder of the three extracts")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--generated-rows",
        type=int,
        default=DEFAULT_ROWS,
        help="size of the generated data set when no extracts are configured",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=train)

    parser = commands.add_parser("evaluate", help="score a stored model on labelled extracts")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default=get_settings().model_tag)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(handler=evaluate)
