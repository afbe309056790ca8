"""Offline tiny tokenizers: a byte-level BPE trained on a small corpus, shaped like the real
checkpoints' language-model tokenizer.

There is no model hub on the test machines, so every family's tiny checkpoint carries a
tokenizer built here: the real tokenizer's pre-tokenizer regex (digits split one per token, which
the CPU-learning experiment showed matters most for box coordinates), byte-level BPE, and the
family's special tokens appended after the learned vocabulary in the family's own order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# The real checkpoints' pre-tokenization pattern (a public fact of their language model's
# tokenizer; the family folders name it): contractions, letters, single digits, punctuation
# runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BASE_CORPUS = """
The small red circle is left of the big blue square. The green triangle is above the yellow
star. Please provide the bounding box coordinate of the region this sentence describes.
Please provide the bounding box coordinates. What is the colour of the shape on the right?
I need to look at the region first. In the crop I can see the object clearly. The answer is
a, b, c, d. Describe the image. There is a purple rectangle, an orange ellipse and a cyan
diamond. small medium large tiny big top bottom left right middle centre center above below
next to between of the a an and or with in on at to from is are was it this that which what
where how many count shape shapes colour color red green blue yellow purple orange cyan pink
white black gray grey circle square triangle star rectangle ellipse diamond cross answer
crop tool call response think reasoning box point region object image video frame
0 1 2 3 4 5 6 7 8 9 10 100 1000 0.5 0.25 0.125 [ ] ( ) , . : ; ? ! " ' { } < > / \\ - _ = + * #
"""


def train_bpe(
    corpus: Iterable[str],
    special_tokens: Sequence[str],
    vocab_size: int = 1024,
    extra_tokens: Sequence[str] = (),
) -> Tokenizer:
    """Train a byte-level BPE; ``special_tokens`` get ids right after the learned vocabulary.

    ``extra_tokens`` are added as ordinary (non-special) whole tokens before the specials, e.g.
    one token per coordinate value "0".."1000": the text format stays the family's own, but a
    tiny model learns boxes far faster when each coordinate is one token (docs/models.md, "Tiny models on CPU").
    """
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator([BASE_CORPUS, *corpus], trainer=trainer)
    if extra_tokens:
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, single_word=False, normalized=False) for t in extra_tokens])
    tok.add_special_tokens(list(special_tokens))
    return tok
