"""The rules of the tile settings (--tile, --overlap, --batch), without torch.

The command line checks them before torch is imported (a fraction of a second instead of
seconds, for a typo); `engine.TileConfig` checks them again for every other caller.
"""

from __future__ import annotations

from ficli.errors import ConfigError


def min_tile(overlap: int, multiple: int = 4) -> int:
    """Smallest tile for an overlap: 3 x overlap shared with a neighbour, plus 4 grid steps."""
    return 3 * overlap + 4 * multiple


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_tiling(tile: int, overlap: int, batch: int, multiple: int = 4) -> int:
    """ConfigError naming the option for settings no tiling can use; returns the overlap rounded
    up to `multiple` (what is used)."""
    if multiple < 1:
        raise ConfigError(f"the tile grid multiple must be at least 1, got {multiple}")
    if overlap < 0:
        raise ConfigError(f"--overlap must be 0 or more pixels, got {overlap}")
    overlap = round_up(overlap, multiple)
    if tile <= 0 or tile % multiple:
        raise ConfigError(f"--tile must be a positive multiple of {multiple}, got {tile}")
    if tile < min_tile(overlap, multiple):
        raise ConfigError(
            f"--tile {tile} is too small for --overlap {overlap}: neighbouring tiles "
            f"share 3 x overlap pixels, so the tile must be at least "
            f"{min_tile(overlap, multiple)}; raise --tile or lower --overlap"
        )
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    return overlap
