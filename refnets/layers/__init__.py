"""Layers: each a forward/backward pair with an explicit cache (see :mod:`refnets.layers.base`)."""
from .base import Layer, as_rng, select
from .dense import Dense
from .activations import (Activation, Identity, ReLU, LeakyReLU, Logistic, Softplus, Tanh,
                          get_activation)
from .containers import Sequential, Residual, Parallel, Flatten, Reshape
from .pooling import MaxPool2d, AvgPool2d, GlobalMaxPool, GlobalAvgPool, kohler_index_set
from .conv import Conv2d, Conv1d, patches1d
