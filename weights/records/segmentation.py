"""Semantic segmentation on CamVid (11 classes): ENet, and FCN-8s, SegNet, U-Net on the frozen VGG-19, trained here.

Each block between RELEASE markers is written by
``python -m core.segmentation release`` (sha256 and val metrics of the shipped file);
edit the rest by hand.
"""

from core.segmentation.classes import CAMVID_CLASSES, CAMVID_COLORS
from weights.records.backbones import VGG19_CAFFE_FP16
from weights.registry import ModelRecord, ProjectFile, register

_CAMVID = dict(
    task="segmentation",
    class_names=CAMVID_CLASSES,
    class_colors=CAMVID_COLORS,
    # The frozen-VGG-19 models trained on 480x360 frames scaled by 2/3: inference fits any image into
    # 320x240 first. ENet, cheap enough for CamVid's full 480x360, overrides it.
    input_size=(240, 320),
)

# RELEASE enet-camvid BEGIN
ENET_SHA256 = 'b36729f03b95850f172ceb6ba8116a3d0a83a00612e8caf04fba6f18b83a7cd7'
ENET_METRICS = {'dataset': 'CamVid val (101 frames)',
 'mIoU': 0.6411,
 'class_avg': 0.8041,
 'global_accuracy': 0.9135,
 'iou': {'Sky': 0.9299,
         'Building': 0.8215,
         'Pole': 0.0754,
         'Road': 0.9561,
         'Sidewalk': 0.8442,
         'Tree': 0.8915,
         'Sign': 0.3126,
         'Fence': 0.6086,
         'Car': 0.6903,
         'Pedestrian': 0.2884,
         'Bicyclist': 0.6333},
 'epochs': 82}
# RELEASE enet-camvid END

register(ModelRecord(
    name="enet-camvid",
    builder="core.segmentation.enet:enet",
    source=ProjectFile("enet-camvid.safetensors"),
    sha256=ENET_SHA256,
    license="MIT (trained by this project on CamVid)",
    description="ENet (Paszke et al. 2016), 0.36 M parameters, trained from scratch on CamVid train "
                "(at 320x240, then 480x360), fp16.",
    metrics=ENET_METRICS,
    card="enet-camvid.md",
    **{**_CAMVID, "input_size": (360, 480)},
))

# RELEASE fcn8s-vgg19-camvid BEGIN
FCN8S_SHA256 = '3a2688471f383666347cd43db4df3031ca94d7cc3489bb67de51cebb523f6118'
FCN8S_METRICS = {'dataset': 'CamVid val (101 frames)',
 'mIoU': 0.5834,
 'class_avg': 0.7446,
 'global_accuracy': 0.8829,
 'iou': {'Sky': 0.9289,
         'Building': 0.798,
         'Pole': 0.0867,
         'Road': 0.9235,
         'Sidewalk': 0.7128,
         'Tree': 0.8518,
         'Sign': 0.2762,
         'Fence': 0.3702,
         'Car': 0.7087,
         'Pedestrian': 0.2749,
         'Bicyclist': 0.4854},
 'epochs': 34}
# RELEASE fcn8s-vgg19-camvid END

def _register_frozen_vgg19(name: str, builder: str, sha256: str | None, metrics: dict, description: str) -> None:
    """FCN-8s, SegNet and U-Net on the frozen ImageNet VGG-19: each ships only what it trained; the encoder
    is the vgg19-caffe file, resolved like any weights, and takes Caffe's input convention."""
    register(ModelRecord(
        name=name,
        builder=builder,
        source=ProjectFile(f"{name}.safetensors"),
        sha256=sha256,
        state_loader="core.segmentation.frozen_vgg19:load_frozen_vgg19_state",
        extra_files=(VGG19_CAFFE_FP16,),
        license="MIT (project code; decoder trained on CamVid); encoder VGG-19, CC BY 4.0",
        description=description,
        metrics=metrics,
        card=f"{name}.md" if sha256 else None,  # `release` writes the card with the weights
        color_order="BGR",
        pixel_scale=255.0,
        mean=(103.939, 116.779, 123.68),
        std=(1.0, 1.0, 1.0),
        **_CAMVID,
    ))


_register_frozen_vgg19(
    "fcn8s-vgg19-camvid", "core.segmentation.fcn:fcn8s_vgg19_frozen", FCN8S_SHA256, FCN8S_METRICS,
    "FCN-8s head (pool3/pool4/pool5 score fusion) on the frozen ImageNet VGG-19 from vgg19-caffe; "
    "only the head is shipped (fp16), trained on CamVid by `python -m core.segmentation train-frozen`.",
)

# RELEASE segnet-vgg19-camvid BEGIN
SEGNET_SHA256 = 'ea66c8e78d8e21c8ae06571678a8a10ae9fc981d2b048822d28f579611324de0'
SEGNET_METRICS = {'dataset': 'CamVid val (101 frames)',
 'mIoU': 0.6082,
 'class_avg': 0.7404,
 'global_accuracy': 0.8987,
 'iou': {'Sky': 0.9392,
         'Building': 0.8361,
         'Pole': 0.1306,
         'Road': 0.9272,
         'Sidewalk': 0.7422,
         'Tree': 0.873,
         'Sign': 0.329,
         'Fence': 0.3862,
         'Car': 0.7585,
         'Pedestrian': 0.263,
         'Bicyclist': 0.5052},
 'epochs': 15}
# RELEASE segnet-vgg19-camvid END

_register_frozen_vgg19(
    "segnet-vgg19-camvid", "core.segmentation.segnet:segnet_vgg19_frozen", SEGNET_SHA256, SEGNET_METRICS,
    "SegNet's decoder (13 convs with BN, upsampling by max-unpooling with the encoder's pooling indices) "
    "on the frozen ImageNet VGG-19 from vgg19-caffe; only the decoder is shipped (4-bit palettised).",
)

# RELEASE unet-vgg19-camvid BEGIN
UNET_SHA256 = '5dcacce9deffda59df5ba88c6e4ba1001c61fba9f6f4341a2f66be4bd829daba'
UNET_METRICS = {'dataset': 'CamVid val (101 frames)',
 'mIoU': 0.5077,
 'class_avg': 0.7158,
 'global_accuracy': 0.8253,
 'iou': {'Sky': 0.9402,
         'Building': 0.5916,
         'Pole': 0.0515,
         'Road': 0.9139,
         'Sidewalk': 0.7193,
         'Tree': 0.829,
         'Sign': 0.1647,
         'Fence': 0.3907,
         'Car': 0.4884,
         'Pedestrian': 0.1659,
         'Bicyclist': 0.329},
 'epochs': 22}
# RELEASE unet-vgg19-camvid END

_register_frozen_vgg19(
    "unet-vgg19-camvid", "core.segmentation.unet:unet_vgg19_frozen", UNET_SHA256, UNET_METRICS,
    "U-Net decoder (upsample, concatenate the skip, two 3x3 convs, at strides 8..1) on the frozen "
    "ImageNet VGG-19 (timm features_only) from vgg19-caffe; only the decoder is shipped (4-bit palettised).",
)
