"""Semantic segmentation: FCN-8s, SegNet, ENet and U-Net on CamVid, plus data, metrics and training."""
