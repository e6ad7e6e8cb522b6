"""Print a markdown table of every registered network's parameters and FLOPs per pixel/voxel at default settings.

Usage::

    python benchmarks/describe_networks.py            # 2D at 256x256 (3 -> 2 channels), 3D at 64^3 (1 -> 2)
"""

from __future__ import annotations

import argparse

import torch

from attnseg_monai import describe_network, get_network, list_networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size2d", type=int, default=256)
    parser.add_argument("--size3d", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"| network | params 2D | kFLOP/pixel at {args.size2d}² | params 3D | kFLOP/voxel at {args.size3d}³ |")
    print("|---|---:|---:|---:|---:|")
    for name in list_networks():
        d2 = describe_network(get_network(name, spatial_dims=2, in_channels=3, out_channels=2), (args.size2d,) * 2)
        d3 = describe_network(get_network(name, spatial_dims=3, in_channels=1, out_channels=2), (args.size3d,) * 3)
        print(
            f"| `{name}` | {d2.parameters / 1e6:.2f} M | {d2.flops_per_element / 1e3:.1f} "
            f"| {d3.parameters / 1e6:.2f} M | {d3.flops_per_element / 1e3:.1f} |"
        )


if __name__ == "__main__":
    main()
