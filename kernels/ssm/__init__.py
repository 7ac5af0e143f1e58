"""Mamba-style SSM and linear-attention baselines (``ssm_*``): selective scan, SSD, and the fla-core mixers (GLA,
delta rule, Gated DeltaNet, RWKV-7, KDA). ``_fla_common`` holds what the fla-core records share.
"""
