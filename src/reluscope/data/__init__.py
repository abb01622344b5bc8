"""Data sets: generated (Gaussian task, uniform box, MNIST-1D, modular arithmetic), bundled
(scikit-learn digits) or read from local files (.npz/.npy/.pt, MNIST, CIFAR-10). Nothing is
ever downloaded."""

from reluscope.data.cifar import cifar10
from reluscope.data.dataset import Dataset, split, subsample
from reluscope.data.digits import digits
from reluscope.data.files import load_file
from reluscope.data.mnist import mnist, read_idx
from reluscope.data.mnist1d import mnist1d
from reluscope.data.modular import modular
from reluscope.data.registry import DATASETS, load_data
from reluscope.data.synthetic import gaussian, uniform

__all__ = [
    "DATASETS",
    "Dataset",
    "cifar10",
    "digits",
    "gaussian",
    "load_data",
    "load_file",
    "mnist",
    "mnist1d",
    "modular",
    "read_idx",
    "split",
    "subsample",
    "uniform",
]
