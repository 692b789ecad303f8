"""Latent variable distillation (Liu, Zhang & Van den Broeck, ICLR 2023), issue 14: assign each
region's latent from embeddings by k-means, fit the circuit by closed-form MLE on the completed
data, then fine-tune with EM. The pieces: `region_map` (which latent each sum and input vector's
rows and columns stand for), `kmeans`, and `fit_completed` (the counting MLE)."""

from .counting import completed_stats, fit_completed
from .kmeans import KMeansResult, kmeans
from .regions import ChildLatents, Latent, RegionMap, SumLatents, region_map

__all__ = [
    "ChildLatents",
    "KMeansResult",
    "Latent",
    "RegionMap",
    "SumLatents",
    "completed_stats",
    "fit_completed",
    "kmeans",
    "region_map",
]
