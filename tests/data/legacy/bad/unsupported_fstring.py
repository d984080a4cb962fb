# expect: 3: An f-string
import time
wandb_run_name = f"run-{time.time()}"
