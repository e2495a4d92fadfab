"""The model card (Markdown) and its pictures (PNG) written after training: precision-recall
curve, reliability diagram, fairness by group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from scoring.scorer import risk_bands
from training.extracts import Dataset
from training.fairness import DP_RATIO_FLOOR, RATES
from training.fit import TrainingResult

FAIRNESS_PLOTTED = ("selection_rate", "recall", "false_positive_rate")


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pr_curve(path: Path, y: np.ndarray, probability: np.ndarray, threshold: float) -> None:
    precision, recall, thresholds = precision_recall_curve(y, probability)
    at = int(np.argmin(np.abs(thresholds - threshold)))
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(recall, precision, label="out-of-fold")
    axes.scatter(
        [recall[at]], [precision[at]], color="red", zorder=3, label=f"threshold {threshold:.3f}"
    )
    axes.axhline(float(y.mean()), linestyle="--", color="grey", label="base rate")
    axes.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall (out-of-fold)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="upper right")
    _save(figure, path)


def _reliability(path: Path, table: list[dict[str, Any]], ece: float) -> None:
    """Observed leaving rate against mean predicted probability per bin, bin sizes below."""
    filled = [row for row in table if row["count"]]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot(
        [row["mean_probability"] for row in filled],
        [row["observed_rate"] for row in filled],
        marker="o",
        label=f"out-of-fold (ECE {ece:.3f})",
    )
    top.set(ylabel="observed leaving rate", title="Reliability (out-of-fold)", ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.bar(
        [(row["from"] + row["to"]) / 2 for row in table],
        [row["count"] for row in table],
        width=0.09,
        color="tab:blue",
    )
    bottom.set(xlabel="predicted probability", ylabel="employees", xlim=(0, 1))
    _save(figure, path)


def _fairness_plot(path: Path, fairness: dict[str, Any]) -> None:
    """Per attribute, each group's selection rate, recall and FPR with their 90 % intervals."""
    attributes = fairness["attributes"]
    figure, panels = plt.subplots(1, len(attributes), figsize=(5 * len(attributes), 4))
    width = 0.8 / len(FAIRNESS_PLOTTED)
    for axes, (attribute, block) in zip(panels, attributes.items(), strict=True):
        groups = list(block["groups"])
        for i, metric in enumerate(FAIRNESS_PLOTTED):
            cells = [block["groups"][g][metric] for g in groups]
            values = [c.get("value") or 0.0 for c in cells]
            errors = np.array(
                [
                    [v - c["ci90"][0], c["ci90"][1] - v] if c.get("ci90") else [0.0, 0.0]
                    for v, c in zip(values, cells, strict=True)
                ]
            ).T.clip(min=0)  # a percentile interval may exclude its point estimate
            positions = np.arange(len(groups)) + (i - (len(FAIRNESS_PLOTTED) - 1) / 2) * width
            axes.bar(positions, values, width, yerr=errors, capsize=3, label=metric)
        axes.set_xticks(np.arange(len(groups)), groups)
        axes.set(
            ylim=(0, 1.2),
            title=f"{attribute} (DP ratio {_number(block.get('demographic_parity_ratio'))})",
        )
    panels[0].legend(loc="upper left", ncol=len(FAIRNESS_PLOTTED), fontsize="small")
    figure.suptitle("Out-of-fold decisions by group, 90 % bootstrap intervals")
    _save(figure, path)


def _cell(cell: dict[str, Any]) -> str:
    interval = cell.get("ci90")
    suffix = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return _number(cell.get("value")) + suffix


def _fairness_section(fairness: dict[str, Any]) -> str:
    names = list(RATES)
    lines = [
        "| attribute | group | employees | "
        + " | ".join(n.replace("_", " ") for n in names)
        + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    summary = []
    for attribute, block in fairness["attributes"].items():
        for group, row in block["groups"].items():
            cells = " | ".join(_cell(row[n]) for n in names)
            lines.append(f"| {attribute} | {group} | {row['count']} | {cells} |")
        summary.append(
            f"- {attribute}: demographic-parity ratio "
            f"{_number(block.get('demographic_parity_ratio'))}, equalized-odds difference "
            f"{_number(block.get('equalized_odds_difference'))}"
        )
    warnings = "\n".join(f"- **{w}**" for w in fairness["warnings"]) or (
        f"- no demographic-parity ratio under {DP_RATIO_FLOOR}"
    )
    return "\n".join(
        [
            f"Method: {fairness['method']}.",
            "",
            *lines,
            "",
            *summary,
            "",
            warnings,
            "",
            "![fairness by group](fairness.png)",
        ]
    )


def _candidate_row(label: str, m: dict[str, Any], chosen: bool) -> str:
    return (
        f"| {label}{' (chosen)' if chosen else ''} "
        f"| {m['roc_auc_mean']:.3f} ± {m['roc_auc_std']:.3f} "
        f"| {m['average_precision_mean']:.3f} ± {m['average_precision_std']:.3f} "
        f"| {m['brier']:.4f} | {m['log_loss']:.3f} | {m['ece']:.3f} "
        f"| {'yes' if m['calibrated'] else 'no'} |"
    )


def _candidates_table(result: TrainingResult) -> str:
    ablation = result.ablation
    removed = bool(ablation["removed"])
    return "\n".join(
        [
            "| estimator | ROC-AUC | average precision | Brier | log-loss | ECE | calibrated |",
            "|---|---|---|---|---|---|---|",
            *(
                _candidate_row(name, m, chosen=name == result.estimator and not removed)
                for name, m in result.cv.items()
            ),
            _candidate_row(
                f"{ablation['estimator']} without {', '.join(ablation['sensitive_features'])}",
                ablation["without"],
                chosen=removed,
            ),
        ]
    )


def _calibration_table(table: list[dict[str, Any]]) -> str:
    rows = [
        "| predicted | employees | mean predicted | observed leaving rate |",
        "|---|---|---|---|",
    ]
    for row in table:
        if row["count"]:
            rows.append(
                f"| {row['from']:.1f}-{row['to']:.1f} | {row['count']} "
                f"| {row['mean_probability']:.3f} | {row['observed_rate']:.3f} |"
            )
    return "\n".join(rows)


def _bands(threshold: float) -> str:
    bands = risk_bands(threshold)
    return "\n".join(
        f"- **{b['band']}**: {b['from']:.3f} ≤ probability {'≤' if b is bands[-1] else '<'} "
        f"{b['to']:.3f}, {b['meaning']}"
        for b in bands
    )


def _ablation_section(ablation: dict[str, Any]) -> str:
    ratios = ablation["demographic_parity_ratio"]
    attributes = list(ratios["with"])

    def ratio_cells(label: str) -> str:
        return " | ".join(_number(ratios[label].get(a)) for a in attributes)

    return "\n".join(
        [
            f"Rule: {ablation['rule']}.",
            "",
            f"Average precision change without {', '.join(ablation['sensitive_features'])}: "
            f"{ablation['average_precision_change']:+.3f}; they were "
            f"**{'dropped' if ablation['removed'] else 'kept'}**.",
            "",
            "| variant | " + " | ".join(f"DP ratio {a}" for a in attributes) + " |",
            "|---|" + "---|" * len(attributes),
            f"| with | {ratio_cells('with')} |",
            f"| without | {ratio_cells('without')} |",
        ]
    )


def write_reports(folder: Path, tag: str, result: TrainingResult, dataset: Dataset) -> Path:
    """Write `model_card.md` and its PNGs into `folder`; return the card."""
    folder.mkdir(parents=True, exist_ok=True)
    y = dataset.target
    _pr_curve(folder / "precision_recall.png", y, result.oof_probability, result.threshold)
    _reliability(folder / "reliability.png", result.calibration, result.out_of_fold["ece"])
    _fairness_plot(folder / "fairness.png", result.fairness)
    oof = result.out_of_fold
    data: dict[str, Any] = dataset.describe()
    origin = "GENERATED (synthetic) data, not real employees" if dataset.generated else "real"
    card = f"""# Model card: {tag}

**Data**: {origin}
- rows {data["rows"]}, positive rate {data["positive_rate"]:.3f}, sha256 `{data["sha256"][:16]}…`

## What `probability` means
{result.probability_meaning}

## Cross-validated model choice
Ranking metrics: mean ± std over stratified folds. Calibration metrics (Brier, log-loss,
expected calibration error over 10 equal-width bins): over all out-of-fold probabilities.

{_candidates_table(result)}

Rule: {result.metrics()["selection_rule"]}.

Features used ({len(result.features_used)}): {", ".join(result.features_used)}.

## Ablation: without genre, age and marital status
{_ablation_section(result.ablation)}

## Calibration (out-of-fold)
Brier {oof["brier"]:.4f}, log-loss {oof["log_loss"]:.3f}, ECE {oof["ece"]:.3f};
mean predicted {oof["mean_probability"]:.3f} against {oof["positive_rate"]:.3f} observed.

{_calibration_table(result.calibration)}

## Decision threshold and risk bands
{result.threshold:.4f}: {result.metrics()["threshold_rule"]}.

Out-of-fold at that threshold: precision {oof["precision"]:.3f}, recall {oof["recall"]:.3f},
F1 {oof["f1"]:.3f}; confusion matrix `{json.dumps(oof["confusion_matrix"])}`.

{_bands(result.threshold)}

![precision-recall](precision_recall.png) ![reliability](reliability.png)

## Fairness (out-of-fold decisions at the threshold)
{_fairness_section(result.fairness)}

## Intended use
Ranking employees by risk of leaving so that HR can talk to them first. Not for decisions
about pay, promotion or dismissal; every score is logged with its inputs for audit.
Explanations (`top_factors`) compare the employee with the average training employee.
"""
    path = folder / "model_card.md"
    path.write_text(card, encoding="utf-8")
    return path
