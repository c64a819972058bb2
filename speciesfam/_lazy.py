"""The one place that imports the heavy frameworks, in an order that cannot crash.

TensorFlow imported before torchvision (or anything that loads triton) segfaults the process: triton's
bundled LLVM clashes with TensorFlow's (../shared/STACK-FACTS.md). speciesfam never needs both in one
process -- embedding actors import torch, training workers and export import TensorFlow, the driver
imports neither -- so these helpers refuse the dangerous order with a clear error instead of a segfault.
"""

from __future__ import annotations

import sys
from types import ModuleType


def torch_modules() -> tuple[ModuleType, ModuleType]:
    """Import torch and open_clip, refusing when TensorFlow is already loaded in this process."""
    if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
        raise RuntimeError(
            "TensorFlow is already imported in this process; importing torchvision/open_clip after it "
            "segfaults (triton and TensorFlow ship clashing LLVM builds). Run embedding in its own process "
            "(speciesfam does this through Ray actors) or import speciesfam._lazy.torch_modules() first."
        )
    import torch
    import open_clip

    return torch, open_clip


def tensorflow() -> ModuleType:
    """Import TensorFlow quietly (C++ INFO/WARNING logs off unless the user set TF_CPP_MIN_LOG_LEVEL)."""
    import os

    from .console import quiet_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get(OWN_TEMP):  # (Ray Train's workers have imported TensorFlow already: made there once)
        own_temp_folder()
    with quiet_stderr("TensorFlow start-up"):  # its absl lines ignore TF_CPP_MIN_LOG_LEVEL (console.py)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe, here rather than at the first op
    return tf


OWN_TEMP = "SPECIESFAM_OWN_TEMP"  # set in Ray's processes (raycluster.init_ray): see own_temp_folder
_own_temp: dict[int, str] = {}  # process id -> its folder, once made


def own_temp_folder() -> str:
    """Make this process's temporary files go to a folder of its own, ``TMP/speciesfam-UID/PID``, and remove
    each such folder of a process no longer running. TensorFlow's autograph writes a file per traced function
    there and removes it at exit, but Ray ends its worker processes without exit handlers: every trial left its
    files (``/tmp`` held 1,900 ``__autograph_generated_file*.py`` after a day of tests). Made once per process."""
    import atexit
    import os
    import shutil
    import tempfile

    if os.getpid() in _own_temp:
        return _own_temp[os.getpid()]
    base = os.path.join(tempfile.gettempdir(), f"speciesfam-{getattr(os, 'getuid', lambda: 'user')()}")
    os.makedirs(base, exist_ok=True)
    for name in os.listdir(base):
        if name.isdigit() and int(name) != os.getpid() and not _running(int(name)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    own = os.path.join(base, str(os.getpid()))
    os.makedirs(own, exist_ok=True)
    tempfile.tempdir = own
    atexit.register(shutil.rmtree, own, True)
    _own_temp[os.getpid()] = own
    return own


def _running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: running
        return True
    return True


def keras() -> ModuleType:
    """Import Keras 3 on the TensorFlow backend (legacy tf_keras is not used anywhere in speciesfam)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    tensorflow()
    import keras

    if int(keras.__version__.split(".")[0]) < 3:
        raise RuntimeError(f"speciesfam needs Keras >= 3, found {keras.__version__}; pip install 'keras>=3'")
    return keras
