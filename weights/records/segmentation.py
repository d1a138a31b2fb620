"""Semantic segmentation on CamVid (11 classes): ENet, and FCN-8s, SegNet, U-Net on the frozen VGG-19, trained here.

Each model's sha256, val metrics and card come from its release (``weights/cards/<name>.json``,
written by ``python -m core.segmentation release``); the rest is written by hand.
"""

from core.datasets.camvid import CAMVID_CLASSES, CAMVID_COLORS
from weights.records.backbones import VGG19_CAFFE_FP16
from weights.registry import ModelRecord, ProjectFile, register
from weights.release import released

_CAMVID = dict(
    task="segmentation",
    class_names=CAMVID_CLASSES,
    class_colors=CAMVID_COLORS,
    # SegNet and U-Net trained on 480x360 frames scaled by 2/3: inference fits any image into 320x240 first.
    # ENet and FCN-8s, trained at CamVid's full 480x360, override it.
    input_size=(240, 320),
)

register(ModelRecord(
    name="enet-camvid",
    builder="core.segmentation.enet:enet",
    source=ProjectFile("enet-camvid.safetensors"),
    license="MIT (trained by this project on CamVid)",
    description="ENet (Paszke et al. 2016), 0.36 M parameters, trained from scratch on CamVid train at 480x360, "
                "fp16.",
    **released("enet-camvid"),
    **{**_CAMVID, "input_size": (360, 480)},
    # OpenVINO keeps its labels but runs it at half fp32's speed (its max-unpooling), so it is not offered.
    engines=("inductor-bf16", "inductor", "bf16"),
    # bench/familiarity.py: every CamVid val frame >= 0.94, other cities' streets 0.89-0.93, cats, cups and faces
    # 0.81-0.91.
    confidence_floor=0.92,
))


def _register_frozen_vgg19(name: str, builder: str, description: str, engines: tuple[str, ...],
                           input_size: tuple[int, int] = _CAMVID["input_size"],
                           confidence_floor: float | None = None) -> None:
    """FCN-8s, SegNet and U-Net on the frozen ImageNet VGG-19: each ships only what it trained; the encoder
    is the vgg19-caffe file, resolved like any weights, and takes Caffe's input convention."""
    register(ModelRecord(
        name=name,
        builder=builder,
        source=ProjectFile(f"{name}.safetensors"),
        state_loader="core.segmentation.frozen_vgg19:load_frozen_vgg19_state",
        extra_files=(VGG19_CAFFE_FP16,),
        license="MIT (project code; decoder trained on CamVid); encoder VGG-19, CC BY 4.0",
        description=description,
        **released(name),
        color_order="BGR",
        pixel_scale=255.0,
        mean=(103.939, 116.779, 123.68),
        std=(1.0, 1.0, 1.0),
        **{**_CAMVID, "input_size": input_size},
        engines=engines,
        confidence_floor=confidence_floor,
    ))


_register_frozen_vgg19(
    "fcn8s-vgg19-camvid", "core.segmentation.fcn:fcn8s_vgg19_frozen",
    "FCN-8s head (pool3/pool4/pool5 score fusion) on the ImageNet VGG-19 from vgg19-caffe, frozen but for block 5, "
    "fine-tuned with the head; shipped: the head (8-bit palettised) and block 5 (its change from ImageNet's weights, "
    "4-bit palettised), trained on CamVid by `python -m core.segmentation train-frozen`.",
    ("openvino-bf16", "openvino"),  # PyTorch's bf16 autocast changes 0.6 % of its labels
    input_size=(360, 480),
    # bench/familiarity.py: every CamVid val frame >= 0.91, other cities' streets 0.84-0.89, cats, cups and faces
    # 0.66-0.85.
    confidence_floor=0.89,
)

_register_frozen_vgg19(
    "segnet-vgg19-camvid", "core.segmentation.segnet:segnet_vgg19_frozen",
    "SegNet's decoder (13 convs with BN, upsampling by max-unpooling with the encoder's pooling indices) "
    "on the frozen ImageNet VGG-19 from vgg19-caffe; only the decoder is shipped (4-bit palettised).",
    # None: bf16 (autocast, Inductor or OpenVINO) changes 0.5-0.7 % of its labels: rounding flips which
    # pixel of a pooling window is the maximum, and the decoder unpools there. In fp32, Inductor is no faster,
    # and OpenVINO's max-unpooling with indices changes 28 % of the labels at other sizes than the conversion's.
    (),
)

_register_frozen_vgg19(
    "unet-vgg19-camvid", "core.segmentation.unet:unet_vgg19_frozen",
    "U-Net decoder (upsample, concatenate the skip, two 3x3 convs, at strides 8..1) on the frozen "
    "ImageNet VGG-19 (its block-end ReLU taps) from vgg19-caffe; only the decoder is shipped (4-bit palettised).",
    ("openvino-bf16", "openvino"),  # PyTorch's bf16 autocast changes 0.6 % of its labels
)
