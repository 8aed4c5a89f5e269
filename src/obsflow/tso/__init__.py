"""Time-series observations: transit model, integration times, photometry, light curves.

* :mod:`obsflow.tso.transit` the limb-darkened transit model (used by the
  simulator to make the truth and by the fit to recover it);
* :mod:`obsflow.tso.times` mid-times of integrations in MJD UTC and BJD TDB;
* :mod:`obsflow.tso.photometry` per-integration aperture photometry of a
  ``_rateints`` product, written as ``_phot.ecsv`` with a light-curve PNG;
* :mod:`obsflow.tso.fit` the transit fit of a light curve;
* :mod:`obsflow.tso.product` the ``phot`` product (reference, provenance, ECSV
  and PNG) the orchestrator's ``lightcurve`` job makes of a ``_rateints``.
"""
