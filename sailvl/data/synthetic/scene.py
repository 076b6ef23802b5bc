"""Scenes: the exact ground truth of one synthetic image, sampled before anything is drawn or written.

A scene places shapes (and at most one word) in the cells of a 3x3 grid, one item per cell, so that items never
touch: every fact (colour, shape, count, position) can be read back from the pixels. Everything here is pure.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon")
# Saturated colours far from the backgrounds and from the (black) text, so a pixel's colour names its item.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (22, 163, 74),
    "blue": (37, 99, 235),
    "yellow": (234, 179, 8),
    "orange": (249, 115, 22),
    "purple": (147, 51, 234),
    "pink": (236, 72, 153),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "light gray": (229, 231, 235),
    "cream": (254, 249, 231),
}
TEXT_COLOUR = ("black", (17, 17, 17))
# Row-major names of the 3x3 grid cells; the index of a name is its cell.
POSITIONS = (
    "top left",
    "top center",
    "top right",
    "middle left",
    "center",
    "middle right",
    "bottom left",
    "bottom center",
    "bottom right",
)
SIZES = ("small", "large")
# Short words to render: none is a colour, a shape, a size or a position word, so captions stay unambiguous.
WORDS = (
    "CAT", "DOG", "SUN", "MOON", "STOP", "OPEN", "MAP", "KEY", "BOOK", "FISH", "TREE", "BIRD", "CAKE", "BOAT",
    "RAIN", "SNOW", "FIRE", "WIND", "GOLD", "SALT", "MILK", "RICE", "LAMP", "DOOR", "ROAD", "SHIP", "WOLF", "BEAR",
    "FROG", "LION", "APPLE", "HOUSE", "RIVER", "CLOUD", "PLANT", "TRAIN", "CHAIR", "TABLE", "PIANO", "ROBOT",
    "ZEBRA", "MANGO", "LEMON", "OCEAN", "STORM", "NORTH", "SOUTH", "EAST", "WEST", "HELLO", "SHOP", "EXIT",
    "PARK", "CITY", "FARM", "JAZZ", "QUIZ", "VOTE", "WAVE", "YARN",
)  # fmt: skip
_SCALE = {"small": (0.34, 0.48), "large": (0.64, 0.84)}  # side of a shape as a share of its cell's shorter side


@dataclass(frozen=True)
class Item:
    """A shape, or with `shape == "word"` a rendered word, in one cell of the grid."""

    shape: str
    colour: str
    size: str
    position: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive) of the shape's bounding box; the cell for a word
    text: str = ""

    @property
    def cell(self) -> tuple[int, int]:
        """(row, column) in the grid, 0 at the top left."""
        return divmod(POSITIONS.index(self.position), 3)


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    background: str
    shapes: tuple[Item, ...]
    word: Item | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-native (lists, not tuples), so a record's meta is the same after a trip through any file format."""
        data: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        def item(d: dict[str, Any]) -> Item:
            return Item(**{**d, "bbox": tuple(d["bbox"])})

        word = data.get("word")
        return cls(
            width=data["width"],
            height=data["height"],
            background=data["background"],
            shapes=tuple(item(d) for d in data["shapes"]),
            word=item(word) if word else None,
        )

    def groups(self) -> list[tuple[str, str, list[Item]]]:
        """(colour, shape, items) for each kind of shape present, in reading order of its first item."""
        by_kind: dict[tuple[str, str], list[Item]] = {}
        for it in sorted(self.shapes, key=lambda s: POSITIONS.index(s.position)):
            by_kind.setdefault((it.colour, it.shape), []).append(it)
        return [(colour, shape, items) for (colour, shape), items in by_kind.items()]

    def count(self, *, colour: str | None = None, shape: str | None = None) -> int:
        return sum(1 for s in self.shapes if colour in (None, s.colour) and shape in (None, s.shape))

    def at(self, position: str) -> Item | None:
        items = [*self.shapes, *([self.word] if self.word else [])]
        return next((it for it in items if it.position == position), None)

    def facts(self) -> list[dict[str, Any]]:
        """Every true statement a caption can make, in the grammar `language.extract_facts` reads."""
        facts: list[dict[str, Any]] = [{"type": "total", "count": len(self.shapes)}]
        for colour, shape, items in self.groups():
            facts.append({"type": "has", "colour": colour, "shape": shape})
            facts.append({"type": "count", "colour": colour, "shape": shape, "count": len(items)})
            facts.extend({"type": "at", "colour": colour, "shape": shape, "position": it.position} for it in items)
        if self.word:
            facts.append({"type": "word", "text": self.word.text})
        return facts


def sample_scene(
    rng: random.Random, width: int, height: int, *, word: bool | None = None, max_shapes: int = 6
) -> Scene:
    """A random scene of 1..max_shapes shapes; `word` forces a rendered word in or out (None: 40% of scenes)."""
    has_word = rng.random() < 0.4 if word is None else word
    count = rng.choices(range(1, max_shapes + 1), weights=[3, 4, 4, 3, 2, 2][:max_shapes])[0]
    cells = rng.sample(range(9), count + has_word)
    # A small palette per scene makes repeated kinds (two red circles) common, which counting questions need.
    colours = rng.sample(sorted(COLOURS), rng.randint(1, 3))
    shapes = rng.sample(SHAPES, rng.randint(1, 3))
    cw, ch = width / 3, height / 3
    items = []
    for cell in cells[:count]:
        size = rng.choice(SIZES)
        side = int(min(cw, ch) * rng.uniform(*_SCALE[size]))
        row, col = divmod(cell, 3)
        # Jitter within the middle of the cell: the position stays unambiguous to the eye, and at least 2 px
        # separate a shape from its cell's border so neighbours never touch.
        x0 = int(col * cw) + 2 + _jitter(rng, int(cw) - side - 4)
        y0 = int(row * ch) + 2 + _jitter(rng, int(ch) - side - 4)
        bbox = (x0, y0, x0 + side - 1, y0 + side - 1)
        items.append(Item(rng.choice(shapes), rng.choice(colours), size, POSITIONS[cell], bbox))
    word_item = None
    if has_word:
        row, col = divmod(cells[-1], 3)
        cell_box = (int(col * cw), int(row * ch), int((col + 1) * cw) - 1, int((row + 1) * ch) - 1)
        word_item = Item("word", TEXT_COLOUR[0], "small", POSITIONS[cells[-1]], cell_box, rng.choice(WORDS))
    return Scene(width, height, rng.choice(sorted(BACKGROUNDS)), tuple(items), word_item)


def _jitter(rng: random.Random, slack: int) -> int:
    """An offset in [0, slack] drawn from its middle half."""
    slack = max(0, slack)
    return slack // 4 + rng.randint(0, slack // 2)


def absent_kinds(scene: Scene) -> list[tuple[str, str]]:
    """(colour, shape) pairs not in the scene; those sharing a colour or a shape with a present one come first."""
    present = {(s.colour, s.shape) for s in scene.shapes}
    colours, shapes = {c for c, _ in present}, {s for _, s in present}
    absent = [(c, s) for c in sorted(COLOURS) for s in SHAPES if (c, s) not in present]
    return sorted(absent, key=lambda k: not (k[0] in colours or k[1] in shapes))
