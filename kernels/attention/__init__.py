"""Attention baselines (``attention_*``): a naive reference, PyTorch SDPA on each backend, FlexAttention with block
sparsity. ``_attention_common`` and ``_flex_common`` hold what they share.
"""
