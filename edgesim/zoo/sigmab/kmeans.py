"""Spherical k-means: the two-way split of a node's calibration inputs by cosine similarity.

Public names: ``spherical_kmeans``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["spherical_kmeans"]


def spherical_kmeans(x: torch.Tensor, k: int = 2, iters: int = 50,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x`` (n, d) by cosine similarity: ``(labels (n,), centroids (k, d))``.

    Rows are unit-normalised; initialisation is k-means++ on cosine distance with a generator
    seeded by ``seed``; centroids are unit-norm means of their members; an empty cluster takes the
    row least similar to its centroid (ties: the lowest row). ``labels[i]`` is the nearest
    centroid of row i (ties: the lowest centroid). All arithmetic is float64 whatever the dtype
    of ``x`` (the centroids are returned in it), so the split does not hang on float32 rounding.

    >>> x = torch.tensor([[1.0, 0.1], [2.0, 0.0], [0.0, 1.0], [0.1, 3.0]])
    >>> labels, c = spherical_kmeans(x, 2)
    >>> labels[0] == labels[1], labels[2] == labels[3], labels[0] != labels[2]
    (tensor(True), tensor(True), tensor(True))
    """
    if x.dim() != 2:
        raise ValueError(f"spherical_kmeans: x must be (n, d), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"spherical_kmeans: need 1 <= k <= n = {n}, got k = {k}")
    xn = F.normalize(x.detach().double(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    for _ in range(1, k):
        sim = (xn @ xn[chosen].T).max(dim=1).values
        dist = (1 - sim).clamp_min(0)
        dist[chosen] = 0
        if float(dist.sum()) <= 0:
            rest = [i for i in range(n) if i not in chosen]
            chosen.append(rest[int(torch.randint(len(rest), (1,), generator=gen))])
        else:
            chosen.append(int(torch.multinomial(dist, 1, generator=gen)))
    cent = xn[chosen].clone()
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        sim = xn @ cent.T
        new = sim.argmax(dim=1)
        for c in range(k):
            if not bool((new == c).any()):  # empty cluster: take the worst-served row
                own = sim.gather(1, new[:, None])[:, 0]
                counts = torch.bincount(new, minlength=k)
                own[counts[new] <= 1] = float("inf")  # never empty another cluster
                new[int(own.argmin())] = c
        cent = F.normalize(torch.stack([xn[new == c].sum(0) for c in range(k)]), dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    labels = (xn @ cent.T).argmax(dim=1)
    return labels, cent.to(x.dtype)
