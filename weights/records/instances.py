"""Instance segmentation: the CamVid Mask R-CNN trained by the project on the frozen ImageNet VGG-19.

The block between RELEASE markers is written by ``python -m core.instances release``
(sha256 and val metrics of the shipped file); edit the rest by hand.
"""

from core.instances.camvid import INSTANCE_CLASSES
from weights.records.backbones import VGG19_CAFFE_FP16
from weights.registry import ModelRecord, ProjectFile, register

# RELEASE maskrcnn-vgg19-camvid BEGIN
MASKRCNN_SHA256 = '8f3963b76fe1340a5d5c456f17edd02e6490e06f8669ec203db488318d2b10fa'
MASKRCNN_METRICS = {'dataset': 'CamVid val (101 frames), instances = connected components',
 'mask_AP': 0.3043,
 'mask_AP50': 0.632,
 'box_AP': 0.3367,
 'box_AP50': 0.6552,
 'per_class': {'car': {'box_AP50': 0.5785, 'mask_AP': 0.3553, 'mask_AP50': 0.619},
               'pedestrian': {'box_AP50': 0.5343, 'mask_AP': 0.1533, 'mask_AP50': 0.4485},
               'bicyclist': {'box_AP50': 0.8526, 'mask_AP': 0.4043, 'mask_AP50': 0.8284}},
 'epochs': 20}
# RELEASE maskrcnn-vgg19-camvid END

register(ModelRecord(
    name="maskrcnn-vgg19-camvid",
    task="instances",
    builder="core.instances.maskrcnn:maskrcnn_vgg19_camvid",
    source=ProjectFile("maskrcnn-vgg19-camvid.safetensors"),
    sha256=MASKRCNN_SHA256,
    state_loader="core.instances.maskrcnn:load_maskrcnn_vgg19_state",
    # The frozen ImageNet encoder is not shipped: it is the vgg19-caffe file, resolved like any weights.
    extra_files=(VGG19_CAFFE_FP16,),
    license="MIT (project code; heads trained on CamVid); encoder VGG-19, CC BY 4.0",
    description="Mask R-CNN (torchvision's, one stride-8 level) for CamVid's cars, pedestrians and bicyclists on the "
                "frozen ImageNet VGG-19 up to relu4_4; RPN, box and mask heads trained by the project, fp16.",
    metrics=MASKRCNN_METRICS,
    card="maskrcnn-vgg19-camvid.md" if MASKRCNN_SHA256 else None,  # `release` writes the card with the weights
    # The detector's own transform normalises (Caffe mean, 0-255, BGR inside the backbone).
    input_size=(360, 480),
    class_names=INSTANCE_CLASSES,
))
