"""K representative concepts: k-means over text embeddings, the concept nearest each centroid.

E2GAN trains its base generator on a few representative concepts so that every other concept
is a small LoRA step away; clustering the text embeddings picks concepts that cover the space.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from prompts.dedupe import embed
from prompts.errors import PromptError


def select_representative(texts: list[str], k: int, encoder=None, embeddings: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """Indices of `k` distinct texts, one per k-means cluster, largest cluster first.

    Pass `embeddings` (N, D) to skip encoding; otherwise `encoder` embeds `texts`.
    """
    n = len(texts)
    if not 1 <= k <= n:
        raise PromptError(f"k should be between 1 and the number of concepts ({n}), got {k}")
    if embeddings is None:
        if encoder is None:
            raise PromptError("select_representative needs an encoder or precomputed embeddings")
        embeddings = embed(encoder, texts)
    x = np.asarray(embeddings, dtype=np.float64)  # (N, D)
    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(x)
    dist = ((x[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1)  # (N, K)
    sizes = np.bincount(km.labels_, minlength=k)
    chosen: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        # the nearest member of the cluster; fall back to the nearest unchosen text overall
        order = np.argsort(dist[:, cluster], kind="stable")
        members = [i for i in order if km.labels_[i] == cluster and i not in chosen]
        rest = [i for i in order if i not in chosen]
        chosen.append(int((members or rest)[0]))
    return chosen
