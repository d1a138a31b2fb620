"""Style transfer backbones beyond the Caffe VGG-19 (which lives in backbones.py): timm's torchvision VGG-19."""

from weights.registry import HubFile, ModelRecord, register

register(ModelRecord(
    name="vgg19.tv_in1k",
    task="backbone",
    builder="core.backbones.vgg:vgg19_features",
    # timm keeps torchvision's numbering under "features."; its classifier is dropped on load.
    state_loader="core.backbones.vgg:load_timm_state",
    # Revision: the commit of timm/vgg19.tv_in1k that added model.safetensors ("Add model"), as
    # listed on the Hub's commit pages; later commits only touched README.md. The file's sha256
    # could not be looked up from these machines (no Hub access), so it is not pinned yet.
    source=HubFile("timm/vgg19.tv_in1k", "model.safetensors", "128d4708565b3a414bcbb9bbad440b2fe37b9f18"),
    sha256=None,
    license="BSD-3-Clause (torchvision weights, via timm)",
    description=(
        "ImageNet VGG-19 as retrained by torchvision (timm vgg19.tv_in1k, 575 MB with its classifier; only the conv "
        "layers are used). RGB, ImageNet mean/std. sha256 not pinned: unverified until someone with Hub access adds it."
    ),
    # RGB in [0, 1], ImageNet mean/std: the record's defaults, written out for the reader.
    color_order="RGB",
    pixel_scale=1.0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    metrics={"dataset": "ImageNet val (torchvision, published)", "top-1": 0.72376, "top-5": 0.90876},
))
