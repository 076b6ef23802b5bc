"""One record of `synthetic://shapes`, computed from (seed, split, index) alone.

Each record draws from its own random stream keyed by the seed, the split and the index, so any record can be made
without the others (random access, any number of workers), the same key always gives the same bytes, and records
of different splits or indices are independent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from sailvl.api.benchmarks import SYNTHETIC_BENCHMARKS
from sailvl.data.records import Record
from sailvl.data.synthetic.benchmarks import benchmark_item, prompt_of
from sailvl.data.synthetic.dialogues import conversation, instruction, knowledge, preference, text_passage
from sailvl.data.synthetic.language import alt_text, reference_caption
from sailvl.data.synthetic.render import encode, render
from sailvl.data.synthetic.scene import Scene, sample_scene
from sailvl.data.synthetic.spec import SyntheticSpec
from sailvl.data.tokens import IMAGE_PLACEHOLDER

GENERATOR = "synthetic://shapes"


def record_rng(seed: int, split: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED and of the platform.
    return random.Random(f"sailvl-shapes/{seed}/{split}/{index}")


def scene_for(spec: SyntheticSpec, index: int, rng: random.Random) -> Scene:
    width = rng.randint(spec.min_side, spec.max_side)
    height = rng.randint(spec.min_side, spec.max_side)
    return sample_scene(rng, width, height, word=True if spec.split == "shapes_ocr" else None)


def record_id(spec: SyntheticSpec, index: int) -> str:
    return f"shapes-{spec.seed}-{spec.split}-{index:08d}"


def generate(spec: SyntheticSpec, index: int) -> Record:
    """Record `index` (0 <= index < spec.n) of the split `spec.split`."""
    if not 0 <= index < spec.n:
        raise IndexError(f"record index must be in [0, {spec.n}) for {spec.uri()}; found {index}")
    if spec.split == "test":
        raise ValueError(
            "split=test names the benchmark items of an EvalSuite; read one benchmark's records with "
            f"split=<{'|'.join(SYNTHETIC_BENCHMARKS)}>"
        )
    rng = record_rng(spec.seed, spec.split, index)
    scene = scene_for(spec, index, rng)
    meta = {"generator": GENERATOR, "seed": spec.seed, "split": spec.split, "index": index}
    rid = record_id(spec, index)
    if spec.split == "text":
        return Record(id=rid, text=text_passage(scene, rng), meta=meta)
    meta["scene"] = scene.to_dict()
    image = encode(render(scene), spec.encoding)
    text, conversations = None, None
    if spec.split == "alt":
        text, meta["alt_kind"] = alt_text(scene, rng)
    elif spec.split == "reference":
        text = reference_caption(scene, rng)
        meta["facts"] = scene.facts()
    elif spec.split in SYNTHETIC_BENCHMARKS:
        item = benchmark_item(spec.split, scene, index, rng)
        meta["item"] = item
        conversations = conversation([(prompt_of(spec.split, item), str(item["answer"]))])
    else:
        stage = {"sft-knowledge": knowledge, "sft-instruction": instruction, "sft-preference": preference}[spec.split]
        conversations = stage(scene, rng)
        meta["difficulty"] = ("sft-knowledge", "sft-instruction", "sft-preference").index(spec.split) + 1
    return Record(id=rid, images=(image,), text=text, conversations=conversations, meta=meta)


def text_corpus(scenes: int, seed: int = 0) -> Iterator[str]:
    """Every kind of text the generator writes (alt text, captions, all conversation turns, passages, benchmark
    questions) for `scenes` scenes, without drawing any image: what the tiny tokenizer is trained on."""
    for index in range(scenes):
        rng = record_rng(seed, "corpus", index)
        scene = sample_scene(rng, 224, 224, word=index % 2 == 0)
        yield alt_text(scene, rng)[0]
        yield reference_caption(scene, rng)
        for stage in (knowledge, instruction, preference):
            for turn in stage(scene, rng):  # as ChatML frames them, minus the special tokens
                yield f"{turn['role']}\n{turn['content'].removeprefix(IMAGE_PLACEHOLDER + chr(10))}"
        yield text_passage(scene, rng)
        for benchmark in SYNTHETIC_BENCHMARKS:
            if benchmark == "shapes_ocr" and scene.word is None:
                continue
            item = benchmark_item(benchmark, scene, index, rng)
            yield prompt_of(benchmark, item)
            yield str(item["answer"])
