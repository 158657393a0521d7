"""The GeoAware-SC family: GeoAware-SC, DIY-SC and Jamais Vu on one feature / adapter / matcher stack."""
