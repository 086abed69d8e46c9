"""Build the 4-class "own photos" folder that docs/own-data.md measures on.

    python docs/scripts/make_photo_folder.py $CNNEDGE_DATA/cifar10-images/test /tmp/photos

From the CIFAR-10 *test* JPEGs (the reference checkpoint never saw them): classes automobile,
cat, dog and ship, 1,000 each, every image upscaled to its own random size between 48 and 200
pixels per side (aspect ratios vary), saved as JPEG or PNG at random; 800 per class go to
<out>/train/<class>/, 200 to <out>/test/<class>/. Seeded: the same folder every time.
"""

import sys
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("automobile", "cat", "dog", "ship")


def main(src: str, out: str, per_class: int = 1000, n_train: int = 800) -> None:
    rng = np.random.default_rng(0)
    for c in CLASSES:
        files = sorted((Path(src) / c).glob("*.jpg"))[:per_class]
        order = rng.permutation(len(files))
        for rank, i in enumerate(order):
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            h, w = int(rng.integers(48, 201)), int(rng.integers(48, 201))
            big = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
            split = "train" if rank < n_train else "test"
            folder = Path(out) / split / c
            folder.mkdir(parents=True, exist_ok=True)
            ext = ".png" if rng.random() < 0.5 else ".jpg"
            cv2.imwrite(str(folder / f"{files[i].stem}{ext}"), big)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
