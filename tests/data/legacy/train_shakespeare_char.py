# a small character-level model on the works of Shakespeare
# quick to train on a laptop; handy for trying things out

out_dir = 'out-shakespeare-char'
eval_interval = 250 # evaluate often: this model overfits fast
eval_iters = 200
log_interval = 10 # fewer log lines

# the data set is small, so keep only checkpoints that improve val loss
always_save_checkpoint = False

wandb_log = False # switch on from the command line
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256 # characters of context

# a baby GPT
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3 # a small network tolerates a larger step
max_iters = 5000
lr_decay_iters = 5000 # usually the same as max_iters
min_lr = 1e-4 # usually learning_rate / 10
beta2 = 0.99 # a little larger: few tokens per step

warmup_iters = 100 # hardly needed here

# on a laptop, also set
# device = 'cpu'
# compile = False
