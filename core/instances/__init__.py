"""Instance segmentation: RoI Pool vs RoI Align (Mask R-CNN itself is still to come)."""
