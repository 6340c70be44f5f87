"""Zero-shot probe: classify a student's test samples by text prompts, as CLIP does.

The prompts are read by a CLIP teacher's text tower and compared through the distillation
objective's shared space (ImageBind's emergent zero-shot).

Each class name becomes prompts (``templates``, e.g. ``"a photo of a {name}."``); the teacher's
text tower embeds them, and as in CLIP each prompt embedding is L2-normalised, averaged over the
templates and normalised again: a unit class vector ``c`` ``[C, Dt]`` in the teacher's image
embedding space. The objective's teacher head takes the teacher's image features as training
gave them to it (raw, then standardised with the train split's mean and std), so ``c`` is first
given the mean norm of those raw features, then standardised, then mapped by ``h_T``; a test
sample's student embedding is mapped by ``h_S``. The class is the most cosine-similar one.
For the teacher itself (no heads) the probe is CLIP's own zero-shot: cosine between its image
embedding and ``c``. Details and caveats: docs/probes.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from xmodal.core.checks import require
from xmodal.core.deprecation import former_names
from xmodal.core.registry import PROBES
from xmodal.evaluation.linear_probe import accuracies, require_finite
from xmodal.objectives.shared_heads import SharedHeads

#: a few of CLIP's ImageNet prompt templates
DEFAULT_TEMPLATES = [
    "a photo of a {name}.",
    "a photo of the {name}.",
    "a photo of my {name}.",
    "a blurry photo of a {name}.",
    "a low resolution photo of a {name}.",
]


@dataclass
class ZeroShotProbeOptions:
    """Options of the zero-shot probe.

    Attributes:
        templates: prompt templates, each with one ``{name}``; a class's text embedding is the
            average of its prompts' (normalised) embeddings.
        class_names: the names put in the prompts, index = label (empty: the dataset's own
            class names, with ``_`` read as a space).
    """

    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(
            self,
            {
                "templates": (
                    lambda v: len(v) > 0 and all(_template(t) for t in v),
                    "a non-empty list of texts, each with one {name}",
                ),
                "class_names": (
                    lambda v: all(isinstance(n, str) and n.strip() for n in v),
                    "a list of non-empty names (empty: the dataset's)",
                ),
            },
        )


def _template(template: object) -> bool:
    if not isinstance(template, str) or template.count("{name}") != 1:
        return False
    try:
        template.format(name="x")
    except (KeyError, IndexError, ValueError):
        return False
    return True


@dataclass
class ZeroShotResult:
    """Test metrics (fractions in [0, 1]) and what produced them."""

    accuracy: float
    mean_class_accuracy: float
    templates: int
    class_names: list[str]
    through_heads: bool


def prompts(class_names: list[str], templates: list[str]) -> list[str]:
    """Every template filled with every class name, class-major: ``[C * T]``."""
    return [template.format(name=name) for name in class_names for template in templates]


def class_text_embeddings(
    encode: Callable[[list[str]], Tensor], class_names: list[str], templates: list[str]
) -> Tensor:
    """Unit class vectors ``[C, Dt]`` by CLIP's prompt ensembling.

    Each prompt's text embedding is normalised, averaged over the ``T`` templates, and
    normalised again. ``encode`` maps ``P`` texts to ``[P, Dt]``.
    """
    if not class_names:
        raise ValueError("zero-shot probe: no class names")
    texts = prompts(class_names, templates)
    embeddings = encode(texts).double()
    if embeddings.shape[0] != len(texts) or not torch.isfinite(embeddings).all():
        raise ValueError("zero-shot probe: the text tower gave no finite embedding per prompt")
    per_prompt = torch.nn.functional.normalize(embeddings, dim=1)
    per_class = per_prompt.view(len(class_names), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(per_class, dim=1).float()


def zero_shot_similarities(features: Tensor, classes: Tensor, heads: SharedHeads | None) -> Tensor:
    """Cosine similarities ``[N, C]`` between samples and classes.

    Args:
        features: ``[N, Ds]`` student embeddings (with ``heads``) or ``[N, Dt]`` teacher image
            embeddings (``heads`` None: in the teacher's own space).
        classes: unit class vectors ``[C, Dt]`` (:func:`class_text_embeddings`).
        heads: the student's objective heads; the class vectors are scaled to the heads'
            ``teacher_norm``, standardised and mapped by ``h_T``, the features by ``h_S``.
    """
    if heads is not None:
        if features.shape[1] != heads.student_dim or classes.shape[1] != heads.teacher_dim:
            raise ValueError(
                f"zero-shot probe: heads take {heads.student_dim}-dim student and "
                f"{heads.teacher_dim}-dim teacher vectors, got {features.shape[1]} and "
                f"{classes.shape[1]}: the heads belong to another teacher or student"
            )
        queries = heads.embed_student(features)
        keys = heads.embed_teacher(classes * heads.teacher_norm)
    else:
        if features.shape[1] != classes.shape[1]:
            raise ValueError(
                f"zero-shot probe: {features.shape[1]}-dim image and "
                f"{classes.shape[1]}-dim text embeddings are not one space"
            )
        queries, keys = features, classes
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    k = torch.nn.functional.normalize(keys.double(), dim=1)
    return q @ k.T


@PROBES.register(
    "zero-shot",
    "classify students by CLIP-teacher text prompts through the objective's "
    "heads (heads methods; teacher: CLIP's own zero-shot)",
)
class ZeroShotProbe:
    """Zero-shot scene classification: no parameters are fitted, no training labels read."""

    options = ZeroShotProbeOptions

    metrics = ("accuracy", "mean_class_accuracy")
    consumes_text = True  # reads the teacher's text tower and the student's objective heads

    def __init__(self, config: ZeroShotProbeOptions | None = None) -> None:
        self.config = config or ZeroShotProbeOptions()

    def class_names(self, dataset_names: list[str], num_classes: int) -> list[str]:
        """The names put in the prompts: the configured ones, else the dataset's.

        The dataset's names are read with ``_`` as a space.
        """
        names = self.config.class_names or [n.replace("_", " ") for n in dataset_names]
        if len(names) != num_classes:
            source = "probe.zero-shot.class_names" if self.config.class_names else "the dataset"
            raise ValueError(
                f"zero-shot probe: {source} names {len(names)} classes, the labels "
                f"have {num_classes}"
            )
        return names

    def evaluate_zero_shot(
        self,
        features: Tensor,
        labels: Tensor,
        classes: Tensor,
        heads: SharedHeads | None,
        class_names: list[str],
    ) -> ZeroShotResult:
        """Accuracy and mean class accuracy of the zero-shot classification of the test split.

        ``features`` ``[N, D]`` and ``labels`` ``[N]`` of the test split; ``classes``
        ``[C, Dt]`` from :func:`class_text_embeddings`; ``heads`` None for the teacher itself.
        """
        require_finite("zero-shot probe", {"test": features})
        sims = zero_shot_similarities(features, classes, heads)
        accuracy, mean_class = accuracies(sims, labels.long(), len(classes))
        return ZeroShotResult(
            accuracy, mean_class, len(self.config.templates), list(class_names), heads is not None
        )


#: former names, served for one release (see :mod:`xmodal.core.deprecation`)
__getattr__ = former_names(__name__, {"ZeroShotProbeConfig": "ZeroShotProbeOptions"}, globals())
