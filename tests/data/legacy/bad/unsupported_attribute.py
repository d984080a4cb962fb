# expect: 4: Attribute access (math.pi
import math

dropout = math.pi / 10
