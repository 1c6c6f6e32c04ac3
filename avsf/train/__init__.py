"""The training engine: the papers' recipe, a deterministic distributed sampler, the training
loop with exact resume, precise BN and checkpoints in PySlowFast's format."""
