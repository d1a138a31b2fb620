"""CamVid (SegNet's 480x360 version): its 11 classes in label-map order, their colours, the lecture's table order,
the train split's pixel counts, and the classes the instance models detect."""

#: Class index -> name, the order of the SegNet-prepared label maps (index 11 is void).
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Sidewalk", "Tree",
    "Sign", "Fence", "Car", "Pedestrian", "Bicyclist",
)
#: Label value for unlabelled pixels: ignored in the loss and in every metric.
VOID = 11
#: The colours of the CamVid/SegNet palette, one RGB triple per class.
CAMVID_COLORS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
#: Column order of the lecture's (and SegNet paper's) CamVid table.
LECTURE_ORDER = (
    "Building", "Tree", "Sky", "Car", "Sign", "Road", "Pedestrian", "Fence", "Pole", "Sidewalk", "Bicyclist",
)
#: Pixel counts per class index 0..11 in CamVid train (from the data's README).
TRAIN_PIXEL_COUNTS = (
    10682767, 14750079, 623349, 20076880, 2845085, 6166762, 743859, 714595,
    3719877, 405385, 184967, 2503995,
)
#: Detection labels of the CamVid instance models: 0 is background, then these CamVid classes
#: (torchvision's convention), named like COCO's.
INSTANCE_CLASSES = ("car", "pedestrian", "bicyclist")
