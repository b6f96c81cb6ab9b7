"""Triton kernels. Importing a module here imports triton: do it lazily (see ops/_registry.py).

Kernels compute in float32 whatever the storage dtype (bf16 arithmetic is also wrong under
TRITON_INTERPRET=1) and use one autotune config when interpreted.
"""
