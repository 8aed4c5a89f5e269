"""Calibration: pure array algorithms (stage 1 and 2), steps, recipes and the pipeline.

Public algorithm API::

    from obsflow.calibrate.jumps import detect_jumps
    from obsflow.calibrate.ramps import fit_ramps

The pipeline entry point is :func:`obsflow.calibrate.pipeline.calibrate_product`.
"""
