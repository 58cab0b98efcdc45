"""pytest at the repository root: the doctests of lnlib.torch need PyTorch, which is optional."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["lnlib/torch.py"]
