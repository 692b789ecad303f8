"""A Program's layers as torch tensors, shared by every backend: the partitions' index buffers
(`ProgramTensors`), how a sum reads its children (`children`), and the top-down walks over them
(`topdown`: max-product values, and the decoder behind sampling and MPE), and each input
partition's rows from its family (`inputs`: the autograd path of every backend)."""

from .inputs import partition_log_probs
from .tensors import ProgramTensors
from .topdown import decode, forward_max
