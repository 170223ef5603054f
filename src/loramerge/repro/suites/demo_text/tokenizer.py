"""The demo's word-level tokenizer, built offline from the generator's vocabulary, with Llama-3's pair template.

Llama-3's tokenizer puts `<|begin_of_text|>` before each segment of a pair and pads with `<|end_of_text|>`, which real
text never contains; this one does the same over a word vocabulary (whitespace split), so a pair encodes as
`<|begin_of_text|> premise <|begin_of_text|> hypothesis`. Its ids: the words in sorted order, then the specials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from loramerge.atomic import write_atomically
from loramerge.repro.splits import DataError, pad_sequences
from loramerge.repro.suites.demo_text.data import vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BEGIN_OF_TEXT, END_OF_TEXT, UNKNOWN = "<|begin_of_text|>", "<|end_of_text|>", "<unk>"
SPECIAL_TOKENS = (UNKNOWN, BEGIN_OF_TEXT, END_OF_TEXT)
TOKENIZER_FILE = "tokenizer.json"


def build_tokenizer() -> Tokenizer:
    """The word-level tokenizer over `data.vocabulary()` with the Llama-3 pair template (no truncation set)."""
    vocab = {token: index for index, token in enumerate([*vocabulary(), *SPECIAL_TOKENS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BEGIN_OF_TEXT} $A",
        pair=f"{BEGIN_OF_TEXT} $A {BEGIN_OF_TEXT}:1 $B:1",
        special_tokens=[(BEGIN_OF_TEXT, vocab[BEGIN_OF_TEXT])],
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    write_atomically(Path(path), lambda staging: tokenizer.save(str(staging)))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer file written by `save_tokenizer` (or the `tokenizer.json` in a backbone folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "tokenizer file does not exist")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a plain Exception on a malformed file
        raise DataError(path, f"unreadable tokenizer file: {error}") from error
    missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        raise DataError(path, f"the tokenizer has no {missing}")
    return tokenizer


def encode_pairs(
    tokenizer: Tokenizer, premises: Sequence[str], hypotheses: Sequence[str], max_length: int
) -> torch.Tensor:
    """int32 N × L token ids of the pairs, right-padded with PAD_ID; pairs longer than `max_length` are cut from the
    longer segment first (transformers' `truncation=True`). An unknown word stops with its pair."""
    if len(premises) != len(hypotheses):
        raise DataError("pairs", f"{len(premises)} premises but {len(hypotheses)} hypotheses")
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation is state of the tokenizer
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    encodings = tokenizer.encode_batch(list(zip(premises, hypotheses, strict=True)))
    unknown = tokenizer.token_to_id(UNKNOWN)
    for index, encoding in enumerate(encodings):
        if unknown in encoding.ids:
            pair = f"{premises[index]!r} / {hypotheses[index]!r}"
            raise DataError("pairs", f"pair {index} has a word outside the tokenizer's vocabulary: {pair}")
    return pad_sequences([encoding.ids for encoding in encodings])


def as_transformers_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The tokenizer wrapped as transformers' fast tokenizer, its special tokens named as Llama-3's are."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer.to_str()),
        bos_token=BEGIN_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        unk_token=UNKNOWN,
    )
