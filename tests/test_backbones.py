"""The encoder registry: VGG-19's named taps, their channels and strides, freezing, ImageNet weights from a record."""

import pytest
import torch

import weights
from core.backbones import create_encoder
from core.backbones.vgg import VGG19_LAYERS, VGGEncoder, pretrained_state

torch.set_num_threads(1)


def test_taps_come_in_network_order_once_and_the_encoder_stops_at_the_deepest():
    encoder = create_encoder("vgg19", taps=("pool2", "relu1_2", "conv1_1", "relu1_2")).eval()
    assert encoder.taps == ("conv1_1", "relu1_2", "pool2")
    assert len(encoder) == VGG19_LAYERS["pool2"] + 1 == 10  # block 3 onwards is never built into it
    assert encoder.feature_info.channels() == [64, 64, 128] and encoder.feature_info.reduction() == [1, 1, 4]
    assert encoder.output_stride == 4
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        conv1_1, relu1_2, pool2 = encoder(x)
        assert torch.equal(conv1_1, encoder[0](x))  # a conv tap is not rectified by the in-place ReLU after it
    assert (conv1_1 < 0).any() and (relu1_2 >= 0).all()
    assert relu1_2.shape == (1, 64, 32, 48) and pool2.shape == (1, 128, 8, 12)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown encoder 'vgg99'"):
        create_encoder("vgg99")
    with pytest.raises(ValueError, match="relu6_1"):
        create_encoder("vgg19", taps=("relu6_1",))
    with pytest.raises(ValueError, match="at least one tap"):
        create_encoder("vgg19", taps=())


def test_a_frozen_encoder_passes_gradients_to_its_input_only():
    trainable = create_encoder("vgg19", taps=("relu2_1",))
    assert all(p.requires_grad for p in trainable.parameters())
    frozen = create_encoder("vgg19", taps=("relu2_1",), frozen=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    frozen(x)[0].sum().backward()
    assert x.grad is not None and all(p.grad is None for p in frozen.parameters())


def test_an_encoder_over_loaded_layers_shares_them():
    features = VGGEncoder(("pool5",))
    encoder = VGGEncoder(("relu4_4",), layers=features)
    assert len(encoder) == 27 and encoder[25] is features[25]
    with pytest.raises(ValueError, match="deeper"):
        VGGEncoder(("pool5",), layers=encoder)


def test_imagenet_weights_come_from_the_record_through_the_resolver(shared_weights):
    caffe = weights.create("vgg19-caffe")
    encoder = create_encoder("vgg19", taps=("relu4_4",), frozen=True).load_pretrained("vgg19-caffe")
    assert torch.equal(encoder[25].weight, caffe[25].weight)
    assert max(int(k.split(".")[0]) for k in pretrained_state("vgg19-caffe", up_to="relu4_4")) == 25  # conv4_4
    q8 = create_encoder("vgg19", taps=("relu4_4",)).load_pretrained("vgg19-caffe-q8")
    # The fp16 file is the 8-bit file's table lookup, rounded to fp16.
    assert torch.allclose(q8[25].weight, encoder[25].weight, rtol=1e-3, atol=1e-6)


def test_forward_from_recomputes_the_taps_after_a_layer_from_the_tap_before_it():
    encoder = VGGEncoder(("relu3_4", "pool4", "relu5_2", "pool5")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = encoder(x)
        # From conv5_1 on, out of the cached pool4 (the later taps given or not): the same four maps.
        for given in (taps, taps[:2]):
            again = encoder.forward_from(given, "conv5_1")
            assert len(again) == 4 and all(torch.equal(a, t) for a, t in zip(again, taps))
    with pytest.raises(ValueError, match="conv5_2"):
        encoder.forward_from(taps, "conv5_2")  # relu5_1, the layer before it, is not a tap


def test_unfreeze_from_lets_only_the_tail_train():
    encoder = VGGEncoder(("pool5",), frozen=True)
    tail = encoder.unfreeze_from("conv5_1")
    assert len(tail) == 8  # conv5_1..conv5_4: weight and bias each
    trainable = [i for i, layer in enumerate(encoder) for p in layer.parameters() if p.requires_grad]
    assert sorted(set(trainable)) == [28, 30, 32, 34]
