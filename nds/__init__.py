"""nds: differentiable simulation of mixed-signal near-data DNN hardware in JAX.

See DESIGN.md for the architecture. The public API::

    card  = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile  = nds.tiles.CrossbarTile(cell=card)
    model = nds.analogize(eqx_model, tile=tile)
    chip  = nds.program(model, key=k1)
    aged  = nds.drift(chip, t=86400.0, key=k2)
    y     = aged(x, key=k3)
    mc    = nds.monte_carlo(fn, model, key=k4, num_chips=100)
    rep   = nds.cost(model, input_shape=(1, 28, 28))
    nds.save("chip.nds.safetensors", chip); chip = nds.load("chip.nds.safetensors")
    nds.save_weights("w.safetensors", model); model = nds.load_weights("w.safetensors", model)
    sens  = nds.sensitivity(model, (x, y), params=["cell.g_max"], key=k5, num_chips=8)
"""

from . import arrays as arrays
from . import boosting as boosting
from . import console as console
from . import cells as cells
from . import converters as converters
from . import dataflow as dataflow
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
from ._program import drift as drift
from ._program import program as program
from .costs import CostReport as CostReport
from .costs import cost as cost
from .nn._analogize import analogize as analogize
from .sensitivity import SensitivityResult as SensitivityResult
from .sensitivity import sensitivity as sensitivity

__version__ = "0.1.0"
