"""In-situ training on crossbars: pulsed device updates, update rules, networks trained on
the array, and the Prezioso et al. (2015) perceptron. See ``docs/insitu.md``."""

from ._network import ACTIVATIONS as ACTIVATIONS
from ._network import InSituLayer as InSituLayer
from ._network import InSituNetwork as InSituNetwork
from ._network import accuracy as accuracy
from ._network import train_batch_manhattan as train_batch_manhattan
from ._network import train_epoch as train_epoch
from ._prezioso import LETTERS as LETTERS
from ._prezioso import letter_patterns as letter_patterns
from ._rules import AbstractUpdateRule as AbstractUpdateRule
from ._rules import AnalogRule as AnalogRule
from ._rules import ManhattanRule as ManhattanRule
from ._rules import RuleCounts as RuleCounts
from ._rules import StochasticPulseRule as StochasticPulseRule
from ._tile import PAIR_MODES as PAIR_MODES
from ._tile import InSituState as InSituState
from ._tile import InSituTile as InSituTile
from ._tile import UpdateCost as UpdateCost
