"""Semantic segmentation: FCN-8s, SegNet, ENet and U-Net on CamVid, plus data, metrics and training."""

#: The model a visitor meets first and ``predict``'s default: the one that holds best on streets it never saw (the
#: filer's frames of Frankfurt and Karlsruhe, and the proxy of ``evaluate --proxy``: README, "Streets from
#: anywhere"), at an interactive speed on a CPU. ENet is faster but paints a blue sky as Building.
DEFAULT_MODEL = "fcn8s-vgg19-camvid"

#: Where every model of this task learnt what a street is, said in one line beside the model list.
TRAINED_ON = ("All four models learnt from CamVid alone: 367 frames of Cambridge (UK) streets filmed from a car in "
              "2007-08, mostly under grey skies, so streets elsewhere score lower; FCN-8s holds up best.")
