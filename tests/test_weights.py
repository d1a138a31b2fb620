"""The registry and the resolver, including a real download through a stand-in Hub."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save as save_safetensors

import weights
from core.errors import MissingWeights, WeightsMismatch
from tests.conftest import REPO
from tests.hubstub import serve_hub
from weights.registry import HubFile, ModelRecord, ProjectFile, register, unregister
from weights.resolve import PROJECT_WEIGHTS


def _tiny_linear_bytes(seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(3, 2)
    return save_safetensors({k: v.half() for k, v in layer.state_dict().items()})


@pytest.fixture()
def tiny_hub_record():
    data = _tiny_linear_bytes()
    with serve_hub({("cvhub-test/tiny-linear", "model.safetensors"): data}) as (endpoint, revision):
        record = register(ModelRecord(
            name="test-tiny-linear", task="test", builder="torch.nn:Linear",
            builder_kwargs={"in_features": 3, "out_features": 2},
            source=HubFile("cvhub-test/tiny-linear", "model.safetensors", revision),
            sha256=hashlib.sha256(data).hexdigest(), license="MIT",
        ))
        yield endpoint, record, data
        unregister(record.name)


def test_download_through_stand_in_hub_then_offline_from_cache(tiny_hub_record, tmp_path, monkeypatch):
    endpoint, record, data = tiny_hub_record
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
    # huggingface_hub reads its cache folder at import: run the real loader in a fresh process.
    script = textwrap.dedent(f"""
        import torch, weights
        from weights.registry import register, ModelRecord, HubFile
        register(ModelRecord(name={record.name!r}, task="test", builder="torch.nn:Linear",
                 builder_kwargs={{"in_features": 3, "out_features": 2}},
                 source=HubFile({record.source.repo_id!r}, {record.source.filename!r}, {record.source.revision!r}),
                 sha256={record.sha256!r}, license="MIT"))
        model = weights.create({record.name!r})
        print(weights.resolve(weights.get_record({record.name!r})))
        print(model.weight.dtype, model.weight.flatten().tolist())
    """)
    online = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=os.environ)
    assert online.returncode == 0, online.stderr
    path, values = online.stdout.strip().splitlines()
    assert path.startswith(str(tmp_path / "hub")), "the file must land in the Hugging Face cache"
    torch.manual_seed(0)
    expected = torch.nn.Linear(3, 2).weight.half().float().flatten().tolist()
    assert values == f"torch.float32 {expected}"

    # Offline now, and the stand-in Hub shut down: the cached file is used, sha256 still checked.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    offline = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=env)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip().splitlines()[0] == path


def test_offline_without_cache_names_the_missing_file(tiny_hub_record, tmp_path, monkeypatch):
    _, record, _ = tiny_hub_record
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingWeights, match="model.safetensors.*huggingface-cli download cvhub-test/tiny-linear"):
        weights.create(record.name)


def test_weights_dir_comes_first_and_sha256_is_enforced(tmp_path):
    good = _tiny_linear_bytes(seed=1)
    record = register(ModelRecord(
        name="test-local-linear", task="test", builder="torch.nn:Linear",
        builder_kwargs={"in_features": 3, "out_features": 2},
        source=ProjectFile("test-local-linear.safetensors"), sha256=hashlib.sha256(good).hexdigest(), license="MIT",
    ))
    try:
        with pytest.raises(MissingWeights, match="test-local-linear.safetensors"):
            weights.create(record.name, weights_dir=tmp_path)
        (tmp_path / "test-local-linear.safetensors").write_bytes(good)
        model = weights.create(record.name, weights_dir=tmp_path)
        assert not model.training and not model.weight.requires_grad
        (tmp_path / "test-local-linear.safetensors").write_bytes(_tiny_linear_bytes(seed=2))
        with pytest.raises(WeightsMismatch, match="sha256"):
            weights.create(record.name, weights_dir=tmp_path)
    finally:
        unregister(record.name)


def test_a_damaged_copy_in_the_weights_dir_does_not_shadow_the_good_one(tmp_path, caplog):
    """A corrupt file in --weights-dir is skipped (logged) and the next copy, here the project's, is used;
    where no copy is good, the sentence names neither the server's folder nor the file's path."""
    good = _tiny_linear_bytes(seed=1)
    name = "test-shadowed-linear"
    bundled = PROJECT_WEIGHTS / f"{name}.safetensors"
    record = register(ModelRecord(
        name=name, task="test", builder="torch.nn:Linear", builder_kwargs={"in_features": 3, "out_features": 2},
        source=ProjectFile(bundled.name), sha256=hashlib.sha256(good).hexdigest(), license="MIT",
    ))
    (tmp_path / bundled.name).write_bytes(b"not a safetensors file")
    try:
        bundled.write_bytes(good)
        with caplog.at_level("WARNING", logger="cvhub"):
            model = weights.create(name, weights_dir=tmp_path)
        assert model.weight.shape == (2, 3)
        assert str(tmp_path) in caplog.text and "skipping weight file" in caplog.text
        assert weights.is_available(record, weights_dir=tmp_path)
        bundled.unlink()
        assert not weights.is_available(record, weights_dir=tmp_path)  # a damaged copy is not "available"
        with pytest.raises(WeightsMismatch) as refused:
            weights.create(name, weights_dir=tmp_path)
        assert str(tmp_path) not in str(refused.value) and "/" not in str(refused.value)
    finally:
        bundled.unlink(missing_ok=True)
        unregister(name)


def test_vgg19_caffe_from_shared_weights_both_forms_agree(shared_weights):
    fp16 = weights.create("vgg19-caffe")
    q8 = weights.create("vgg19-caffe-q8")
    x = torch.randn(1, 3, 48, 48) * 60
    a, b = fp16(x), q8(x)
    assert a.shape == (1, 512, 1, 1)
    assert ((a - b).norm() / a.norm()).item() < 0.01  # fp16 rounding of the same 8-bit weights


def test_every_record_is_complete():
    for name in weights.list_models():
        record = weights.get_record(name)
        assert record.license and record.task and record.builder, name
        assert record.sha256 is None or len(record.sha256) == 64, name
        if record.card:
            assert (REPO / "weights" / "cards" / record.card).is_file(), f"{name}: model card {record.card} missing"
