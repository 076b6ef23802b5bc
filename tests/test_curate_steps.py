"""The pure parts of curation: prompts and verdicts of each step, image facts, signatures and the global dedup."""

from __future__ import annotations

import base64
import io
import random

import pytest
from PIL import Image

from sailvl.api.curationrun import DedupStep, FilterStep, JudgeStep, RecaptionStep, ScoreStep
from sailvl.curate import steps
from sailvl.curate.client import Completion
from sailvl.curate.dedup import Entry, PhashIndex, global_dedup
from sailvl.curate.images import REQUEST_MAX_SIDE, BadImage, data_uri, hamming, inspect_image
from sailvl.curate.report import MAX_MESSAGE_BYTES, encode_message
from sailvl.curate.signatures import image_signature, text_minhash
from sailvl.data.records import Record
from tests.curate_data import encode, picture, png

CAT = Record(id="r1", images=(png(1),), text="a cat", meta={"source": "web"})


def test_recaption_sends_the_image_and_the_alt_text_hint() -> None:
    step = RecaptionStep(model="cap", use_alt_text=True)
    messages = steps.recaption_messages(step, CAT, ["data:image/png;base64,AAAA"])
    assert isinstance(messages, list)
    assert messages[0]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert messages[0]["content"][1]["text"].endswith("may be noisy or wrong: a cat")
    plain = steps.recaption_messages(RecaptionStep(model="cap"), CAT, ["u"])
    assert isinstance(plain, list) and plain[0]["content"][1]["text"] == "Describe this image in detail."
    assert steps.recaption_messages(step, Record(id="t", text="x"), []) == steps.Verdict("rejected", "missing_image")


def test_a_caption_replaces_the_text_and_keeps_the_original() -> None:
    captioned = steps.apply_caption(CAT, Completion(" A grey cat on a mat. ", "length"), "cap")
    assert isinstance(captioned, Record)
    assert captioned.text == "A grey cat on a mat."
    assert captioned.meta == {"source": "web", "alt_text": "a cat", "caption_model": "cap", "caption_truncated": True}
    again = steps.apply_caption(captioned, Completion("Another caption.", "stop"), "cap2")
    assert isinstance(again, Record) and again.meta["alt_text"] == "a cat"
    assert CAT.meta == {"source": "web"}  # records are never mutated
    assert steps.apply_caption(CAT, Completion("  ", "stop"), "cap") == steps.Verdict("rejected", "empty_caption")


def test_judge_keeps_at_min_score_and_drops_below() -> None:
    step = JudgeStep(model="judge", min_score=3.5, criteria=["accurate"])
    messages = steps.judge_messages(step, CAT, [])
    assert isinstance(messages, list) and 'Text: """a cat"""' in messages[0]["content"][0]["text"]
    kept = steps.apply_judge(step, CAT, 3.5, "judge")
    assert isinstance(kept, Record) and kept.meta["judge"] == {"judge": 3.5}
    assert steps.apply_judge(step, CAT, 3.0, "judge") == steps.Verdict("dropped", "judge_below_min")
    assert steps.apply_judge(step, CAT, None, "judge") == steps.Verdict("rejected", "judge_unparseable")
    assert steps.judge_messages(step, Record(id="i", images=(b"x",)), []) == steps.Verdict("rejected", "missing_text")


def test_judge_reads_conversations_when_there_is_no_text() -> None:
    record = Record(id="c", conversations=[{"role": "user", "content": "<image>\nWhat is it?"},
                                           {"role": "assistant", "content": "A cat."}])  # fmt: skip
    assert steps.subject_text(record) == "user: What is it?\nassistant: A cat."


def test_scores_annotate_meta() -> None:
    step = ScoreStep(model="s", metrics=["difficulty", "novelty"])
    text = steps.score_messages(step, CAT, [])[0]["content"][0]["text"]
    assert "- difficulty: how hard" in text and "- novelty\n" in text and '{"difficulty": 3, "novelty": 3}' in text
    scored = steps.apply_scores(CAT, {"difficulty": 2.0, "novelty": 5.0})
    assert isinstance(scored, Record) and scored.meta["scores"] == {"difficulty": 2.0, "novelty": 5.0}
    assert steps.apply_scores(CAT, None) == steps.Verdict("rejected", "score_unparseable")


def test_retry_reminds_the_model_of_the_format() -> None:
    first = [steps.user_message([], "rate it")]
    retry = steps.retry_messages(first, "It is lovely.", steps.JUDGE_EXAMPLE)
    assert retry[1] == {"role": "assistant", "content": "It is lovely."}
    assert retry[2]["role"] == "user" and '{"score": 4}' in retry[2]["content"]


@pytest.mark.parametrize(
    ("rule", "record", "sides", "reason"),
    [
        ({"minChars": 6}, Record(id="x", text="a cat"), [], "filter_min_chars"),
        ({"minChars": 5}, Record(id="x", text="a cat"), [], None),
        ({"maxChars": 4}, Record(id="x", text="a cat"), [], "filter_max_chars"),
        ({"minChars": 1}, Record(id="x", images=(b"i",)), [(9, 9)], "filter_min_chars"),
        ({"require": ["image"]}, Record(id="x", text="a cat"), [], "filter_require_image"),
        ({"require": ["text"]}, Record(id="x", text="  ", images=(b"i",)), [(9, 9)], "filter_require_text"),
        ({"require": ["conversations"]}, Record(id="x", text="t"), [], "filter_require_conversations"),
        ({"minImageSide": 64}, Record(id="x", images=(b"i",)), [(100, 63)], "filter_min_image_side"),
        ({"minImageSide": 64}, Record(id="x", images=(b"i",)), [(100, 64)], None),
        ({"maxAspectRatio": 2}, Record(id="x", images=(b"i", b"j")), [(10, 10), (30, 10)], "filter_max_aspect_ratio"),
        ({"maxAspectRatio": 3}, Record(id="x", images=(b"i",)), [(30, 10)], None),
    ],
)
def test_filter(rule: dict[str, object], record: Record, sides: list[tuple[int, int]], reason: str | None) -> None:
    verdict = steps.check_filter(FilterStep.model_validate(rule), record, sides)
    assert verdict == (steps.Verdict("dropped", reason) if reason else None)


def test_image_facts_from_one_decode() -> None:
    image = picture(3, (200, 150))
    facts = inspect_image(encode(image), exact=True, phash=True)
    assert (facts.width, facts.height, facts.mime) == (200, 150, "image/png")
    assert facts.exact is not None and facts.phash is not None and facts.request_bytes is None
    webp = inspect_image(encode(image, "WEBP", lossless=True), exact=True, phash=True)
    assert webp.exact == facts.exact  # the same pixels hash alike whatever the container
    jpeg = inspect_image(encode(image, "JPEG", quality=70), phash=True)
    assert jpeg.exact is None and jpeg.phash is not None and hamming(jpeg.phash, facts.phash) <= 4
    other = inspect_image(png(4), phash=True)
    assert other.phash is not None and hamming(other.phash, facts.phash) > 10
    uri = data_uri(encode(image), facts)
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",")[1]) == encode(image)


def test_an_oversized_image_is_sent_downscaled() -> None:
    big = encode(picture(5, (4000, 1000)), "JPEG", quality=90)
    facts = inspect_image(big, phash=True, for_request=True)
    assert (facts.width, facts.height) == (4000, 1000) and facts.request_bytes is not None
    sent = Image.open(io.BytesIO(base64.b64decode(data_uri(big, facts).split(",")[1])))
    assert max(sent.size) == REQUEST_MAX_SIDE


@pytest.mark.parametrize("data", [b"", b"not an image", png(1)[:60], b"\xff\xd8\xff" + b"\x00" * 50])
def test_bytes_that_do_not_decode_are_bad_images(data: bytes) -> None:
    with pytest.raises(BadImage, match="do not decode"):
        inspect_image(data, phash=True)


def test_text_minhash_is_stable_and_ignores_case_and_punctuation() -> None:
    a = text_minhash("A red circle, next to a blue square.")
    assert a == text_minhash("a RED circle next to a blue square")
    assert a is not None and len(a) == 128 * 4
    assert text_minhash("") is None and text_minhash("  ... ") is None


def _entry(rid: str, shard: int, row: int, **signatures: object) -> Entry:
    return Entry(rid, shard, row, dict(signatures))


def test_global_dedup_keeps_the_first_by_id_whatever_the_order() -> None:
    step = DedupStep(image="exact", text="minhash", threshold=0.8)
    caption = "a small red circle in the top left corner next to a large blue square"
    entries = [
        _entry("c", 0, 0, _dedup0_exact=b"X"),
        _entry("a", 1, 0, _dedup0_exact=b"X", _dedup0_minhash=text_minhash("something else entirely")),
        _entry("b", 1, 1, _dedup0_exact=b"Y", _dedup0_minhash=text_minhash(caption)),
        _entry("d", 0, 1, _dedup0_exact=b"Z", _dedup0_minhash=text_minhash(caption + " today")),
        _entry("e", 0, 2, _dedup0_exact=b"W", _dedup0_minhash=text_minhash("two yellow stars on white")),
    ]
    expected = {(0, 0): "dedup_image", (0, 1): "dedup_text"}
    for _ in range(5):
        random.shuffle(entries)
        assert global_dedup(entries, [(0, step)]) == expected


def test_dedup_steps_apply_in_turn_to_what_the_earlier_kept() -> None:
    exact, phash = DedupStep(image="exact"), DedupStep(image="phash", phash_distance=2)
    entries = [
        _entry("a", 0, 0, _dedup0_exact=b"A", _dedup1_phash=[0b0000]),
        _entry("b", 0, 1, _dedup0_exact=b"A", _dedup1_phash=[0b1111]),  # exact copy of a: gone in step 0
        _entry("c", 0, 2, _dedup0_exact=b"C", _dedup1_phash=[0b0011]),  # 2 bits from a
        _entry("d", 0, 3, _dedup0_exact=b"D", _dedup1_phash=[0b1110]),  # 3 from a, 3 from c, 1 from b (gone)
        _entry("e", 0, 4, _dedup0_exact=b"E"),  # no image signature: nothing to compare
    ]
    assert global_dedup(entries, [(0, exact), (1, phash)]) == {(0, 1): "dedup_image", (0, 2): "dedup_image"}


@pytest.mark.parametrize("distance", [0, 1, 4, 10, 63, 64])
def test_phash_index_finds_exactly_the_hashes_within_distance(distance: int) -> None:
    rng = random.Random(distance)
    index = PhashIndex(distance)
    stored = [rng.getrandbits(64) for _ in range(200)]
    for value in stored:
        index.add([value])
    for _ in range(300):
        base = rng.choice(stored)
        probe = base
        for bit in rng.sample(range(64), rng.randint(0, min(64, distance + 2))):
            probe ^= 1 << bit
        truth = any(hamming(probe, s) <= distance for s in stored)
        assert index.is_duplicate([probe]) == truth


def test_multi_image_signatures() -> None:
    one, two = inspect_image(png(1), exact=True, phash=True), inspect_image(png(2), exact=True, phash=True)
    exact = image_signature(0, DedupStep(image="exact"), [one, two])["_dedup0_exact"]
    assert exact != image_signature(0, DedupStep(image="exact"), [two, one])["_dedup0_exact"]
    assert image_signature(3, DedupStep(image="phash"), [one, two]) == {"_dedup3_phash": [one.phash, two.phash]}
    assert image_signature(0, DedupStep(image="phash"), []) == {"_dedup0_phash": None}


def test_termination_messages_fit_in_4_kib() -> None:
    many = {f"reason_{i:04d}_{'x' * 40}": i + 1 for i in range(200)}
    text = encode_message({"worker": 0, "in": 1, "kept": 0, "dropped": many, "rejected": {}})
    assert len(text.encode()) <= MAX_MESSAGE_BYTES
    assert '"other":' in text and f'"reason_0199_{"x" * 40}":200' in text
    small = {"worker": 1, "shards": 2, "in": 3, "kept": 3, "dropped": {}, "rejected": {}}
    assert encode_message(small) == '{"worker":1,"shards":2,"in":3,"kept":3,"dropped":{},"rejected":{}}'


def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import sailvl.curate.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(BadImage, match="over 10000 pixels"):
        inspect_image(png(1, (101, 100)))
    assert inspect_image(png(1, (100, 100))).width == 100
