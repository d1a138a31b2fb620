"""Palettised weight files: per-channel k-means by hand, 4-bit packing, a file that loads like any weights, and
fine-tuned tensors stored as their change from pretrained ones."""

import pytest
import torch
from safetensors.torch import save_file

from weights.delta import add_deltas, as_deltas
from weights.palette import MIN_NUMEL, _pack4, _unpack4, depalettize, kmeans_rows, palettize
from weights.registry import load_safetensors


def test_kmeans_finds_a_rows_values_when_it_has_no_more_than_k():
    # Row 0 holds only 0, 1 and 5; row 1 only -2 and 2: with 4 centroids each is found exactly.
    w = torch.tensor([[0.0, 1.0, 5.0, 1.0, 0.0, 5.0], [-2.0, 2.0, 2.0, -2.0, 2.0, -2.0]])
    codes, centroids = kmeans_rows(w, 4)
    assert torch.equal(centroids.gather(1, codes).float(), w)


def test_kmeans_splits_two_clumps_at_their_means():
    w = torch.tensor([[0.9, 1.0, 1.1, 9.0, 10.0, 11.0]])
    codes, centroids = kmeans_rows(w, 2)
    assert centroids.tolist() == [[1.0, 10.0]] and codes.tolist() == [[0, 0, 0, 1, 1, 1]]


def test_four_bit_packing_round_trips_an_odd_count():
    codes = torch.tensor([3, 15, 0, 7, 9])
    packed = _pack4(codes)
    assert packed.tolist() == [3 | 15 << 4, 0 | 7 << 4, 9]  # low nibble first, the last byte half empty
    assert torch.equal(_unpack4(packed, 5), codes.to(torch.uint8))


def test_palettised_file_is_4x_smaller_and_loads_close_to_the_original(tmp_path):
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(128, 128, 3, 3) * 0.05, "conv.bias": torch.randn(128),
             "bn.num": torch.tensor(3)}
    raw = palettize(state, bits=4)
    assert state["conv.weight"].numel() >= MIN_NUMEL and torch.equal(raw["conv.bias"], state["conv.bias"])
    assert raw["conv.weight.palette"].shape == (128, 16) and raw["conv.weight.codes"].numel() == 128 * 1152 // 2
    save_file({k: v.half() if v.is_floating_point() else v for k, v in raw.items()}, str(tmp_path / "p.safetensors"))
    save_file({k: v.half() for k, v in state.items() if v.is_floating_point()}, str(tmp_path / "h.safetensors"))
    size = (tmp_path / "p.safetensors").stat().st_size / (tmp_path / "h.safetensors").stat().st_size
    assert size < 0.3  # 4 bits a weight, plus 16 fp16 values per output channel
    loaded = load_safetensors(tmp_path / "p.safetensors")
    assert set(loaded) == set(state) and loaded["conv.weight"].shape == (128, 128, 3, 3)
    # 16 values per channel of a Gaussian: relative error about 1/10 of the weights' spread, 8 bits far less.
    err4 = (loaded["conv.weight"] - state["conv.weight"]).norm() / state["conv.weight"].norm()
    loaded8 = depalettize(palettize(state, bits=8))
    err8 = (loaded8["conv.weight"] - state["conv.weight"]).norm() / state["conv.weight"].norm()
    assert err4 < 0.15 and err8 < 0.02 and err8 < err4 / 5


def test_deltas_by_hand_and_back():
    base = {"a.weight": torch.tensor([[1.0, 2.0]]), "frozen.weight": torch.tensor([[5.0]])}
    state = {"a.weight": torch.tensor([[1.25, 1.5]]), "head.weight": torch.tensor([[7.0]]), "n": torch.tensor(3)}
    stored = as_deltas(state, base)
    # Only what the base also has becomes a change (1.25 - 1, 1.5 - 2); the head and integers stay as they are.
    assert set(stored) == {"a.weight.delta", "head.weight", "n"}
    assert stored["a.weight.delta"].tolist() == [[0.25, -0.5]] and stored["head.weight"].tolist() == [[7.0]]
    assert add_deltas(stored, base)["a.weight"].tolist() == [[1.25, 1.5]]
    with pytest.raises(KeyError, match="frozen2.weight"):
        add_deltas({"frozen2.weight.delta": torch.zeros(1, 1)}, base)


def test_a_small_change_palettised_keeps_far_more_than_the_weights_palettised():
    # A fine-tuned layer: pretrained weights moved by 7 % of their spread, as VGG-19's block 5 moves at 0.1x lr.
    torch.manual_seed(0)
    base = {"conv.weight": torch.randn(64, 64, 3, 3) * 0.01}
    tuned = {"conv.weight": base["conv.weight"] + torch.randn(64, 64, 3, 3) * 0.0007}
    plain = depalettize(palettize(tuned, bits=4))["conv.weight"]
    via_delta = add_deltas(depalettize(palettize(as_deltas(tuned, base), bits=4)), base)["conv.weight"]
    err_plain = (plain - tuned["conv.weight"]).norm()
    err_delta = (via_delta - tuned["conv.weight"]).norm()
    assert err_delta < err_plain / 10
