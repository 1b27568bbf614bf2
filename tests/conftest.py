"""Keep every test out of ``~`` and off the network."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="findvl-tests-")
for var, sub in (
    ("HF_HOME", "hf"),
    ("MPLCONFIGDIR", "mpl"),
    ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
    ("GRADIO_TEMP_DIR", "gradio"),
):
    os.environ.setdefault(var, os.path.join(_TMP, sub))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
