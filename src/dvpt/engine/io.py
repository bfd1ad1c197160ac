"""Run-folder files (written atomically through ``dvpt.files``) and the versions recorded with a run."""
from __future__ import annotations

import platform
import sys
from typing import Any

# One writer and one reader for the whole package live in ``dvpt.files``; run-folder code
# imports them from here.
from ..files import (MAX_YAML_BYTES, atomic_write, load_yaml_text, read_json, read_yaml, write_bytes,  # noqa: F401
                     write_json, write_text, write_yaml)


__all__ = ["MAX_YAML_BYTES", "atomic_write", "environment", "load_yaml_text", "read_json", "read_yaml",
           "write_bytes", "write_json", "write_text", "write_yaml"]


def environment() -> dict[str, Any]:
    """Versions that can change a number: written into every run folder."""
    import numpy
    import torch
    import torchvision
    import transformers

    from ..version import __version__

    return {
        "dvpt": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "argv": sys.argv,
    }
