"""Measurement sources: ntp, kernel (and later chrony, ptp, gnss)."""
