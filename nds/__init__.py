"""nds: differentiable simulation of mixed-signal near-data DNN hardware in JAX.

If this network ran on that analog or in-memory chip, what accuracy would it reach (over
manufactured chips and time after programming), at what energy, latency and area?

    import jax, nds
    tile  = nds.tiles.CrossbarTile(cell=nds.load_card("rram_generic", nds.cells.RRAM))
    model = nds.analogize(my_equinox_model, tile)           # layers take one example
    res   = nds.evaluate(model, x_test, y_test, key=jax.random.key(0),
                         num_chips=50, t=86400.0)           # program, age 1 day, read
    print(res)                  # mean, spread over chips, test-set error, 5th percentile
    rep   = nds.cost(model, input_shape=x_test.shape[1:])  # energy, latency, area per inference

Lower level: ``nds.program`` (one chip), ``nds.drift`` (ageing), ``nds.monte_carlo`` (any
function over chips), ``nds.train.fit`` (digital or noise-aware training), ``nds.save`` /
``nds.load`` (a model or chip), ``nds.save_weights`` / ``nds.load_weights`` and
``nds.sensitivity`` (gradients of accuracy w.r.t. named hardware parameters). The command line:
``nds study`` (``nds --help``). Documentation: README.md (also the package's long
description: ``importlib.metadata.metadata("nds")["Description"]``) and the docs/ folder
(docs/examples.md lists the examples), both in the source distribution and the repository;
cards (``nds cards``) name their published sources.
"""

from . import arrays as arrays
from . import boosting as boosting
from . import console as console
from . import cells as cells
from . import converters as converters
from . import dataflow as dataflow
from . import insitu as insitu
from . import datasets as datasets
from . import mapping as mapping
from . import memory as memory
from . import nn as nn
from . import sweep as sweep
from . import tiles as tiles
from . import train as train
from ._cards import AbstractCardModule as AbstractCardModule
from ._cards import CardError as CardError
from ._cards import CardInfo as CardInfo
from ._cards import list_cards as list_cards
from ._cards import load_card as load_card
from ._cost_types import Cost as Cost
from ._io import load as load
from ._io import load_weights as load_weights
from ._io import save as save
from ._io import save_weights as save_weights
from ._evaluate import Evaluation as Evaluation
from ._evaluate import evaluate as evaluate
from ._monte_carlo import MonteCarloResult as MonteCarloResult
from ._monte_carlo import monte_carlo as monte_carlo
from ._monte_carlo import summarize as summarize
from ._keys import stream as stream
from ._keys import streams as streams
from ._program import drift as drift
from ._program import program as program
from .costs import CostReport as CostReport
from .costs import cost as cost
from .nn._analogize import analogize as analogize
from .sensitivity import SensitivityResult as SensitivityResult
from .sensitivity import sensitivity as sensitivity

__all__ = [
    "arrays", "boosting", "console", "cells", "converters", "dataflow", "datasets", "mapping",
    "memory", "nn", "sweep", "tiles", "train", "AbstractCardModule", "CardError", "CardInfo",
    "list_cards", "load_card", "Cost", "load", "load_weights", "save", "save_weights",
    "Evaluation", "evaluate", "MonteCarloResult", "monte_carlo", "summarize", "drift",
    "program", "CostReport", "cost", "analogize", "sensitivity", "SensitivityResult",
    "stream", "streams",
]


__version__ = "0.1.0"
