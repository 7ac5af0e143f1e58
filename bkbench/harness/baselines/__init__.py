"""Baselines measured beside the BK-core: Mamba-style SSMs and attention (see docs/baselines.md).

- :class:`Case`: one (B, N, d, dtype, device, sparsity, mode, seed) point.
- ``FORMS`` / :func:`build_inputs` / :func:`reference_output`: what each baseline takes and its reference.
- :func:`prepare` / :func:`prepare_layer`: a zero-argument callable to time plus its analytic model.
- :func:`check`: the correctness battery the gate runs for every baseline.
- :mod:`~bkbench.harness.baselines.models`, :mod:`~bkbench.harness.baselines.equal_work`,
  :mod:`~bkbench.harness.baselines.layers` (with :mod:`~bkbench.harness.baselines.gdn_layer`),
  :mod:`~bkbench.harness.baselines.delta_chunked`.
"""

from bkbench.baseline_meta import BaselineMeta, baseline, meta_of
from bkbench.harness.baselines.case import Case
from bkbench.harness.baselines.check import check
from bkbench.harness.baselines.equal_work import CoreShapes, core_shapes
from bkbench.harness.baselines.forms import FORMS, build_inputs, reference_output
from bkbench.harness.baselines.gdn_layer import GatedDeltaNetLayer
from bkbench.harness.baselines.layers import LAYERS, AttentionBlock, BKLayer, Mamba2Layer, build_layer, layer_model
from bkbench.harness.baselines.models import Model, bk_core_model, model_for
from bkbench.harness.baselines.prepare import Declined, Prepared, decline_reason, prepare, prepare_layer

__all__ = [
    "FORMS",
    "LAYERS",
    "AttentionBlock",
    "BKLayer",
    "BaselineMeta",
    "Case",
    "CoreShapes",
    "Declined",
    "GatedDeltaNetLayer",
    "Mamba2Layer",
    "Model",
    "Prepared",
    "baseline",
    "bk_core_model",
    "build_inputs",
    "build_layer",
    "check",
    "core_shapes",
    "decline_reason",
    "layer_model",
    "meta_of",
    "model_for",
    "prepare",
    "prepare_layer",
    "reference_output",
]
