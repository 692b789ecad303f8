"""Latent variable distillation (Liu, Zhang & Van den Broeck, ICLR 2023): assign each
region's latent from embeddings by k-means, fit the circuit by closed-form MLE on the completed
data, then fine-tune with EM. The pieces: `region_map` (which latent each sum and input vector's
rows and columns stand for), `kmeans`, `fit_completed` (the counting MLE), the encoders, and `distill` (all of it)."""

from .counting import completed_stats, fit_completed
from .distill import LVDOptions, LVDReport, assign_latents, distill, make_encoder
from .encoders import ArrayEncoder, Encoder, ModuleEncoder, PatchesEncoder, PatchGrid
from .kmeans import KMeansResult, kmeans
from .regions import ChildLatents, Latent, RegionMap, SumLatents, region_map

__all__ = [
    "ArrayEncoder",
    "Encoder",
    "LVDOptions",
    "LVDReport",
    "ModuleEncoder",
    "PatchGrid",
    "PatchesEncoder",
    "assign_latents",
    "distill",
    "make_encoder",
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
