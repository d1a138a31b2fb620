import pytest
import torch

from core.checkpoints import save_atomic


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 3, "w": torch.arange(4)}, path)
    with pytest.raises(Exception):
        save_atomic({"epoch": 4, "w": lambda: None}, path)  # a lambda cannot be pickled: the save dies midway
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 3 and torch.equal(kept["w"], torch.arange(4))
    save_atomic({"epoch": 5}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 5}
