"""Stage 3 imaging: combining calibrated exposures into mosaics."""
