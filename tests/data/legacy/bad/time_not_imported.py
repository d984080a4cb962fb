# expect: 2: time.time() needs `import time` before it
wandb_run_name = str(time.time())
