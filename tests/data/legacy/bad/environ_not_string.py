# expect: 4: must be a string
import os

os.environ['OMP_NUM_THREADS'] = 4
