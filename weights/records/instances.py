"""Instance segmentation: the CamVid Mask R-CNN trained by the project on the frozen ImageNet VGG-19, and
torchvision's COCO Mask R-CNN v2 and Keypoint R-CNN where their files are at hand.

The CamVid model's sha256, val metrics and card come from its release (``weights/cards/<name>.json``,
written by ``python -m core.instances release``); the rest is written by hand.
"""

from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, MaskRCNN_ResNet50_FPN_V2_Weights

from core.datasets.camvid import INSTANCE_CLASSES
from core.datasets.coco import COCO_CLASSES
from core.instances.maskrcnn import SHORT_SIDE
from weights.records.backbones import VGG19_CAFFE_FP16
from weights.registry import ModelRecord, ProjectFile, UrlFile, register
from weights.release import released

register(ModelRecord(
    name="maskrcnn-vgg19-camvid",
    task="instances",
    builder="core.instances.maskrcnn:maskrcnn_vgg19_camvid",
    source=ProjectFile("maskrcnn-vgg19-camvid.safetensors"),
    state_loader="core.instances.maskrcnn:load_maskrcnn_vgg19_state",
    # The frozen ImageNet encoder is not shipped: it is the vgg19-caffe file, resolved like any weights.
    extra_files=(VGG19_CAFFE_FP16,),
    license="MIT (project code; heads trained on CamVid); encoder VGG-19, CC BY 4.0",
    description="Mask R-CNN (torchvision's, one stride-8 level) for CamVid's cars, pedestrians and bicyclists on the "
                "frozen ImageNet VGG-19 up to relu4_4; RPN, box and mask heads trained by the project, 8-bit "
                "palettised.",
    **released("maskrcnn-vgg19-camvid"),
    # The detector's own transform normalises (Caffe mean, 0-255, BGR inside the backbone).
    input_size=(SHORT_SIDE, SHORT_SIDE * 4 // 3),  # a CamVid frame as the transform scales it
    class_names=INSTANCE_CLASSES,
    # The engines run the frozen encoder only; the heads, RoI Align and NMS stay PyTorch fp32.
    engines=("openvino-bf16", "bf16", "openvino"),
    engine_part="backbone.encoder",
))

# torchvision's COCO models: the production defaults where their files are at hand or downloadable.
# Their weights live on download.pytorch.org, not on the Hub: the resolver looks in torch's hub cache,
# then in --weights-dir (or its torchvision/), and last downloads them into torch's hub cache (a UrlFile).
# torchvision names each file after the first 8 hex digits of its sha256; the full digests below are
# the ones that public projects pinning these files record, with the sizes, and a test checks that
# each starts with torchvision's digits.
TORCHVISION_SHA256 = {
    "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth": "73cbd0190fcbe3ba339921fbce2c3a0b6bb9126c9a133c85e43a2a8e060a109e",
    "keypointrcnn_resnet50_fpn_coco-fc266e95.pth": "fc266e953d2b302cdcbb9ae66f71f6b0d4649928bf02dc573961e361e4918926",
}
TORCHVISION_SIZE = {
    "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth": 185_828_065,
    "keypointrcnn_resnet50_fpn_coco-fc266e95.pth": 237_034_793,
}


def _register_torchvision(name: str, builder: str, weights_enum, *, data: str,
                          description: str, class_names: tuple[str, ...]) -> None:
    file = weights_enum.url.rsplit("/", 1)[-1]  # e.g. maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth
    register(ModelRecord(
        name=name,
        task="instances",
        builder=builder,
        source=UrlFile(weights_enum.url, file, TORCHVISION_SIZE[file], subdir="torchvision",
                       sha256_prefix=file.rsplit("-", 1)[-1].split(".")[0]),
        sha256=TORCHVISION_SHA256[file],
        state_loader="core.instances.coco:load_torchvision_state",
        license=f"BSD-3-Clause (torchvision); trained on {data} (CC BY 4.0 annotations)",
        description=description,
        metrics={"dataset": "COCO val2017 (published by torchvision, not measured here)",
                 **weights_enum.meta["_metrics"]["COCO-val2017"]},
        class_names=class_names,
    ))


_register_torchvision(
    "maskrcnn-r50-fpn-v2-coco", "core.instances.coco:maskrcnn_r50_fpn_v2_coco",
    MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    data="COCO",
    description="torchvision's Mask R-CNN v2 (ResNet-50-FPN, Li et al. 2021 recipe) trained on COCO: "
                "boxes, classes and masks for 80 kinds of object.",
    class_names=COCO_CLASSES,
)
_register_torchvision(
    "keypointrcnn-r50-fpn-coco", "core.instances.coco:keypointrcnn_r50_fpn_coco",
    KeypointRCNN_ResNet50_FPN_Weights.COCO_V1,
    data="COCO person keypoints",
    description="torchvision's Keypoint R-CNN (ResNet-50-FPN) trained on COCO: a box and 17 body landmarks "
                "(nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles) per person; no masks.",
    class_names=("person",),
)
