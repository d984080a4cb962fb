# expect: 2: import subprocess
import subprocess
n_layer = 4
