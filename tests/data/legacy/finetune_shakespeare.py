import time

out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False # turn it on if you like
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())

dataset = 'shakespeare'
init_from = 'gpt2-xl' # the largest GPT-2

# keep a checkpoint only when val loss improves
always_save_checkpoint = False

# tokens per step: 1 sequence * 32 micro-steps * 1024 tokens = 32,768
# the data set has about 300k tokens, so an epoch is about 9 steps
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# finetune at a constant learning rate
learning_rate = 3e-5
decay_lr = False
