"""A memory bank of embeddings of norm <= 1, one row per training sample, updated with momentum.

Contrastive distillation needs many negatives (K = 16384 by default) but a batch holds few; the
bank keeps a slowly moving embedding of every training sample so negatives can be read from it
without running the encoders on them. Rows are read without gradient and updated after the
optimiser step as ``m[i] <- P(mu * m[i] + (1 - mu) * new_i)``, ``P`` the heads' projection onto
the unit sphere (L2 normalisation) or the unit ball (a convex combination of ball points stays
in the ball, so there ``P`` only guards rounding).

Negatives are drawn either as one set shared by a whole batch (:meth:`MemoryBank.sample_negatives`,
without replacement) or as one set per anchor (:meth:`MemoryBank.sample_negatives_per_anchor`,
uniformly, with or without replacement; :meth:`MemoryBank.sample_other_class`, from the rows of
other classes only: RepDistiller's CIFAR sampler draws K of them per anchor without
replacement). The bank optionally holds each sample's class label (buffer ``labels``), used to
mask or avoid same-class negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xmodal.objectives.critic import PROJECTIONS, project
from xmodal.objectives.embedding_storage import STORAGE_DTYPES, random_unit_rows
from xmodal.objectives.memory_options import MemoryOptions

__all__ = ["MemoryBank", "negatives_per_step"]


def negatives_per_step(requested: int, num_samples: int, indices: Tensor | None = None) -> int:
    """How many negatives a step can draw: ``requested``, capped by what is left.

    Capped at ``num_samples - 1`` and, with the batch's ``indices`` (all excluded), at
    ``num_samples - #distinct(indices)``; raises ``ValueError`` with the fix when none is left.
    """
    taken = 1 if indices is None else int(torch.unique(indices.detach()).numel())
    count = min(requested, num_samples - max(taken, 1))
    if count < 1:
        raise ValueError(
            f"a batch with {taken} distinct indices leaves no negatives among "
            f"num_samples={num_samples}; use num_samples > batch size"
        )
    return count


class MemoryBank(nn.Module):
    """``size`` embeddings of norm <= 1, one per training sample, updated with momentum.

    Buffer ``memory`` ``[size, d]`` (``d = options.embed_dim``), unit norm (``onto="sphere"``)
    or norm <= 1 (``onto="ball"``). The buffer is part of the ``state_dict`` so checkpoints
    restore the bank. Under several processes call :meth:`update` with indices and embeddings
    gathered from all of them, so every replica holds the same bank.

    Args:
        size: number of rows ``N`` (number of training samples), >= 2.
        options: :class:`~xmodal.objectives.memory_options.MemoryOptions`; the bank reads
            ``embed_dim``, ``momentum`` (``mu``, the weight of the old row in the update) and
            ``bank_dtype`` (``float32``, or 16 bits to halve the bank: updates are computed in
            float32 and rounded once).
        seed: seeds the random unit-vector initialisation and the bank's own sampling generator.
        labels: optional ``[size]`` integer class label of every sample (stored as the long
            buffer ``labels``, part of the ``state_dict``); None (default) stores no labels.
        onto: ``"sphere"`` (default) or ``"ball"``: the projection applied after each update,
            the same as the heads' (:func:`~xmodal.objectives.critic.project`). Rows start on
            the sphere either way.
    """

    memory: Tensor
    labels: Tensor | None

    def __init__(
        self,
        size: int,
        options: MemoryOptions,
        seed: int = 0,
        labels: Tensor | None = None,
        onto: str = "sphere",
    ) -> None:
        super().__init__()
        if not (isinstance(size, int) and size >= 2):
            raise ValueError(f"MemoryBank: size must be an int >= 2, got {size!r}")
        if not isinstance(seed, int):
            raise ValueError(f"MemoryBank: seed must be an int, got {seed!r}")
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.shape != (size,):
                shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
                raise ValueError(f"MemoryBank: labels must be a [{size}] tensor, got {shape}")
            if (
                labels.dtype.is_floating_point
                or labels.dtype.is_complex
                or labels.dtype == torch.bool
            ):
                raise ValueError(
                    f"MemoryBank: labels must be an integer tensor, got {labels.dtype}"
                )
        if onto not in PROJECTIONS:
            raise ValueError(f"MemoryBank: onto must be one of {PROJECTIONS}, got {onto!r}")
        self.options = options
        self.onto = onto
        self.size = size
        self._generator = torch.Generator().manual_seed(seed)
        # Isotropic Gaussian rows, normalised: uniform on the unit sphere, so an untrained bank
        # gives negatives with no preferred direction.
        self.register_buffer(
            "memory",
            random_unit_rows(
                size, options.embed_dim, self._generator, STORAGE_DTYPES[options.bank_dtype]
            ),
        )
        # A None buffer is not in the state_dict: banks without labels load old checkpoints.
        self.register_buffer(
            "labels", None if labels is None else labels.detach().to(torch.long).clone()
        )

    def extra_repr(self) -> str:
        """Size, dimension, momentum and whether the bank holds labels."""
        return (
            f"size={self.size}, dim={self.options.embed_dim}, "
            f"momentum={self.options.momentum}, labels={self.labels is not None}"
        )

    def _excluded(self, exclude: Tensor | None, device: torch.device, caller: str) -> Tensor:
        """Sorted unique rows of ``exclude`` on ``device`` (validated to lie in ``[0, size)``)."""
        if exclude is None or exclude.numel() == 0:
            return torch.empty(0, dtype=torch.long, device=device)
        rows = exclude.detach().reshape(-1).to(device=device, dtype=torch.long)
        excluded: Tensor = torch.unique(rows)
        if int(excluded[0]) < 0 or int(excluded[-1]) >= self.size:
            raise ValueError(f"MemoryBank.{caller}: exclude holds indices outside [0, {self.size})")
        return excluded

    def _sampling_setup(
        self, num: int, exclude: Tensor | None, generator: torch.Generator | None, caller: str
    ) -> tuple[torch.Generator, Tensor, int]:
        """Validate ``num`` and return (generator, sorted excluded rows, number of allowed rows)."""
        if not (isinstance(num, int) and num >= 0):
            raise ValueError(f"MemoryBank.{caller}: num must be an int >= 0, got {num!r}")
        gen = self._generator if generator is None else generator
        excluded = self._excluded(exclude, gen.device, caller)
        allowed = self.size - excluded.numel()
        if num > allowed:
            raise ValueError(
                f"MemoryBank.{caller}: num={num} exceeds the {allowed} rows left after "
                f"excluding {excluded.numel()} of {self.size}"
            )
        return gen, excluded, allowed

    @staticmethod
    def _rank_to_row(ranks: Tensor, excluded: Tensor) -> Tensor:
        """Map rank ``r`` among the allowed rows to the ``r``-th allowed row (any shape)."""
        # row = r + #{excluded e_j whose rank e_j - j is <= r} (excluded is sorted and unique).
        shifted = excluded - torch.arange(excluded.numel(), device=excluded.device)
        return ranks + torch.searchsorted(shifted, ranks.reshape(-1), right=True).reshape(
            ranks.shape
        )

    def sample_negatives(
        self, num: int, exclude: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``num`` distinct row indices uniformly among the rows not in ``exclude``.

        Sampling is without replacement, so no row is counted twice in one contrastive
        denominator. The caller caps ``num`` (``K <= size - 1``, and
        ``<= size - #distinct(exclude)``).

        Args:
            num: number of negatives ``K`` (>= 0).
            exclude: row indices ``[B]`` (any shape, long) never returned, e.g. the batch's own
                positives; duplicates allowed.
            generator: random generator; the bank's own seeded CPU generator when None. Sampling
                runs on the generator's device.

        Returns:
            ``[num]`` long indices on the bank's device, all distinct and outside ``exclude``.
        """
        gen, excluded, allowed = self._sampling_setup(num, exclude, generator, "sample_negatives")
        # Draw ranks among the allowed rows, then map rank r to the r-th allowed row.
        ranks = torch.randperm(allowed, generator=gen, device=gen.device)[:num]
        return self._rank_to_row(ranks, excluded).to(self.memory.device)

    def sample_negatives_per_anchor(
        self,
        num: int,
        anchors: int,
        exclude: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        replacement: bool = True,
    ) -> Tensor:
        """Draw ``num`` row indices for each of ``anchors`` anchors, among the rows not excluded.

        Independently and uniformly among the rows not in ``exclude``, with replacement
        (default: ``O(anchors * num)``, and for ``num << size`` duplicates are rare) or without
        (one permutation of the allowed rows per anchor, ``O(anchors * size)``). Every
        anchor's set has the same distribution of
        denominators ``sum_k exp g(., m_k)`` in expectation as a shared set drawn by
        :meth:`sample_negatives` (both are ``num`` uniform draws from the same rows).

        Args:
            num: negatives per anchor ``K`` (>= 0); at most the number of allowed rows (the same
                cap as :meth:`sample_negatives`, so both samplers accept the same ``K``).
            anchors: number of anchors ``B`` (>= 0).
            exclude: row indices never returned (any shape, long), e.g. the batch's positives.
            generator: random generator; the bank's own seeded CPU generator when None.
            replacement: draw with replacement (default) or without, per anchor.

        Returns:
            ``[anchors, num]`` long indices on the bank's device, all outside ``exclude``.
        """
        if not (isinstance(anchors, int) and anchors >= 0):
            raise ValueError(
                "MemoryBank.sample_negatives_per_anchor: anchors must be an int >= 0, "
                f"got {anchors!r}"
            )
        gen, excluded, allowed = self._sampling_setup(
            num, exclude, generator, "sample_negatives_per_anchor"
        )
        if num == 0 or anchors == 0:
            return torch.empty(anchors, num, dtype=torch.long, device=self.memory.device)
        if replacement:
            ranks = torch.randint(allowed, (anchors, num), generator=gen, device=gen.device)
        else:
            ranks = torch.stack(
                [
                    torch.randperm(allowed, generator=gen, device=gen.device)[:num]
                    for _ in range(anchors)
                ]
            )
        return self._rank_to_row(ranks, excluded).to(self.memory.device)

    def _other_class_table(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(classes [C], pools [C, M], counts [C])`` on the bank's device, built once.

        Row ``c`` of ``pools`` lists the rows of every class but ``classes[c]`` (padded with 0
        up to the largest such set, ``M``), ``counts[c]`` how many are real.
        """
        if self.labels is None:
            raise ValueError("MemoryBank: other-class sampling needs a bank built with labels")
        cached = self.__dict__.get("_other_class")
        if cached is None or cached[1].device != self.memory.device:
            labels = self.labels.to(self.memory.device)
            classes = torch.unique(labels)
            pools = [torch.nonzero(labels != c).squeeze(1) for c in classes]
            counts = torch.tensor([p.numel() for p in pools], device=labels.device)
            table = torch.zeros(
                len(pools), int(counts.max()), dtype=torch.long, device=labels.device
            )
            for c, pool in enumerate(pools):
                table[c, : pool.numel()] = pool
            cached = self.__dict__["_other_class"] = (classes, table, counts)
        return cached

    def sample_other_class(
        self,
        num: int,
        anchor_labels: Tensor,
        replacement: bool,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``num`` rows per anchor uniformly among the rows of **other classes**.

        Other than the anchor's (``anchor_labels`` ``[B]``), with or without replacement ->
        ``[B, num]`` on the bank's device: RepDistiller's CIFAR sampler
        (``np.random.choice(cls_negative[y], K, replace=False)``). The anchor's own row is of its
        class, so it is never drawn; other rows of the batch may be, as in the reference.

        Vectorised: without replacement, the ``num`` largest of ``[B, M]`` uniform keys (an
        unsorted top-k) pick each anchor's rows; the keys are drawn on the bank's device from a
        generator seeded by ``generator`` (deterministic, and fast on a GPU).

        Raises ``ValueError`` when an anchor's class leaves no row, or fewer than ``num``
        without replacement (cap ``num`` at :meth:`fewest_other_class_rows`).
        """
        if not (isinstance(num, int) and num >= 0):
            raise ValueError(f"MemoryBank.sample_other_class: num must be an int >= 0, got {num!r}")
        classes, table, counts = self._other_class_table()
        device = table.device
        slot = torch.searchsorted(classes, anchor_labels.detach().to(device))  # [B] class slot
        known = (slot < classes.numel()) & (
            classes[slot.clamp_max(classes.numel() - 1)] == anchor_labels.to(device)
        )
        if not bool(known.all()):
            raise ValueError(
                "MemoryBank.sample_other_class: anchor_labels hold a class the bank does not"
            )
        available = counts[slot]  # [B]
        least = int(available.min()) if slot.numel() else num
        if num > 0 and (least == 0 or (not replacement and num > least)):
            raise ValueError(
                f"MemoryBank.sample_other_class: a class leaves {least} rows, {num} "
                f"requested {'with' if replacement else 'without'} replacement"
            )
        gen = self._generator if generator is None else generator
        keys_gen = torch.Generator(device=device).manual_seed(
            int(torch.randint(2**62, (1,), generator=gen))
        )
        b = slot.numel()
        if num == 0 or b == 0:
            return torch.empty(b, num, dtype=torch.long, device=device)
        if replacement:
            position = (
                torch.rand(b, num, generator=keys_gen, device=device) * available.unsqueeze(1)
            ).long()
            position = torch.minimum(position, available.unsqueeze(1) - 1)  # rounding guard
        else:
            keys = torch.rand(b, table.shape[1], generator=keys_gen, device=device)
            padding = torch.arange(table.shape[1], device=device).unsqueeze(
                0
            ) >= available.unsqueeze(1)
            position = keys.masked_fill_(padding, -1.0).topk(num, dim=1, sorted=False).indices
        return table[slot].gather(1, position)

    def fewest_other_class_rows(self, anchor_labels: Tensor) -> int:
        """The smallest number of other-class rows among the anchors' classes."""
        classes, _, counts = self._other_class_table()
        return int(
            counts[torch.searchsorted(classes, anchor_labels.detach().to(classes.device))].min()
        )

    def labels_of(self, rows: Tensor) -> Tensor:
        """Class labels of bank ``rows`` (any shape, long); raises when the bank holds none."""
        if self.labels is None:
            raise ValueError("MemoryBank.labels_of: this bank was built without labels")
        return self.labels[rows.to(self.labels.device)]

    def record(self, indices: Tensor, embeddings: Tensor) -> None:
        """What every memory of negatives does with a gathered batch (here :meth:`update`)."""
        self.update(indices, embeddings)

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor) -> None:
        """Momentum update ``m[i] <- P(mu * m[i] + (1 - mu) * e_i)`` (no gradient; ``P``: ``onto``).

        Duplicate indices in one call are **averaged**: the rows of ``embeddings`` sharing an
        index are averaged into one ``e_i``, which is then applied once. The result therefore
        does not depend on the order of the gathered batch (identical on every replica, also
        when a distributed sampler pads with repeated samples).

        Args:
            indices: ``[B]`` long row indices in ``[0, size)``.
            embeddings: ``[B, dim]`` new embeddings (normally already unit norm; any float dtype).
        """
        dim = self.options.embed_dim
        if (
            indices.dim() != 1
            or embeddings.dim() != 2
            or embeddings.shape != (indices.shape[0], dim)
        ):
            raise ValueError(
                f"MemoryBank.update: expected indices [B] and embeddings [B, {dim}], got "
                f"{tuple(indices.shape)} and {tuple(embeddings.shape)}"
            )
        if indices.numel() == 0:
            return
        idx = indices.to(device=self.memory.device, dtype=torch.long)
        if int(idx.min()) < 0 or int(idx.max()) >= self.size:
            raise ValueError(f"MemoryBank.update: indices outside [0, {self.size})")
        new = embeddings.detach().to(device=self.memory.device, dtype=torch.float32)
        rows, inverse = torch.unique(idx, return_inverse=True)
        summed = torch.zeros(rows.numel(), dim, dtype=new.dtype, device=new.device)
        summed.index_add_(0, inverse, new)
        counts = torch.bincount(inverse, minlength=rows.numel()).to(new.dtype).unsqueeze(1)
        momentum = self.options.momentum
        mixed = momentum * self.memory[rows].float() + (1.0 - momentum) * (summed / counts)
        self.memory[rows] = project(mixed, self.onto).to(self.memory.dtype)
