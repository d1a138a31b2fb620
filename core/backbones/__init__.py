"""ImageNet backbones shared by several tasks (style transfer, visualisation, encoders)."""
