"""Latent variable distillation (Liu, Zhang & Van den Broeck, ICLR 2023), issue 14: assign each
region's latent from embeddings by k-means, fit the circuit by closed-form MLE on the completed
data, then fine-tune with EM. Built so far: the k-means step (`kmeans`)."""

from .kmeans import KMeansResult, kmeans

__all__ = ["KMeansResult", "kmeans"]
