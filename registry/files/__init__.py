"""Reading files without loading models: adapter folders, checkpoints, fingerprints, LoRA deltas.

Torch and safetensors are opened lazily, inside the functions that need them.
"""
