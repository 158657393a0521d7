"""The GeoAware-SC family (GeoAware-SC, DIY-SC, Jamais Vu)."""
