# expect: 2: from ... import
from math import sqrt
n_layer = 4
