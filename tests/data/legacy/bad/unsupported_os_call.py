# expect: 3: A call to os.getenv()
import os
out_dir = os.getenv("OUT", "out")
