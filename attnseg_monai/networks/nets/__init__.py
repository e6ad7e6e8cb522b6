"""Public networks, one per file. Importing this package registers them in :mod:`attnseg_monai.networks.registry`."""

from __future__ import annotations

from .danie import *  # noqa: F401,F403
from .focal_attention_unet import *  # noqa: F401,F403
from .grid_attention_unet import *  # noqa: F401,F403
from .han_net import *  # noqa: F401,F403
from .mcsa_unet import *  # noqa: F401,F403
from .monai_network import *  # noqa: F401,F403
from .unet3plus import *  # noqa: F401,F403
