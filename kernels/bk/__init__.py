"""BK-core implementations: one module per implementation, file name = registry name (``naive_loop``, ``thomas``,
``assoc_scan``, ``triton_fused``, ``lut_green``, ``lut_green_triton``, ``lns``, ``lns_triton``). Modules whose name
starts with ``_`` hold shared helpers (``_triton_fused_*``: the fused kernel's parts; ``data/``: its tuned tables).
"""
