"""Face models: dlib's detector landmarks and ResNet (PyPI ``face-recognition-models``) and a FaceNet from the Hub."""

from weights.registry import HubFile, ModelRecord, PackageFile, register

_PKG = dict(package="face_recognition_models", pip_name="face-recognition-models")
_DLIB_LICENSE = "Boost Software License (dlib); models CC0 (Davis King, face-recognition-models)"

register(ModelRecord(
    name="face-dlib-landmarks5",
    task="faces",
    description="dlib's HOG frontal face detector with its 5-point landmark predictor (eye corners, nose).",
    builder="core.faces.detection:build_dlib_detector",
    builder_takes_path=True,
    source=PackageFile(path="models/shape_predictor_5_face_landmarks.dat", **_PKG),
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    license=_DLIB_LICENSE,
    card="face-dlib-resnet.md",
))

register(ModelRecord(
    name="face-dlib-resnet",
    task="faces",
    description="dlib's ResNet-29 face embedding (128-D), trained with a metric loss on ~3 million faces.",
    builder="core.faces.dlib_resnet:build_dlib_resnet",
    builder_takes_path=True,
    source=PackageFile(path="models/dlib_face_recognition_resnet_model_v1.dat", **_PKG),
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    license=_DLIB_LICENSE,
    input_size=(150, 150),
    # dlib's published operating point is Euclidean 0.6, i.e. 0.36 on the squared distance.
    metrics={"dataset": "LFW (published by dlib)", "accuracy": 0.9938, "threshold_sq_l2": 0.36,
             # measured by this project: 190 labelled pairs of ../shared/data/faces at tau 0.36 (see the card)
             "accuracy_shared_pairs": 0.9947},
    card="face-dlib-resnet.md",
))

register(ModelRecord(
    name="face-facenet-vggface2",
    task="faces",
    description="FaceNet-style InceptionResnetV1 (512-D) trained on VGGFace2 (Tim Esler's facenet-pytorch port).",
    builder="core.faces.inception_resnet:inception_resnet_v1",
    # py-feat republishes facenet-pytorch's VGGFace2 weights on the Hub (MIT). The Hub is not
    # reachable from the build machine, so the file's sha256 is not pinned yet.
    source=HubFile("py-feat/facenet", "model.safetensors", "c42f4c2771b043bb5c461093664d016ff4298224"),
    sha256=None,
    state_loader="core.faces.inception_resnet:load_facenet_state",
    license="MIT (facenet-pytorch, py-feat)",
    input_size=(160, 160),
    # facenet-pytorch's fixed_image_standardization: (x * 255 - 127.5) / 128.
    mean=(0.5, 0.5, 0.5),
    std=(128 / 255, 128 / 255, 128 / 255),
    # Unit-length embeddings; L2 ~ 1.1 is facenet's usual operating point on LFW.
    metrics={"dataset": "LFW (published by facenet-pytorch)", "accuracy": 0.9965, "threshold_sq_l2": 1.21},
    card="face-facenet-vggface2.md",
))
