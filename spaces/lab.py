"""Building-blocks lab: pooling/unpooling and (transpose) convolution on grids a student can check by hand."""

from __future__ import annotations

import html

import gradio as gr
import torch

from core import building_blocks as bb
from core.errors import UserError
from spaces.common import user_errors

TITLE = "Building blocks"
SUMMARY = (
    "Max pooling with remembered positions and SegNet's max unpooling, nearest and bed-of-nails unpooling, "
    "strided and transpose convolution, on editable grids computed by the real PyTorch ops."
)

LECTURE_INPUT = [[1, 3, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]
MAX_CELLS = 16  # grids up to 16x16: enough to see the pattern, small enough to read


def parse_grid(value, name: str) -> torch.Tensor:
    """A Dataframe value (rows of cells) as a 2-D float tensor, or one sentence saying which cell is wrong."""
    rows = value.values.tolist() if hasattr(value, "values") else value
    if isinstance(rows, dict):
        rows = rows.get("data", [])
    rows = [list(r) for r in rows or [] if any(c not in (None, "") for c in r)]
    if not rows:
        raise UserError(f"The {name} grid is empty; type some numbers into it.")
    if len({len(r) for r in rows}) != 1:
        raise UserError(f"Every row of the {name} grid needs the same number of cells.")
    if len(rows) > MAX_CELLS or len(rows[0]) > MAX_CELLS:
        raise UserError(f"The {name} grid can be at most {MAX_CELLS}x{MAX_CELLS}.")
    out = []
    for i, row in enumerate(rows):
        try:
            out.append([float(c) for c in row])
        except (TypeError, ValueError):
            raise UserError(f"Row {i + 1} of the {name} grid has a cell that is not a number.") from None
    return torch.tensor(out)


def grid_html(t: torch.Tensor, elem_id: str, caption: str, marked: set[tuple[int, int]] = frozenset()) -> str:
    """A small table; ``marked`` cells are highlighted (e.g. where the maxima were)."""
    cells = []
    for i, row in enumerate(t.tolist()):
        tds = "".join(
            f'<td class="{"marked" if (i, j) in marked else ""}">{_fmt(v)}</td>' for j, v in enumerate(row)
        )
        cells.append(f"<tr>{tds}</tr>")
    return (
        f'<figure class="lab-grid" id="{elem_id}"><figcaption>{html.escape(caption)}</figcaption>'
        f'<table>{"".join(cells)}</table></figure>'
    )


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


@user_errors
def unpool_lab(input_grid, values_grid):
    x = parse_grid(input_grid, "input")
    v = parse_grid(values_grid, "values to unpool")
    if x.shape[0] % 2 or x.shape[1] % 2:
        raise UserError("2x2 pooling needs an input with an even number of rows and columns.")
    pooled, indices = bb.max_pool_with_indices(x)
    if v.shape != pooled.shape:
        raise UserError(f"The values to unpool must be {pooled.shape[0]}x{pooled.shape[1]}, "
                        "the size of the pooled grid.")
    width = x.shape[1]
    positions = {(int(k) // width, int(k) % width) for k in indices.flatten()}
    unpooled = bb.max_unpool(v, indices, output_size=tuple(x.shape))
    return (
        grid_html(x, "lab-input", "Input: the maxima are marked", positions),
        grid_html(pooled, "lab-pooled", "2x2 max pooling"),
        grid_html(unpooled, "lab-maxunpool", "Max unpooling of the values, at the remembered positions", positions),
        grid_html(bb.nearest_unpool(v), "lab-nearest", "Nearest-neighbour unpooling"),
        grid_html(bb.bed_of_nails_unpool(v), "lab-nails", "Bed of nails unpooling"),
    )


@user_errors
def conv_lab(input_grid, filter_grid, stride, padding):
    x = parse_grid(input_grid, "input")
    k = parse_grid(filter_grid, "filter")
    stride, padding = int(stride), int(padding)
    if k.shape[0] > x.shape[0] + 2 * padding or k.shape[1] > x.shape[1] + 2 * padding:
        raise UserError("The filter is larger than the padded input; use a smaller filter or more padding.")
    out = bb.convolve(x, k, stride, padding)
    n, f = x.shape[0], k.shape[0]
    formula = (
        f"n_out = floor((n + 2p − f) / s) + 1 = floor(({n} + 2·{padding} − {f}) / {stride}) + 1 = "
        f"{bb.conv_output_size(n, f, stride, padding)}  →  output {out.shape[0]}x{out.shape[1]}"
    )
    return grid_html(out, "lab-conv-out", f"Convolution, stride {stride}, padding {padding}"), formula


@user_errors
def transpose_lab(input_grid, filter_grid, stride, padding):
    x = parse_grid(input_grid, "input")
    k = parse_grid(filter_grid, "filter")
    stride, padding = int(stride), int(padding)
    if bb.transpose_conv_output_size(x.shape[0], k.shape[0], stride, padding) < 1:
        raise UserError("This padding crops away the whole output; use less padding.")
    out = bb.transpose_convolve(x, k, stride, padding)
    contributions = bb.transpose_conv_contributions(tuple(x.shape), tuple(k.shape), stride, padding)
    rows = [
        f"| ({y},{z}) | {' + '.join(f'in{i}·w{a}' for i, a in terms)} | {_fmt(out[y, z])} |"
        for (y, z), terms in sorted(contributions.items())
    ]
    table = "| output cell | sum of input × filter cells | value |\n|---|---|---|\n" + "\n".join(rows)
    n, f = x.shape[0], k.shape[0]
    formula = (
        f"n_out = (n − 1)·s − 2p + f = ({n} − 1)·{stride} − 2·{padding} + {f} = "
        f"{bb.transpose_conv_output_size(n, f, stride, padding)}  →  output {out.shape[0]}x{out.shape[1]}"
    )
    caption = f"Transpose convolution, stride {stride}, padding {padding}"
    return grid_html(out, "lab-transpose-out", caption), formula, table


_GRID_CSS = (
    "<style>.lab-grid table{border-collapse:collapse;margin:4px}.lab-grid td{border:1px solid #888;"
    "min-width:2.2em;text-align:center;padding:2px 6px}.lab-grid td.marked{background:#fde68a;font-weight:bold}"
    ".lab-grid figcaption{font-size:.9em}</style>"
)


def _grid_input(label: str, value, elem_id: str) -> gr.Dataframe:
    return gr.Dataframe(value=value, label=label, type="array", datatype="number", interactive=True,
                        elem_id=elem_id, headers=None, show_row_numbers=True)


def build() -> None:
    gr.HTML(_GRID_CSS)
    gr.Markdown(
        "Edit the numbers and press a button: each result is computed by the PyTorch op that the networks "
        "of this hub use (`max_pool2d`/`max_unpool2d`, `conv2d`, `conv_transpose2d`)."
    )
    with gr.Accordion("Max pooling and unpooling (SegNet's decoder)", open=True):
        with gr.Row():
            pool_in = _grid_input("Input (4x4)", LECTURE_INPUT, "lab-pool-input")
            values_in = _grid_input("Values to unpool (2x2)", [[1, 2], [3, 4]], "lab-values-input")
        pool_btn = gr.Button("Pool, then unpool", variant="primary", elem_id="lab-unpool-button")
        with gr.Row():
            shown_in, pooled, unpooled, nearest, nails = (gr.HTML() for _ in range(5))
        pool_btn.click(unpool_lab, [pool_in, values_in], [shown_in, pooled, unpooled, nearest, nails],
                       api_name="lab_unpool")

    with gr.Accordion("Convolution: stride 1 keeps the size, stride 2 downsamples", open=False):
        with gr.Row():
            conv_in = _grid_input("Input", LECTURE_INPUT, "lab-conv-input")
            conv_k = _grid_input("3x3 filter", [[1, 0, -1], [1, 0, -1], [1, 0, -1]], "lab-conv-filter")
        with gr.Row():
            conv_s = gr.Radio([1, 2], value=1, label="stride")
            conv_p = gr.Radio([0, 1], value=1, label="padding")
        conv_btn = gr.Button("Convolve")
        conv_out, conv_formula = gr.HTML(), gr.Textbox(label="Output size", interactive=False)
        conv_btn.click(conv_lab, [conv_in, conv_k, conv_s, conv_p], [conv_out, conv_formula], api_name="lab_conv")

    with gr.Accordion("Transpose convolution: learnable upsampling, overlaps are summed", open=False):
        gr.Markdown(
            "1-D, input [a, b], filter [x, y, z], stride 2: output **["
            + ", ".join(bb.transpose_conv_1d_formula(["a", "b"], ["x", "y", "z"], stride=2))
            + "]** — the middle cell gets a contribution from both inputs."
        )
        with gr.Row():
            tr_in = _grid_input("Input", [[1, 2], [3, 4]], "lab-transpose-input")
            tr_k = _grid_input("3x3 filter", [[1, 1, 1], [1, 1, 1], [1, 1, 1]], "lab-transpose-filter")
        with gr.Row():
            tr_s = gr.Radio([1, 2], value=2, label="stride")
            tr_p = gr.Radio([0, 1], value=1, label="padding")
        tr_btn = gr.Button("Transpose-convolve")
        tr_out, tr_formula = gr.HTML(), gr.Textbox(label="Output size", interactive=False)
        tr_table = gr.Markdown()
        tr_btn.click(transpose_lab, [tr_in, tr_k, tr_s, tr_p], [tr_out, tr_formula, tr_table], api_name="lab_transpose")
