"""The SDPA kernel choices of the attention layers (smr_core.attention), importable without torch.

Configs, CLIs and the flow form name the choice; one definition keeps them in step.
"""

from typing import Literal, get_args

AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]
ATTENTION_BACKENDS: tuple[str, ...] = get_args(AttentionBackend)
