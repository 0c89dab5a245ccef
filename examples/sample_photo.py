"""Write a real portrait photo (scikit-image's public-domain `astronaut`) to try the pipeline on.

    python examples/sample_photo.py out/astronaut.png
"""

import sys
from pathlib import Path

from PIL import Image
from skimage import data


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "astronaut.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
