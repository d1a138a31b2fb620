"""Instance segmentation: Mask R-CNN for CamVid's objects (train, evaluate, predict) and RoI Pool vs RoI Align."""
