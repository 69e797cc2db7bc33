"""The package version, in a module of its own so any layer may read it."""

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    """What selection.json records of the software that made it. Imported here, not at the
    top, so reading ``__version__`` stays free of the heavy libraries."""
    import platform

    import faiss
    import numpy as np
    import PIL
    import torch
    import torchvision

    return {"condpretrain": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "faiss": faiss.__version__, "pillow": PIL.__version__}
