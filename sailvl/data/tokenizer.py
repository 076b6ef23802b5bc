"""The tiny preset's tokenizer: byte-level BPE trained on the synthetic generator's text, built the same every time.

The merges are learned here in a few lines of plain Python rather than by `tokenizers`' trainer, whose tie-breaking
between equally frequent pairs is not specified: ties go to the lexicographically smallest pair, so the vocabulary,
and the serialized tokenizer, are identical bytes on every machine. Building takes a fraction of a second, so
nothing is cached on disk.

Layout (Qwen2-like): ids 0-255 the bytes, then the merges, then the special tokens: ChatML (`<|endoftext|>`,
`<|im_start|>`, `<|im_end|>`) and InternVL's image tokens (`<img>`, `</img>`, `<IMG_CONTEXT>`, and `<video>`, which
transformers' InternVL processor requires). `<|endoftext|>` pads, `<|im_end|>` ends a turn and a generation.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from sailvl.data.chat import CHAT_TEMPLATE
from sailvl.data.synthetic.generator import text_corpus
from sailvl.data.tokens import END_OF_TEXT, IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START

VIDEO_TOKEN = "<video>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT, VIDEO_TOKEN)
VOCAB_SIZE = 1024  # bytes + merges + special tokens, exactly: small enough for a ~1M-parameter model
CORPUS_SCENES = 300
CORPUS_SEED = 0


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer (a copy: callers may change it, e.g. add tokens, without affecting others)."""
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=_backend(),
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "start_image_token": IMG_START,
            "end_image_token": IMG_END,
            "context_image_token": IMG_CONTEXT,
            "video_token": VIDEO_TOKEN,
        },
    )


@lru_cache(maxsize=1)
def _backend() -> Tokenizer:
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = _pieces(pre_tokenizer)
    alphabet = _byte_alphabet()
    merges = learn_merges(words, VOCAB_SIZE - len(alphabet) - len(SPECIAL_TOKENS))
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


def _pieces(pre_tokenizer: pre_tokenizers.ByteLevel) -> Counter[str]:
    """Pre-tokenized pieces of the corpus and their counts.

    Texts are cut at spaces first and each distinct space-led word is pre-tokenized once: the corpus repeats its
    words thousands of times, and crossing into Rust per text would cost more than the training itself.
    """
    words: Counter[str] = Counter()
    for text in _corpus():
        first, *rest = text.split(" ")
        words[first] += 1
        words.update(" " + w for w in rest)
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for piece, _ in pre_tokenizer.pre_tokenize_str(word):
            pieces[piece] += count
    return pieces


def _corpus() -> Iterable[str]:
    yield "system user assistant You are a helpful assistant."
    yield "0 1 2 3 4 5 6 7 8 9 10 11 12 yes no Yes No A B C D"
    yield from text_corpus(CORPUS_SCENES, CORPUS_SEED)


def learn_merges(words: Counter[str], max_merges: int, min_count: int = 1) -> list[tuple[str, str]]:
    """Byte-pair merges over `words` (pre-tokenized pieces and their counts), most frequent pair first.

    Ties go to the lexicographically smallest pair; merging stops at `max_merges` or when no pair occurs
    `min_count` times.
    Pair counts are updated incrementally, touching only the words that contain the merged pair.
    """
    symbols = {w: list(w) for w in sorted(words)}
    pair_counts: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for w, seq in symbols.items():
        for pair in pairwise(seq):
            pair_counts[pair] += words[w]
            where[pair].add(w)
    # A heap of (-count, pair) with stale entries skipped on pop: its order is exactly "most frequent, then
    # lexicographically smallest".
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges and heap:
        negative, best = heapq.heappop(heap)
        if pair_counts.get(best) != -negative:
            continue
        if -negative < min_count:
            break
        merges.append(best)
        changed: set[tuple[str, str]] = set()
        for w in sorted(where.pop(best)):
            seq, count = symbols[w], words[w]
            for pair in pairwise(seq):
                pair_counts[pair] -= count
                changed.add(pair)
            symbols[w] = seq = _merge(seq, best)
            for pair in pairwise(seq):
                pair_counts[pair] += count
                where[pair].add(w)
                changed.add(pair)
        for pair in sorted(changed):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
    return merges


def _merge(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order (what ByteLevel pre-tokenization produces)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    stand_in, extra = {}, 0
    for b in range(256):
        if b in printable:
            stand_in[b] = chr(b)
        else:
            stand_in[b] = chr(256 + extra)
            extra += 1
    return [stand_in[b] for b in range(256)]
