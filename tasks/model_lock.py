"""One model load (or export) at a time in this process.

transformers' `from_pretrained` / `from_config` switch process-wide state while they build a model
(weight initialisation off, parameters created on the meta device) and restore it afterwards. Two
threads loading at once (the pipeline runs each hardware kind in a thread of its own) can restore it
in the wrong order and leave every later model with meta tensors ("Cannot copy out of meta tensor").
Exporters (torch.export, TorchScript tracing) keep process-wide tracing state as well.
"""

import threading

MODEL_LOADING = threading.RLock()
