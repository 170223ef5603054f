"""KnOTS zero-shot prompt templates for the eight ViT-B/32 vision tasks, as plain data.

Transcribed string for string from gstoica27/KnOTS `dataset/templates.py` (stored copy at commit
01a940c17162165f641a91506d4d319637275fa2, the only version of that file in the index; `docs/protocol.md` cites the
repository at `baa35e8`, whose full id could not be resolved offline). KnOTS writes each template as a lambda
`lambda c: f'...{c}...'`; here each is the same text as a `str.format` pattern with the single field `{c}`, so
`template.format(c=name)` reproduces the lambda's output exactly. No template was reconstructed.

KnOTS keys its dict by dataset name (`stanford_cars`, ...); the families here are the short task names used across
this project, with `cars` for `stanford_cars`. MNIST and SVHN share one template but keep separate families so
that a task's family is always its own name. The head for a class is the normalized mean of the CLIP text
embeddings of `prompts(family, classname)` (`docs/protocol.md` §2.1); the class names themselves live in
`config/vit-b32/classnames/<task>.txt`.
"""

from __future__ import annotations

from loramerge.errors import LoramergeError

_NUMBER = ('a photo of the number: "{c}".',)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "cars": (
        "a photo of a {c}.",
        "a photo of the {c}.",
        "a photo of my {c}.",
        "i love my {c}!",
        "a photo of my dirty {c}.",
        "a photo of my clean {c}.",
        "a photo of my new {c}.",
        "a photo of my old {c}.",
    ),
    "dtd": (
        "a photo of a {c} texture.",
        "a photo of a {c} pattern.",
        "a photo of a {c} thing.",
        "a photo of a {c} object.",
        "a photo of the {c} texture.",
        "a photo of the {c} pattern.",
        "a photo of the {c} thing.",
        "a photo of the {c} object.",
    ),
    "eurosat": (
        "a centered satellite photo of {c}.",
        "a centered satellite photo of a {c}.",
        "a centered satellite photo of the {c}.",
    ),
    "gtsrb": (
        'a zoomed in photo of a "{c}" traffic sign.',
        'a centered photo of a "{c}" traffic sign.',
        'a close up photo of a "{c}" traffic sign.',
    ),
    "mnist": _NUMBER,
    # Order matters only for bit-exact heads (the mean is order-independent up to float rounding); it follows
    # KnOTS: the three articles outermost, then {imagery, photo, view}, then {satellite, aerial}.
    "resisc45": (
        "satellite imagery of {c}.",
        "aerial imagery of {c}.",
        "satellite photo of {c}.",
        "aerial photo of {c}.",
        "satellite view of {c}.",
        "aerial view of {c}.",
        "satellite imagery of a {c}.",
        "aerial imagery of a {c}.",
        "satellite photo of a {c}.",
        "aerial photo of a {c}.",
        "satellite view of a {c}.",
        "aerial view of a {c}.",
        "satellite imagery of the {c}.",
        "aerial imagery of the {c}.",
        "satellite photo of the {c}.",
        "aerial photo of the {c}.",
        "satellite view of the {c}.",
        "aerial view of the {c}.",
    ),
    "sun397": (
        "a photo of a {c}.",
        "a photo of the {c}.",
    ),
    "svhn": _NUMBER,
}


class UnknownTemplateFamily(LoramergeError, KeyError):
    """A template family that TEMPLATES does not define; a KeyError so dict-style callers can catch it."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.message = f"template family {family!r} is not defined; known families: {', '.join(sorted(TEMPLATES))}"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return self.message


def prompts(family: str, classname: str) -> list[str]:
    """The prompts KnOTS feeds the CLIP text tower for one class, in template order."""
    try:
        templates = TEMPLATES[family]
    except KeyError:
        raise UnknownTemplateFamily(family) from None
    return [template.format(c=classname) for template in templates]
