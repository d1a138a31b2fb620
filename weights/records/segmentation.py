"""Semantic segmentation on CamVid (11 classes): ENet and FCN-8s (frozen VGG-19) trained by the project; SegNet, U-Net.

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
    # Trained on 480x360 frames scaled by 2/3: inference fits any image into 320x240 first.
    input_size=(240, 320),
)

# RELEASE enet-camvid BEGIN
ENET_SHA256 = 'b7373396ec5b97380c133f862a20a8bd76b31cdf303b4f5999ebc22b04805972'
ENET_METRICS = {'dataset': 'CamVid val (101 frames)',
 'mIoU': 0.454,
 'class_avg': 0.5774,
 'global_accuracy': 0.855,
 'iou': {'Sky': 0.9265,
         'Building': 0.7467,
         'Pole': 0.0,
         'Road': 0.9115,
         'Sidewalk': 0.686,
         'Tree': 0.8898,
         'Sign': 0.0028,
         'Fence': 0.2689,
         'Car': 0.5467,
         'Pedestrian': 0.0149,
         'Bicyclist': 0.0},
 'epochs': 26}
# RELEASE enet-camvid END

register(ModelRecord(
    name="enet-camvid",
    builder="core.segmentation.enet:enet",
    source=ProjectFile("enet-camvid.safetensors"),
    sha256=ENET_SHA256,
    license="MIT (trained by this project on CamVid)",
    description="ENet (Paszke et al. 2016), 0.36 M parameters, trained from scratch on CamVid train at 320x240, fp16.",
    metrics=ENET_METRICS,
    card="enet-camvid.md",
    **_CAMVID,
))

# Architectures implemented and tested, not trained yet (no weights shipped): `create(name, pretrained=False)`
# builds them for benchmarks and training; the panel times them but shows no prediction.
_UNTRAINED = "not trained yet: no weights shipped"
register(ModelRecord(
    name="segnet-camvid",
    builder="core.segmentation.segnet:segnet_vgg16",
    source=ProjectFile("segnet-camvid.safetensors"),
    sha256=None,
    license="MIT (project code; encoder initialised from VGG-19, CC BY 4.0)",
    description=f"SegNet: VGG-16 encoder with BN, decoder unpooling with the encoder's max-pool indices ({_UNTRAINED}).",
    **_CAMVID,
))
register(ModelRecord(
    name="fcn8s-camvid",
    builder="core.segmentation.fcn:fcn8s_vgg",
    source=ProjectFile("fcn8s-camvid.safetensors"),
    sha256=None,
    license="MIT (project code; encoder initialised from VGG-19, CC BY 4.0)",
    description=f"FCN-8s on VGG-16 convs, skip fusion of pool3/pool4 scores ({_UNTRAINED}).",
    **_CAMVID,
))
register(ModelRecord(
    name="unet-vgg19-camvid",
    builder="core.segmentation.unet:unet_vgg",
    source=ProjectFile("unet-vgg19-camvid.safetensors"),
    sha256=None,
    license="MIT (project code; encoder initialised from VGG-19, CC BY 4.0)",
    description=f"U-Net on timm's VGG-19 features_only encoder, concatenated skips ({_UNTRAINED}).",
    **_CAMVID,
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

register(ModelRecord(
    name="fcn8s-vgg19-camvid",
    builder="core.segmentation.fcn:fcn8s_vgg19_frozen",
    source=ProjectFile("fcn8s-vgg19-camvid.safetensors"),
    sha256=FCN8S_SHA256,
    state_loader="core.segmentation.fcn:load_fcn8s_vgg19_state",
    # The frozen ImageNet encoder is not shipped: it is the vgg19-caffe file, resolved like any weights.
    extra_files=(VGG19_CAFFE_FP16,),
    license="MIT (project code; head trained on CamVid); encoder VGG-19, CC BY 4.0",
    description="FCN-8s head (pool3/pool4/pool5 score fusion) on the frozen ImageNet VGG-19 from vgg19-caffe; "
                "only the head is shipped (fp16), trained on CamVid by `python -m core.segmentation train-frozen`.",
    metrics=FCN8S_METRICS,
    card="fcn8s-vgg19-camvid.md" if FCN8S_SHA256 else None,  # `release` writes the card with the weights
    color_order="BGR",
    pixel_scale=255.0,
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
    **_CAMVID,
))
